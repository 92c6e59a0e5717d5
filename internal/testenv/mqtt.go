package testenv

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/internal/child"
)

// MachineBrokerAddr is the machine's shared Mosquitto, used by Mosquitto.
const MachineBrokerAddr = "127.0.0.1:1883"

// EnvMosquitto names the environment variable that overrides where the mosquitto binary is looked for.
const EnvMosquitto = "ELDERCARE_MOSQUITTO"

// Mosquitto returns the URL of the machine's broker, tcp://127.0.0.1:1883, if it accepts a TCP connection within 1 s.
// Otherwise it skips the test (fails it under CI). It skips under -short. The broker is shared: use TopicRoot and ClientID to keep tests
// apart, and OwnMosquitto for tests that count losses, load it or restart it.
func Mosquitto(t testing.TB) (url string) {
	t.Helper()
	NeedsServer(t, "the machine's Mosquitto")
	c, err := net.DialTimeout("tcp", MachineBrokerAddr, time.Second)
	if err != nil {
		unavailable(t, "no MQTT broker at %s (%v); install and start mosquitto", MachineBrokerAddr, err)
	}
	c.Close()
	return "tcp://" + MachineBrokerAddr
}

// OwnMosquitto starts a test-owned Mosquitto as StartMosquitto does and returns its URL, tcp://127.0.0.1:port.
func OwnMosquitto(t testing.TB, extraConf ...string) (url string) {
	t.Helper()
	return StartMosquitto(t, extraConf...).URL()
}

// mosquittoConf never drops a message on its own: Mosquitto's defaults drop QoS 1/2 messages past 1,000 queued per
// client (max_queued_messages) and hold only 20 in flight; 0 means no limit for all four options (mosquitto.conf(5),
// Mosquitto 2.0). %d is the port.
const mosquittoConf = `# Written by eldercare internal/testenv.
listener %d 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 0
max_queued_bytes 0
max_inflight_messages 0
max_inflight_bytes 0
set_tcp_nodelay true
log_dest stdout
log_type error
log_type warning
log_type notice
log_type information
`

// Broker is a test-owned Mosquitto process on a fixed loopback port. It can be stopped, killed and started again on
// the same port, to test reconnects and spooling. Start must be called from the test's goroutine; Stop and Kill
// from any goroutine.
type Broker struct {
	t    testing.TB
	bin  string
	conf string
	port int
	log  *child.Tail // kept across restarts

	mu   sync.Mutex
	proc *child.Process // nil while stopped
}

// StartMosquitto starts `mosquitto -c <conf>` on a free port on 127.0.0.1 with a config that never drops messages
// (see mosquittoConf) plus the lines in extraConf, waits until it answers an MQTT CONNECT, and stops it in t.Cleanup.
// It skips the test when the mosquitto binary is missing ($ELDERCARE_MOSQUITTO, $PATH, /usr/sbin), or fails it
// under CI, and under -short.
func StartMosquitto(t testing.TB, extraConf ...string) *Broker {
	t.Helper()
	NeedsServer(t, "Mosquitto")
	bin, err := findMosquitto()
	if err != nil {
		unavailable(t, "%v", err)
	}
	b := &Broker{t: t, bin: bin, conf: filepath.Join(t.TempDir(), "mosquitto.conf"), log: child.NewTail(16 << 10)}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("testenv: mosquitto log tail:\n%s", lastBytes(b.log.String(), 2048))
		}
		b.Stop()
	})
	// A picked port may be taken before mosquitto binds it: try again with another.
	for attempt := 1; ; attempt++ {
		b.port = FreePort(t)
		conf := fmt.Sprintf(mosquittoConf, b.port) + strings.Join(extraConf, "\n") + "\n"
		if err := os.WriteFile(b.conf, []byte(conf), 0o644); err != nil {
			t.Fatalf("testenv: write mosquitto config: %v", err)
		}
		err := b.start()
		if err == nil {
			return b
		}
		if !errors.Is(err, errAddrInUse) || attempt == 3 {
			t.Fatalf("testenv: %v", err)
		}
	}
}

// URL is tcp://127.0.0.1:port.
func (b *Broker) URL() string { return "tcp://" + b.Addr() }

// Addr is 127.0.0.1:port.
func (b *Broker) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port)) }

// Port is the broker's TCP port; it stays the same across Stop and Start.
func (b *Broker) Port() int { return b.port }

// Log returns the last 16 KiB of the broker's log, across restarts.
func (b *Broker) Log() string { return b.log.String() }

// Running reports whether the broker process is up.
func (b *Broker) Running() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.proc != nil && !b.proc.Exited()
}

// Start starts the broker again on the same port and waits until it answers, retrying for up to 10 s while the port
// is still held. It does nothing if the broker is running. It fails the test on error, so call it from the test's
// goroutine.
func (b *Broker) Start() {
	b.t.Helper()
	b.mu.Lock()
	running := b.proc != nil && !b.proc.Exited()
	b.mu.Unlock()
	if running {
		return
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := b.start()
		if err == nil {
			return
		}
		if !errors.Is(err, errAddrInUse) || time.Now().After(deadline) {
			b.t.Fatalf("testenv: restart mosquitto on %s: %v", b.Addr(), err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Stop stops the broker with SIGTERM (a clean shutdown: clients see their connection closed), waiting up to 5 s
// before SIGKILL. It does nothing if the broker is stopped, and reports problems with t.Errorf.
func (b *Broker) Stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.proc == nil {
		return
	}
	if err := b.proc.Stop(5 * time.Second); err != nil {
		b.t.Errorf("testenv: stop mosquitto on %s: %v", b.Addr(), err)
	}
	b.proc = nil
}

// Kill stops the broker with SIGKILL, as a crash or power cut would, and waits for it to exit.
func (b *Broker) Kill() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.proc == nil {
		return
	}
	b.proc.Kill()
	b.proc = nil
}

var errAddrInUse = errors.New("address already in use")

func (b *Broker) start() error {
	fmt.Fprintf(b.log, "--- testenv: starting mosquitto on %s at %s\n", b.Addr(), time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(b.bin, "-c", b.conf)
	cmd.Stdout = b.log
	cmd.Stderr = b.log
	// SIGKILL on the test binary's death (a -timeout panic skips t.Cleanup), so no broker outlives its test
	// holding a port.
	p, err := child.Start(cmd, syscall.SIGKILL)
	if err != nil {
		return fmt.Errorf("start %s: %w", b.bin, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		perr := probeMQTT(b.Addr(), time.Second)
		if perr == nil {
			break
		}
		select {
		case <-p.Done():
			tail := lastBytes(b.log.String(), 2048)
			err := fmt.Errorf("mosquitto exited (%v); log tail:\n%s", p.Err(), tail)
			if strings.Contains(strings.ToLower(lastBytes(tail, 512)), "address already in use") {
				err = fmt.Errorf("%w: %w", errAddrInUse, err)
			}
			return err
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = p.Stop(time.Second)
			return fmt.Errorf("mosquitto on %s did not answer MQTT CONNECT within 10 s (%v); log tail:\n%s",
				b.Addr(), perr, lastBytes(b.log.String(), 2048))
		}
	}
	b.mu.Lock()
	b.proc = p
	b.mu.Unlock()
	return nil
}

// probeMQTT sends an MQTT 3.1.1 CONNECT (clean session, unique client id) and expects a CONNACK accepting it.
func probeMQTT(addr string, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	id := "testenv-probe-" + suffix()
	pkt := []byte{0x10, byte(10 + 2 + len(id)), 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 10, 0, byte(len(id))}
	pkt = append(pkt, id...)
	if _, err := c.Write(pkt); err != nil {
		return err
	}
	var ack [4]byte
	if _, err := io.ReadFull(c, ack[:]); err != nil {
		return fmt.Errorf("read CONNACK: %w", err)
	}
	if ack[0] != 0x20 || ack[1] != 2 || ack[3] != 0 {
		return fmt.Errorf("unexpected CONNACK % x", ack)
	}
	_, _ = c.Write([]byte{0xe0, 0}) // DISCONNECT
	return nil
}

// ConnackError is a broker's refusal of an MQTT 3.1.1 CONNECT: Code is the
// CONNACK return code (4 bad user name or password, 5 not authorized).
type ConnackError struct{ Code byte }

func (e *ConnackError) Error() string {
	return fmt.Sprintf("CONNACK refused the connection: return code %d", e.Code)
}

// ConnectAs sends one MQTT 3.1.1 CONNECT (clean session, the given client id
// and, when user is not empty, user name and password) to addr (host:port)
// and reads the CONNACK: nil when the broker accepts the client (it then
// disconnects), a *ConnackError when it refuses it, another error when no
// CONNACK came within timeout. It answers as soon as the broker does: a
// refused paho client (mqttconn) lingers on close for a reply nobody reads,
// about 2 s per refusal.
func ConnectAs(addr, clientID, user, password string, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	str := func(b []byte, s string) []byte { return append(append(b, byte(len(s)>>8), byte(len(s))), s...) }
	flags := byte(0x02) // clean session
	body := []byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0, 0, 10}
	body = str(body, clientID)
	if user != "" {
		flags |= 0x80 | 0x40
		body = str(str(body, user), password)
	}
	body[7] = flags
	if len(body) > 127*128 {
		return fmt.Errorf("testenv: CONNECT of %d bytes is too long", len(body))
	}
	pkt := []byte{0x10}
	for n := len(body); ; { // remaining length, variable-length encoded
		b := byte(n % 128)
		if n /= 128; n > 0 {
			b |= 0x80
		}
		pkt = append(pkt, b)
		if n == 0 {
			break
		}
	}
	if _, err := c.Write(append(pkt, body...)); err != nil {
		return err
	}
	var ack [4]byte
	if _, err := io.ReadFull(c, ack[:]); err != nil {
		return fmt.Errorf("read CONNACK: %w", err)
	}
	if ack[0] != 0x20 || ack[1] != 2 {
		return fmt.Errorf("unexpected CONNACK % x", ack)
	}
	if ack[3] != 0 {
		return &ConnackError{Code: ack[3]}
	}
	_, _ = c.Write([]byte{0xe0, 0}) // DISCONNECT
	return nil
}

func findMosquitto() (string, error) {
	if p := os.Getenv(EnvMosquitto); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("$%s: %w", EnvMosquitto, err)
		}
		return p, nil
	}
	if p, err := exec.LookPath("mosquitto"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/opt/homebrew/sbin/mosquitto"} {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p, nil
		}
	}
	return "", fmt.Errorf("mosquitto binary not found on $PATH or in /usr/sbin; install it (apt-get install mosquitto) or set $%s", EnvMosquitto)
}
