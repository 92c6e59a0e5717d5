package broker_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/eldercare-iot/eldercare/device/registry"
	"github.com/eldercare-iot/eldercare/internal/broker"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// TestMosquittoExport feeds the exported password and ACL files to a real
// `mosquitto -c`: the gateway's allowed publishes arrive, a forbidden one is
// dropped, and a bad password is refused.
func TestMosquittoExport(t *testing.T) {
	t.Parallel()
	root := testenv.TopicRoot(t)
	ctx := context.Background()
	lookup := accounts(t)
	gw1, _ := lookup(ctx, "gw-1")
	gw2, _ := lookup(ctx, "gw-2")
	internalHash, err := registry.HashPassword(internalPass)
	if err != nil {
		t.Fatal(err)
	}
	pw, acl, err := broker.MosquittoFiles(root, []broker.Account{gw2, gw1}, []broker.MosquittoUser{{Username: "eldercare-internal", PasswordHash: internalHash}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(acl), "user gw-1\ntopic write "+root+"/v1/s1/bed-1/telemetry\n") {
		t.Errorf("ACL file lacks gw-1's bed-1 telemetry:\n%s", acl)
	}
	// Mosquitto started as root drops to the user "mosquitto", which must
	// be able to read both files: t.TempDir is private to root.
	dir, err := os.MkdirTemp("", "eldercare-mosquitto-export-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	pwFile, aclFile := filepath.Join(dir, "passwd"), filepath.Join(dir, "acl")
	if err := os.WriteFile(pwFile, pw, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(aclFile, acl, 0o644); err != nil {
		t.Fatal(err)
	}
	b := testenv.StartMosquitto(t, "password_file "+pwFile, "acl_file "+aclFile)

	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	conn := func(t *testing.T, user, pass string) (paho.Client, error) {
		c, err := mqttconn.Connect(ctx, mqttconn.Options{URL: withUser(b.URL(), user, pass), ClientID: testenv.ClientID(t, user),
			CleanSession: true, ConnectTimeout: 3 * time.Second, Logger: quiet,
			Acker: &mqttconn.Acker{Plain: true}}) // paho's own connection: see connect
		if err == nil {
			t.Cleanup(func() { c.Disconnect(0) })
		}
		return c, err
	}
	sub, err := conn(t, "eldercare-internal", internalPass)
	if err != nil {
		t.Fatalf("internal user: %v", err)
	}
	var mu sync.Mutex
	got := map[string]bool{}
	arrived := make(chan string, 16)
	if err := mqttconn.Wait(ctx, sub.Subscribe(root+"/#", 1, func(_ paho.Client, m paho.Message) {
		mu.Lock()
		got[m.Topic()] = true
		mu.Unlock()
		arrived <- m.Topic()
	}), 5*time.Second, "subscribe"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn(t, "gw-1", "wrong"); err == nil {
		t.Error("mosquitto accepted gw-1 with a wrong password")
	}
	forbidden := root + "/v1/s2/gw-2/telemetry"
	allowed := root + "/v1/s1/bed-1/event"
	for _, tp := range []string{forbidden, allowed} {
		// A fresh connection for each: depending on its version and the
		// protocol level, Mosquitto either acknowledges a denied QoS 1
		// publish and drops it, or closes the connection. Either way the
		// message must never reach the subscriber.
		gw, err := conn(t, "gw-1", "gw1-secret")
		if err != nil {
			t.Fatalf("gw-1 with its password: %v", err)
		}
		err = mqttconn.Wait(ctx, gw.Publish(tp, 1, false, "x"), 5*time.Second, "publish "+tp)
		if err != nil && tp == allowed {
			t.Fatal(err)
		}
	}
	// Mosquitto handles one packet at a time: it has queued (or dropped)
	// the forbidden publish for the subscriber before it answered it, and
	// so before the allowed one arrived on a later connection. The
	// subscriber gets its messages in order: once the allowed one is
	// there, the forbidden one would be too.
	select {
	case <-arrived:
	case <-time.After(5 * time.Second):
		t.Fatalf("allowed publish on %s never arrived; mosquitto log:\n%s", allowed, b.Log())
	}
	mu.Lock()
	defer mu.Unlock()
	if !got[allowed] {
		t.Errorf("allowed publish on %s did not arrive", allowed)
	}
	if got[forbidden] {
		t.Errorf("forbidden publish on %s reached the subscriber", forbidden)
	}
}

func TestMosquittoFilesErrors(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		acc  broker.Account
		want string
	}{
		{"colon in user", broker.Account{Username: "a:b", PasswordHash: "$7$1$x$y", Site: "s", Devices: []string{"a"}}, "username"},
		{"no hash", broker.Account{Username: "gw", PasswordHash: "plain", Site: "s", Devices: []string{"gw"}}, "$7$"},
		{"wildcard device", broker.Account{Username: "gw", PasswordHash: "$7$1$x$y", Site: "s", Devices: []string{"#"}}, "device"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := broker.MosquittoFiles("", []broker.Account{c.acc}, nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("MosquittoFiles = %v, want error containing %q", err, c.want)
			}
		})
	}
}

// TestMosquittoDynsecBindsClientIDs starts a real Mosquitto with the
// exported dynamic-security.json: a gateway credential cannot connect with
// a platform service's client id nor another gateway's, so the service's
// persistent session is never taken over, and a fall the legitimate
// gateway publishes meanwhile reaches it; the services' shared
// subscription is allowed.
func TestMosquittoDynsecBindsClientIDs(t *testing.T) {
	t.Parallel()
	plugin := "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"
	if _, err := os.Stat(plugin); err != nil {
		testenv.Unavailable(t, "mosquitto's dynamic security plugin is missing: %v", err)
	}
	root := testenv.TopicRoot(t)
	ctx := context.Background()
	lookup := accounts(t)
	gw1, _ := lookup(ctx, "gw-1")
	gw2, _ := lookup(ctx, "gw-2")
	internalHash, err := registry.HashPassword(internalPass)
	if err != nil {
		t.Fatal(err)
	}
	js, err := broker.DynsecFile(root, []broker.Account{gw2, gw1}, []broker.MosquittoUser{{Username: "eldercare-internal", PasswordHash: internalHash}})
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "eldercare-mosquitto-dynsec-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil { // the plugin may save the file as the user mosquitto
		t.Fatal(err)
	}
	file := filepath.Join(dir, "dynamic-security.json")
	if err := os.WriteFile(file, js, 0o666); err != nil {
		t.Fatal(err)
	}
	b := testenv.StartMosquitto(t, "plugin "+plugin, "plugin_opt_config_file "+file)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	conn := func(t *testing.T, user, pass, id string, clean bool, h paho.MessageHandler) (paho.Client, error) {
		c, err := mqttconn.Connect(ctx, mqttconn.Options{URL: withUser(b.URL(), user, pass), ClientID: id,
			CleanSession: clean, ConnectTimeout: 3 * time.Second, Logger: quiet, DefaultHandler: h,
			Acker: &mqttconn.Acker{Plain: true}}) // paho's own connection: see connect
		if err == nil {
			t.Cleanup(func() { c.Disconnect(0) })
		}
		return c, err
	}
	alertingID := testenv.ClientID(t, "alerting")
	falls := make(chan string, 4)
	alerting, err := conn(t, "eldercare-internal", internalPass, alertingID, false, func(_ paho.Client, m paho.Message) { falls <- string(m.Payload()) })
	if err != nil {
		t.Fatalf("internal user: %v; mosquitto log:\n%s", err, b.Log())
	}
	tok := alerting.SubscribeMultiple(map[string]byte{root + "/v1/+/+/event": 1, "$share/ingest/" + root + "/v1/+/+/telemetry": 1}, nil)
	if err := mqttconn.Wait(ctx, tok, 5*time.Second, "subscribe"); err != nil {
		t.Fatal(err)
	}
	for f, code := range tok.(*paho.SubscribeToken).Result() {
		if code >= 0x80 {
			t.Errorf("the internal user's subscription %s refused (%#x)", f, code)
		}
	}
	for _, id := range []string{alertingID, "gw-1", "something-else"} {
		if _, err := conn(t, "gw-2", "gw2-secret", id, true, nil); err == nil {
			t.Errorf("gw-2's credential connected with client id %s", id)
		}
	}
	if _, err := conn(t, "gw-2", "gw2-secret", "gw-2", true, nil); err != nil {
		t.Errorf("gw-2 with its own client id: %v", err)
	}
	gw, err := conn(t, "gw-1", "gw1-secret", "gw-1", true, nil)
	if err != nil {
		t.Fatalf("gw-1 with its own client id: %v", err)
	}
	if err := mqttconn.Wait(ctx, gw.Publish(root+"/v1/s1/bed-1/event", 1, false, "fall"), 5*time.Second, "publish"); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-falls:
		if p != "fall" {
			t.Errorf("alerting got %q", p)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the fall never reached alerting's session; mosquitto log:\n%s", b.Log())
	}
	if !alerting.IsConnectionOpen() {
		t.Error("alerting's connection was taken over")
	}
}
