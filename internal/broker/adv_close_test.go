package broker

// Adversarial tests of the connect deadline (ConnectTimeout) and of
// Close's closing of the connections still open after ShutdownGrace
// (trackListener.closeOpen).

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/eldercare-iot/eldercare/device/registry"
)

// setFor sets *p to v for the test.
func setFor[T any](t *testing.T, p *T, v T) {
	old := *p
	*p = v
	t.Cleanup(func() { *p = old })
}

var advQuiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// closedByBroker waits (at most rawReadWait) until the broker closes conn
// and fails if it sends anything first or does not close it.
func closedByBroker(t *testing.T, conn net.Conn, what string) {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(rawReadWait))
	n, err := conn.Read(make([]byte, 1))
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("%s: read %d bytes, %v; want the connection closed by the broker", what, n, err)
	}
}

// openConns is how many accepted connections the broker's listeners hold
// as open, and as not yet started.
func openConns(b *Broker) (open, pending int) {
	for _, l := range b.listeners {
		l.mu.Lock()
		open += len(l.open)
		pending += len(l.pending)
		l.mu.Unlock()
	}
	return open, pending
}

// waitNoOpen waits until the listeners hold no connection.
func waitNoOpen(t *testing.T, b *Broker) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		open, pending := openConns(b)
		if open == 0 && pending == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("listeners still hold %d open connections (%d not started) after every client left", open, pending)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitOpen waits until the listeners hold at least n open connections:
// the broker has accepted them (a connection still in the kernel's
// backlog is reset when Close closes the listener, and proves nothing).
func waitOpen(t *testing.T, b *Broker, n int) {
	t.Helper()
	deadline := time.Now().Add(rawReadWait)
	for {
		if open, _ := openConns(b); open >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the broker did not accept %d connections", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// rawOn wraps an established conn (TCP or TLS) as a rawClient.
func rawOn(t *testing.T, conn net.Conn) *rawClient {
	t.Cleanup(func() { conn.Close() })
	return &rawClient{t: t, conn: conn, r: bufio.NewReader(conn)}
}

func connectPk(id string, keepalive uint16, clean bool) packets.Packet {
	return packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, Connect: packets.ConnectParams{
		ProtocolName: []byte("MQTT"), ClientIdentifier: id, Clean: clean, Keepalive: keepalive}}
}

func encodeConnect(t *testing.T, pk packets.Packet) []byte {
	t.Helper()
	pk.ProtocolVersion = 4
	var buf bytes.Buffer
	if err := pk.ConnectEncode(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func expectConnack(t *testing.T, c *rawClient, what string) {
	t.Helper()
	ack := c.read()
	if ack.FixedHeader.Type != packets.Connack || ack.ReasonCode != 0 {
		t.Fatalf("%s: got %v, want a successful CONNACK", what, ack)
	}
}

// pingPong checks that the connection still carries packets both ways.
func pingPong(t *testing.T, c *rawClient, what string) {
	t.Helper()
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}})
	if pk := c.read(); pk.FixedHeader.Type != packets.Pingresp {
		t.Fatalf("%s: got %s, want PINGRESP", what, packets.PacketNames[pk.FixedHeader.Type])
	}
}

// TestAdvKeepAliveZeroOutlivesConnectTimeout: a client with keep-alive 0
// (no keep-alive: mochi clears the deadline) that sent its CONNECT byte by
// byte, within ConnectTimeout, keeps its connection after the connect
// deadline has passed; so does a client with a keep-alive. The positive
// signal that the deadline has passed is a silent connection, accepted
// after both, being closed by the broker.
func TestAdvKeepAliveZeroOutlivesConnectTimeout(t *testing.T) {
	setFor(t, &ConnectTimeout, 1500*time.Millisecond)
	b, err := Start(Config{Addr: "127.0.0.1:0", Logger: advQuiet})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	conn := dialTCP(t, b.addr.String())
	ka0 := rawOn(t, conn)
	for _, by := range encodeConnect(t, connectPk("ka0", 0, true)) {
		if _, err := conn.Write([]byte{by}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(15 * time.Millisecond) // a slow link, well within ConnectTimeout
	}
	expectConnack(t, ka0, "keep-alive 0, CONNECT byte by byte")
	ka30, _ := dialRaw(t, b, "ka30", true)

	silent := dialTCP(t, b.addr.String())
	closedByBroker(t, silent, "silent connection")

	// Both clients' connect deadlines have passed: they still work.
	ka0.subscribe("adv/ka0", 1, 1)
	ka0.publish("adv/ka0", 1, 2, "still here")
	for range 2 {
		if pk := ka0.read(); pk.FixedHeader.Type != packets.Puback && pk.FixedHeader.Type != packets.Publish {
			t.Fatalf("keep-alive 0 after the connect deadline: got %s", packets.PacketNames[pk.FixedHeader.Type])
		}
	}
	pingPong(t, ka30, "keep-alive 60 after the connect deadline")
}

// slowLookup is an Auth.Lookup that blocks for user "slow-gw" until
// released.
type slowLookup struct {
	entered chan struct{}
	release chan struct{}
	hash    string
}

func (s *slowLookup) lookup(ctx context.Context, user string) (Account, error) {
	if user != "slow-gw" {
		return Account{}, fmt.Errorf("%q: %w", user, ErrUnknownUser)
	}
	close(s.entered)
	select {
	case <-s.release:
	case <-ctx.Done():
		return Account{}, ctx.Err()
	}
	return Account{Username: "slow-gw", PasswordHash: s.hash, Site: "s1", Devices: []string{"slow-gw"}}, nil
}

// TestAdvSlowAuthNotCutByConnectDeadline: a CONNECT whose authentication
// (the product's auth hook, its account lookup) outlasts ConnectTimeout is
// not cut by the connect deadline: the client gets its CONNACK and a
// working connection.
func TestAdvSlowAuthNotCutByConnectDeadline(t *testing.T) {
	setFor(t, &ConnectTimeout, 300*time.Millisecond)
	hash, err := registry.HashPassword("slow-secret")
	if err != nil {
		t.Fatal(err)
	}
	sl := &slowLookup{entered: make(chan struct{}), release: make(chan struct{}), hash: hash}
	b, err := Start(Config{Addr: "127.0.0.1:0", Logger: advQuiet, Auth: &Auth{Root: "test-adv", Lookup: sl.lookup}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var once sync.Once
	release := func() { once.Do(func() { close(sl.release) }) }
	defer release()

	conn := dialTCP(t, b.addr.String())
	c := rawOn(t, conn)
	pk := connectPk("slow-gw", 60, true)
	pk.Connect.UsernameFlag, pk.Connect.Username = true, []byte("slow-gw")
	pk.Connect.PasswordFlag, pk.Connect.Password = true, []byte("slow-secret")
	c.send(pk)
	select {
	case <-sl.entered:
	case <-time.After(rawReadWait):
		t.Fatal("the account lookup was not called")
	}
	silent := dialTCP(t, b.addr.String())
	closedByBroker(t, silent, "silent connection")
	release()
	expectConnack(t, c, "CONNECT authenticated after the connect deadline")
	pingPong(t, c, "slow-authenticated client")
}

func selfSigned(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "adv-broker"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

// TestAdvTLSConnectDeadline: on the TLS listener, a connection that never
// starts its handshake and one that stops half-way through the CONNECT
// are closed after ConnectTimeout, while a TLS client with keep-alive 0
// keeps its connection; at Close, connections that have not finished
// their handshake do not hold the shutdown, and nothing stays open.
func TestAdvTLSConnectDeadline(t *testing.T) {
	setFor(t, &ConnectTimeout, 500*time.Millisecond)
	b, err := Start(Config{Addr: "127.0.0.1:0", Logger: advQuiet, TLSAddr: "127.0.0.1:0", TLS: selfSigned(t),
		StorePath: filepath.Join(t.TempDir(), "store.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	tlsDial := func() *tls.Conn {
		conn, err := tls.Dial("tcp", b.tlsAddr.String(), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		return conn
	}
	tc := tlsDial()
	ka0 := rawOn(t, tc)
	ka0.send(connectPk("tls-ka0", 0, true))
	expectConnack(t, ka0, "TLS client with keep-alive 0")

	noHello := dialTCP(t, b.tlsAddr.String())
	half := tlsDial()
	defer half.Close()
	if _, err := half.Write(encodeConnect(t, connectPk("tls-half", 60, true))[:5]); err != nil {
		t.Fatal(err)
	}
	closedByBroker(t, noHello, "TLS connection without a ClientHello")
	closedByBroker(t, half, "TLS connection with half a CONNECT")
	pingPong(t, ka0, "TLS keep-alive 0 after the connect deadline")
	if err := b.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	waitNoOpen(t, b)

	// At shutdown (with no connect deadline to end them): a handshake
	// never started, one started and not ended.
	setFor(t, &ConnectTimeout, time.Hour)
	b, err = Start(Config{Addr: "127.0.0.1:0", Logger: advQuiet, TLSAddr: "127.0.0.1:0", TLS: selfSigned(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	noHello2 := dialTCP(t, b.tlsAddr.String())
	partial := dialTCP(t, b.tlsAddr.String())
	// The first bytes of a TLS record header: a ClientHello that never
	// ends.
	if _, err := partial.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01}); err != nil {
		t.Fatal(err)
	}
	waitOpen(t, b, 2)
	start := time.Now()
	if err := b.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if d := time.Since(start); d >= CloseTimeout {
		t.Errorf("Close took %s", d)
	}
	closedByBroker(t, noHello2, "TLS connection without a ClientHello, at Close")
	closedByBroker(t, partial, "TLS connection mid-handshake, at Close")
	waitNoOpen(t, b)
}

// TestAdvOpenEmptyAfterCycles: after many connections that end every way a
// connection ends (clean DISCONNECT, refused by auth, a first packet that
// is not a CONNECT, closed before or during the CONNECT, dropped without
// DISCONNECT, a failed TLS handshake), the listeners hold no connection:
// the open map does not grow with the broker's uptime.
func TestAdvOpenEmptyAfterCycles(t *testing.T) {
	const internal = "adv-internal-pass"
	b, err := Start(Config{Addr: "127.0.0.1:0", Logger: advQuiet, TLSAddr: "127.0.0.1:0", TLS: selfSigned(t),
		StorePath: filepath.Join(t.TempDir(), "store.db"),
		Auth: &Auth{Root: "test-adv", InternalUser: "eldercare-internal", InternalPassword: internal,
			Lookup: func(context.Context, string) (Account, error) { return Account{}, ErrUnknownUser }}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	dial := func() net.Conn {
		conn := dialTCP(t, b.addr.String())
		return conn
	}
	login := func(id, pass string) packets.Packet {
		pk := connectPk(id, 60, true)
		pk.Connect.UsernameFlag, pk.Connect.Username = true, []byte("eldercare-internal")
		pk.Connect.PasswordFlag, pk.Connect.Password = true, []byte(pass)
		return pk
	}
	for i := range 15 {
		// Clean connect and DISCONNECT.
		c := rawOn(t, dial())
		c.send(login(fmt.Sprintf("ok-%d", i), internal))
		expectConnack(t, c, "internal login")
		c.conn.Write([]byte{0xe0, 0x00})
		closedByBroker(t, c.conn, "after DISCONNECT")

		// Connected, then dropped without DISCONNECT.
		c = rawOn(t, dial())
		c.send(login(fmt.Sprintf("drop-%d", i), internal))
		expectConnack(t, c, "internal login")
		c.conn.Close()

		// Refused: bad password (throttled after a few), unknown user.
		c = rawOn(t, dial())
		c.send(login(fmt.Sprintf("bad-%d", i), "wrong"))
		if ack := c.read(); ack.FixedHeader.Type != packets.Connack || ack.ReasonCode == 0 {
			t.Fatalf("bad password: got %v", ack)
		}
		closedByBroker(t, c.conn, "refused CONNECT")

		// First packet not a CONNECT.
		c = rawOn(t, dial())
		c.conn.Write([]byte{0xc0, 0x00}) // PINGREQ
		closedByBroker(t, c.conn, "PINGREQ before CONNECT")

		// Closed before and during the CONNECT.
		dial().Close()
		c = rawOn(t, dial())
		c.conn.Write(encodeConnect(t, connectPk("half", 60, true))[:6])
		c.conn.Close()

		// TLS: plain text to the TLS listener, and a completed handshake
		// closed before the CONNECT.
		plain := dialTCP(t, b.tlsAddr.String())
		plain.Write(encodeConnect(t, connectPk("plain", 60, true)))
		closedByBroker(t, plain, "plain text on the TLS listener")
		plain.Close()
		tc, err := tls.Dial("tcp", b.tlsAddr.String(), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		tc.Close()
	}
	waitNoOpen(t, b)
}

// TestAdvConcurrentCloseKeepsPublished: a QoS 1 message acknowledged just
// before shutdown survives it (for a persistent subscriber that is away),
// Close called twice at once with a silent connection and half a CONNECT
// open returns nil from both, well before CloseTimeout, and releases the
// store for the next start.
func TestAdvConcurrentCloseKeepsPublished(t *testing.T) {
	// Only Close can end the silent connections (not the connect
	// deadline), before CloseTimeout.
	setFor(t, &ConnectTimeout, time.Hour)
	path := filepath.Join(t.TempDir(), "store.db")
	b := quietBroker(t, path)
	sub, _ := dialRaw(t, b, "adv-close-sub", false)
	sub.subscribe("test-adv/close/#", 1, 1)
	sub.conn.Close()
	gone(t, b, "adv-close-sub")

	dialTCP(t, b.addr.String()) // silent: never sends its CONNECT
	half := dialTCP(t, b.addr.String())
	half.Write([]byte{0x10, 0x20, 0x00, 0x04, 'M'})

	pub, _ := dialRaw(t, b, "adv-close-pub", true)
	pub.publish("test-adv/close/fall", 1, 9, "fall before shutdown")
	pub.expect("PUBACK before shutdown", packets.Puback, 9)

	start := time.Now()
	errs := make(chan error, 2)
	for range 2 {
		go func() { errs <- b.Close() }()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Errorf("Close = %v", err)
		}
	}
	if d := time.Since(start); d >= CloseTimeout {
		t.Errorf("Close took %s", d)
	}
	waitNoOpen(t, b)

	wantAfterRestart(t, path, "adv-close-sub", "fall before shutdown", "the message acknowledged before shutdown")
}

// TestAdvHeldPubackSentAtClose: a PUBACK that the store holds until its
// journal commit (ackConn) is still sent at shutdown when the commit ends
// within ackFlushWait, even after ShutdownGrace has passed and Close has
// closed the connections still open: ackConn.Close waits for it, so
// closing the connection under it must too. On both listeners (on the TLS
// one the ackConn is over the TLS connection).
func TestAdvHeldPubackSentAtClose(t *testing.T) {
	setFor(t, &ShutdownGrace, 200*time.Millisecond)
	for _, useTLS := range []bool{false, true} {
		name := map[bool]string{false: "tcp", true: "tls"}[useTLS]
		t.Run(name, func(t *testing.T) { heldPubackAtClose(t, useTLS) })
	}
}

func heldPubackAtClose(t *testing.T, useTLS bool) {
	b, err := Start(Config{Addr: "127.0.0.1:0", Logger: advQuiet, StorePath: filepath.Join(t.TempDir(), "store.db"),
		Root: "test-adv", TLSAddr: "127.0.0.1:0", TLS: selfSigned(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	// The writer stalls on a retained message (a slow disk): every later
	// commit waits behind it.
	entered, release := make(chan struct{}), make(chan struct{})
	var enterOnce, releaseOnce sync.Once
	stall := func(o *storeOp) error {
		if m, ok := o.val.(storage.Message); ok && m.TopicName == "test-adv/stall" {
			enterOnce.Do(func() { close(entered) })
			<-release
		}
		return nil
	}
	b.store.failWrite.Store(&stall)
	defer releaseOnce.Do(func() { close(release) })

	var pub *rawClient
	if useTLS {
		conn, err := tls.Dial("tcp", b.tlsAddr.String(), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		pub = rawOn(t, conn)
		pub.send(connectPk("adv-held-pub", 60, true))
		expectConnack(t, pub, "TLS publisher")
	} else {
		pub, _ = dialRaw(t, b, "adv-held-pub", true)
	}
	// mochi reads the client's packets only after its session is stored
	// (OnSessionEstablished waits for that commit): make sure that commit
	// is not behind the stalled one.
	pingPong(t, pub, "publisher")
	staller, _ := dialRaw(t, b, "adv-staller", true)
	staller.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Retain: true}, TopicName: "test-adv/stall", Payload: []byte("x")})
	select {
	case <-entered:
	case <-time.After(rawReadWait):
		t.Fatal("the store's writer did not reach the stalled write")
	}
	pub.publish("test-adv/held", 1, 3, "held")
	// Wait until the PUBACK is held in the connection for the commit.
	deadline := time.Now().Add(rawReadWait)
	for !holding(b, "adv-held-pub") {
		if time.Now().After(deadline) {
			t.Fatal("the PUBACK was not held for the stalled commit")
		}
		time.Sleep(5 * time.Millisecond)
	}

	silent := dialTCP(t, b.addr.String())
	waitOpen(t, b, 3) // pub, staller, silent
	closed := make(chan error, 1)
	go func() { closed <- b.Close() }()
	// The silent connection closed: ShutdownGrace has passed and Close has
	// closed what was still open. The commit then ends, well within
	// ackFlushWait of the shutdown.
	closedByBroker(t, silent, "silent connection at Close")
	releaseOnce.Do(func() { close(release) })
	pub.expect("PUBACK held for the commit at shutdown", packets.Puback, 3)
	if err := <-closed; err != nil {
		t.Errorf("Close = %v", err)
	}
}

// holding reports whether client id's connection holds writes for a
// commit.
func holding(b *Broker, id string) bool {
	cl, ok := b.srv.Clients.Get(id)
	if !ok {
		return false
	}
	ac, ok := cl.Net.Conn.(*ackConn)
	if !ok {
		return false
	}
	ac.mu.Lock()
	defer ac.mu.Unlock()
	return len(ac.held) > 0
}

// blockConnect blocks the CONNECT of client id in OnConnect until
// released.
type blockConnect struct {
	mqtt.HookBase
	id      string
	entered chan struct{}
	release chan struct{}
}

func (h *blockConnect) ID() string { return "adv-block-connect" }
func (h *blockConnect) Provides(b byte) bool {
	return b == mqtt.OnConnect
}
func (h *blockConnect) OnConnect(cl *mqtt.Client, _ packets.Packet) error {
	if cl.ID == h.id {
		close(h.entered)
		<-h.release
	}
	return nil
}

// TestAdvResumeDuringCloseKeepsQueue: a persistent session's client whose
// CONNECT is still being handled when the broker shuts down is cut off by
// Close (mochi does not know it as a client yet); the message queued for
// that session while it was away is still in the store at the next start.
func TestAdvResumeDuringCloseKeepsQueue(t *testing.T) {
	setFor(t, &ConnectTimeout, time.Hour)
	path := filepath.Join(t.TempDir(), "store.db")
	b := quietBroker(t, path)
	defer b.Close()
	sub, _ := dialRaw(t, b, "adv-q-sub", false)
	sub.subscribe("test-adv/q/#", 1, 1)
	sub.conn.Close()
	gone(t, b, "adv-q-sub")
	pub, _ := dialRaw(t, b, "adv-q-pub", true)
	pub.publish("test-adv/q/fall", 1, 4, "queued while away")
	pub.expect("PUBACK", packets.Puback, 4)

	h := &blockConnect{id: "adv-q-sub", entered: make(chan struct{}), release: make(chan struct{})}
	if err := b.srv.AddHook(h, nil); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release := func() { once.Do(func() { close(h.release) }) }
	defer release()
	conn := dialTCP(t, b.addr.String())
	back := rawOn(t, conn)
	back.send(connectPk("adv-q-sub", 60, false))
	select {
	case <-h.entered:
	case <-time.After(rawReadWait):
		t.Fatal("the CONNECT did not reach OnConnect")
	}
	closed := make(chan error, 1)
	go func() { closed <- b.Close() }()
	closedByBroker(t, conn, "CONNECT in progress at Close")
	release()
	if err := <-closed; err != nil {
		t.Errorf("Close = %v", err)
	}

	wantAfterRestart(t, path, "adv-q-sub", "queued while away", "the message queued while the session was away")
}

// dialTCP opens a TCP connection to addr (closed at the end of the test),
// failing t when it cannot.
func dialTCP(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// wantAfterRestart starts a broker on the store at path and checks that
// the persistent session client, reconnecting, is sent payload first.
func wantAfterRestart(t *testing.T, path, client, payload, what string) {
	t.Helper()
	b := quietBroker(t, path)
	defer b.Close()
	sub, _ := dialRaw(t, b, client, false)
	pk := sub.read()
	if pk.FixedHeader.Type != packets.Publish || string(pk.Payload) != payload {
		t.Fatalf("after restart: got %s %q, want %s", packets.PacketNames[pk.FixedHeader.Type], pk.Payload, what)
	}
}
