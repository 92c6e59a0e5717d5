package broker_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/eldercare-iot/eldercare/device/registry"
	"github.com/eldercare-iot/eldercare/internal/broker"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

const internalPass = "internal-password-0123456789"

// accounts is a registry-like lookup: gw-1 on site s1 publishes for itself
// and bed-1; gw-2 on site s2 for itself.
func accounts(t *testing.T) func(context.Context, string) (broker.Account, error) {
	t.Helper()
	h1, err := registry.HashPassword("gw1-secret")
	if err != nil {
		t.Fatal(err)
	}
	h2, _ := registry.HashPassword("gw2-secret")
	accs := map[string]broker.Account{
		"gw-1": {Username: "gw-1", PasswordHash: h1, Site: "s1", Devices: []string{"bed-1", "gw-1"}},
		"gw-2": {Username: "gw-2", PasswordHash: h2, Site: "s2", Devices: []string{"gw-2"}},
	}
	return func(_ context.Context, u string) (broker.Account, error) {
		a, ok := accs[u]
		if !ok {
			return broker.Account{}, fmt.Errorf("%q: %w", u, broker.ErrUnknownUser)
		}
		return a, nil
	}
}

func startAuthBroker(t *testing.T, root string, reg prometheus.Registerer, tlsCfg *tls.Config) *broker.Broker {
	t.Helper()
	cfg := broker.Config{Addr: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registerer: reg,
		Auth: &broker.Auth{Root: root, Lookup: accounts(t), InternalUser: "eldercare-internal", InternalPassword: internalPass}}
	if tlsCfg != nil {
		cfg.TLSAddr, cfg.TLS = "127.0.0.1:0", tlsCfg
	}
	b, err := broker.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func withUser(url, user, pass string) string {
	if user == "" {
		return url
	}
	scheme, rest, _ := strings.Cut(url, "://")
	return scheme + "://" + user + ":" + pass + "@" + rest
}

// connect connects with paho's own connection (mqttconn.Acker Plain): the
// buffered connection mqttconn uses otherwise lingers up to 2 s closing a
// connection the broker refused, and these tests are about the broker.
func connect(t *testing.T, o mqttconn.Options) (paho.Client, error) {
	t.Helper()
	o.ConnectTimeout = 3 * time.Second
	o.Acker = &mqttconn.Acker{Plain: true}
	o.CleanSession = true
	o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	c, err := mqttconn.Connect(context.Background(), o)
	if err == nil {
		t.Cleanup(func() { c.Disconnect(0) })
	}
	return c, err
}

// TestAuthConnect: bad credentials are refused at CONNECT.
func TestAuthConnect(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	b := startAuthBroker(t, "", reg, nil)
	for _, c := range []struct {
		name, user, pass, will string
		ok                     bool
	}{
		{"gateway", "gw-1", "gw1-secret", "", true},
		{"gateway with its own will", "gw-1", "gw1-secret", "eldercare/v1/s1/gw-1/status", true},
		{"internal", "eldercare-internal", internalPass, "", true},
		{"anonymous", "", "", "", false},
		{"bad password", "gw-1", "gw2-secret", "", false},
		{"empty password", "gw-1", "", "", false},
		{"unknown user", "gw-9", "gw1-secret", "", false},
		{"internal bad password", "eldercare-internal", "guess", "", false},
		{"will on another site", "gw-1", "gw1-secret", "eldercare/v1/s2/gw-2/status", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			id := testenv.ClientID(t, "auth")
			if strings.HasPrefix(c.user, "gw-") {
				id = c.user // a device account's client id is its username
			}
			_, err := connect(t, mqttconn.Options{URL: withUser(b.URL(), c.user, c.pass), ClientID: id,
				WillTopic: c.will, WillPayload: []byte(`{"state":"offline"}`)})
			if c.ok && err != nil {
				t.Fatalf("connect refused: %v", err)
			}
			if !c.ok && err == nil {
				t.Fatal("connect accepted, want refused")
			}
			if !c.ok && !strings.Contains(err.Error(), "not Authorized") && !strings.Contains(err.Error(), "bad user name or password") {
				t.Errorf("refused with %v, want a CONNACK refusal", err)
			}
		})
	}
	if n := testutil.ToFloat64(prometheusCounter(t, reg, "eldercare_broker_connect_refused_total")); n < 6 {
		// paho retries a refused MQTT 3.1.1 CONNECT as 3.1, so each refusal may count twice.
		t.Errorf("refused connections counted %v, want >= 6", n)
	}
}

func prometheusCounter(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "sum"})
	c.Add(sum)
	return c
}

// TestACL: a gateway publishes for itself and the devices behind it; a
// publish outside its topics never reaches a subscriber, and a wildcard
// subscription is refused.
func TestACL(t *testing.T) {
	t.Parallel()
	root := testenv.TopicRoot(t)
	reg := prometheus.NewRegistry()
	b := startAuthBroker(t, root, reg, nil)

	var mu sync.Mutex
	got := map[string]string{}
	arrived := make(chan string, 100)
	sub, err := connect(t, mqttconn.Options{URL: withUser(b.URL(), "eldercare-internal", internalPass), ClientID: testenv.ClientID(t, "platform")})
	if err != nil {
		t.Fatal(err)
	}
	if err := mqttconn.Wait(context.Background(), sub.Subscribe(root+"/#", 1, func(_ paho.Client, m paho.Message) {
		mu.Lock()
		got[m.Topic()] = string(m.Payload())
		mu.Unlock()
		arrived <- m.Topic()
	}), 5*time.Second, "subscribe"); err != nil {
		t.Fatal(err)
	}
	gwURL := withUser(b.URL(), "gw-1", "gw1-secret")
	publish := func(t *testing.T, topic string) error {
		c, err := connect(t, mqttconn.Options{URL: gwURL, ClientID: "gw-1"})
		if err != nil {
			t.Fatal(err)
		}
		// Leave before the next connection as gw-1: mochi drops this one
		// on a refused publish, and its auto-reconnect would take the
		// session from the next one (and back) while the test goes on.
		defer c.Disconnect(0)
		return mqttconn.Wait(context.Background(), c.Publish(topic, 1, false, "x"), 2*time.Second, "publish "+topic)
	}
	waitFor := func(t *testing.T, topic string) {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for {
			select {
			case tp := <-arrived:
				if tp == topic {
					return
				}
			case <-deadline:
				t.Fatalf("allowed publish on %s never arrived", topic)
			}
		}
	}
	allowed := []string{
		root + "/v1/s1/gw-1/telemetry", root + "/v1/s1/gw-1/status", root + "/v1/s1/bed-1/event",
		root + "/v1/s1/bed-1/telemetry", root + "/v1/s1/bed-1/cmd/ack",
	}
	forbidden := []string{
		root + "/v1/s2/gw-2/telemetry",   // another gateway's site and device
		root + "/v1/s1/fd-1/event",       // a device not behind gw-1
		root + "/v1/s2/bed-1/event",      // its device, but another site
		root + "/v1/s1/bed-1/cmd",        // the downlink is the platform's
		root + "/v1/alerts/s1",           // the platform's alert topic
		"other/v1/s1/gw-1/telemetry",     // another root
		root + "/v1/s1/gw-1/telemetry/x", // a deeper level
	}
	for _, tp := range allowed {
		t.Run("allowed "+tp, func(t *testing.T) {
			if err := publish(t, tp); err != nil {
				t.Fatal(err)
			}
			waitFor(t, tp)
		})
	}
	for _, tp := range forbidden {
		t.Run("forbidden "+tp, func(t *testing.T) {
			_ = publish(t, tp) // mochi closes a 3.1.1 connection on a refused QoS 1 publish
			// mochi handles a client's packets, the fan-out of a publish
			// included, in its one goroutine, and forgets the clean session
			// when that goroutine ends (after the refusal, or after the
			// DISCONNECT publish sends). Once the session is gone, the
			// refused message would already be queued for the subscriber,
			// ahead of a sentinel published after it: when the sentinel
			// arrives, the refused message would have arrived before.
			testenv.EventuallyTrue(t, 5*time.Second, "gw-1's session ended", func() bool {
				_, ok := b.Server().Clients.Get("gw-1")
				return !ok
			})
			sentinel := root + "/v1/s1/gw-1/event"
			if err := publish(t, sentinel); err != nil {
				t.Fatal(err)
			}
			waitFor(t, sentinel)
			mu.Lock()
			defer mu.Unlock()
			if _, ok := got[tp]; ok {
				t.Errorf("forbidden publish on %s reached the subscriber", tp)
			}
		})
	}
	t.Run("subscriptions", func(t *testing.T) {
		c, err := connect(t, mqttconn.Options{URL: gwURL, ClientID: "gw-1"})
		if err != nil {
			t.Fatal(err)
		}
		for _, c2 := range []struct {
			filter string
			ok     bool
		}{
			{root + "/v1/s1/gw-1/cmd", true},
			{root + "/v1/s1/bed-1/cmd", true},
			{root + "/v1/+/+/telemetry", false},
			{root + "/v1/s2/gw-2/cmd", false},
			{root + "/#", false},
		} {
			tok := c.Subscribe(c2.filter, 1, func(paho.Client, paho.Message) {})
			if err := mqttconn.Wait(context.Background(), tok, 3*time.Second, "subscribe"); err != nil {
				t.Fatal(err)
			}
			code := tok.(*paho.SubscribeToken).Result()[c2.filter]
			if ok := code < 0x80; ok != c2.ok {
				t.Errorf("subscribe %s: SUBACK code %#x, want allowed=%v", c2.filter, code, c2.ok)
			}
		}
	})
	if n := testutil.ToFloat64(prometheusCounter(t, reg, "eldercare_broker_acl_denied_total")); n < float64(len(forbidden)) {
		t.Errorf("ACL refusals counted %v, want >= %d", n, len(forbidden))
	}
}

// TestOpenBrokerUnchanged: without Auth the broker admits anonymous
// clients, as "eldercare up" always did.
func TestOpenBrokerUnchanged(t *testing.T) {
	t.Parallel()
	b, err := broker.Start(broker.Config{Addr: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := connect(t, mqttconn.Options{URL: b.URL(), ClientID: testenv.ClientID(t, "anon")}); err != nil {
		t.Fatal(err)
	}
}

// writeCA creates a self-signed CA and a server certificate for 127.0.0.1
// and "broker.test", and returns the CA's PEM file and the server's TLS
// configuration.
func writeCA(t *testing.T) (caFile string, server *tls.Config) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "eldercare test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	srvKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srvTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "broker.test"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), DNSNames: []string{"broker.test"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return caFile, &tls.Config{MinVersion: tls.VersionTLS12,
		Certificates: []tls.Certificate{{Certificate: [][]byte{srvDER}, PrivateKey: srvKey}}}
}

// TestTLSUplink: a gateway connects over TLS with the CA the user provides,
// and with its own credentials.
func TestTLSUplink(t *testing.T) {
	t.Parallel()
	caFile, srvTLS := writeCA(t)
	b := startAuthBroker(t, "", nil, srvTLS)
	if b.TLSURL() == "" {
		t.Fatal("no TLS listener")
	}
	url := withUser(b.TLSURL(), "gw-1", "gw1-secret")
	for _, c := range []struct {
		name string
		o    mqttconn.Options
		want string // "" = connects
	}{
		{"user CA", mqttconn.Options{TLSCAFile: caFile}, ""},
		{"user CA and server name", mqttconn.Options{TLSCAFile: caFile, TLSServerName: "broker.test"}, ""},
		{"system pool does not know the CA", mqttconn.Options{}, "certificate"},
		{"wrong server name", mqttconn.Options{TLSCAFile: caFile, TLSServerName: "other.test"}, "certificate"},
		{"missing CA file", mqttconn.Options{TLSCAFile: caFile + ".missing"}, "ca file"},
		{"cert without key", mqttconn.Options{TLSCAFile: caFile, TLSCertFile: caFile}, "both"},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := c.o
			o.URL, o.ClientID = url, "gw-1"
			_, err := connect(t, o)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("connect: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("connect = %v, want error containing %q", err, c.want)
			}
		})
	}
	t.Run("bad password over TLS", func(t *testing.T) {
		if _, err := connect(t, mqttconn.Options{URL: withUser(b.TLSURL(), "gw-1", "nope"), ClientID: testenv.ClientID(t, "tls"), TLSCAFile: caFile}); err == nil {
			t.Fatal("connect with a bad password over TLS succeeded")
		}
	})
}
