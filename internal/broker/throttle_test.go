package broker_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eldercare-iot/eldercare/device/registry"
	"github.com/eldercare-iot/eldercare/internal/broker"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// TestPasswordGuessThrottle (issue 11 item 8): password guesses against one
// gateway account from one address get only ThrottleFreePerPair password
// checks, then growing delays; the right password waits too, another
// account from the same address does not; the delay passes.
func TestPasswordGuessThrottle(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{t: time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)}
	reg := prometheus.NewRegistry()
	b, err := broker.Start(broker.Config{Addr: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registerer: reg,
		Auth: &broker.Auth{Lookup: accounts(t), InternalUser: "eldercare-internal", InternalPassword: internalPass, Now: clock.now}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	refused := func(reason string) float64 {
		mf, _ := reg.Gather()
		for _, f := range mf {
			if f.GetName() != "eldercare_broker_connect_refused_total" {
				continue
			}
			for _, m := range f.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "reason" && l.GetValue() == reason {
						return m.GetCounter().GetValue()
					}
				}
			}
		}
		return 0
	}
	try := func(user, pass string) error {
		_, err := connect(t, mqttconn.Options{URL: withUser(b.URL(), user, pass), ClientID: user})
		return err
	}
	start := time.Now()
	const guesses = 8
	for i := range guesses {
		if err := try("gw-1", "guess-"+strings.Repeat("x", i%7)); err == nil {
			t.Fatal("a wrong password was accepted")
		}
	}
	t.Logf("%d guesses in %v: %v password checks, %v throttled refusals", guesses, time.Since(start), refused("bad_password"), refused("throttled"))
	if n := refused("bad_password"); n != broker.ThrottleFreePerPair {
		t.Errorf("password checks = %v, want %d (then throttled)", n, broker.ThrottleFreePerPair)
	}
	if refused("throttled") < guesses-broker.ThrottleFreePerPair {
		t.Errorf("throttled refusals = %v, want >= %d", refused("throttled"), guesses-broker.ThrottleFreePerPair)
	}
	if err := try("gw-1", "gw1-secret"); err == nil {
		t.Error("right password accepted while the address is held back")
	}
	if err := try("gw-2", "gw2-secret"); err != nil {
		t.Errorf("another account from the same address: %v", err)
	}
	// The delay grows: 1 s after the 5th failure, 2 s after the 6th.
	clock.add(broker.ThrottleBaseDelay)
	if err := try("gw-1", "one-more-guess"); err == nil {
		t.Fatal("a wrong password was accepted")
	}
	t.Logf("after one more guess: %v checks, %v throttled", refused("bad_password"), refused("throttled"))
	clock.add(broker.ThrottleBaseDelay)
	if err := try("gw-1", "gw1-secret"); err == nil {
		t.Errorf("right password accepted 1 s into a 2 s delay (%v checks, %v throttled)", refused("bad_password"), refused("throttled"))
	}
	clock.add(broker.ThrottleBaseDelay)
	if err := try("gw-1", "gw1-secret"); err != nil {
		t.Errorf("right password after the delay: %v", err)
	}
	// A success clears the count: the next wrong password is checked.
	before := refused("bad_password")
	try("gw-1", "wrong-again") //nolint:errcheck
	if refused("bad_password") <= before {
		t.Error("after a success, a wrong password was not checked")
	}
}

// TestRehashOnConnect: a gateway whose stored hash is Mosquitto 2.0's
// "$7$" (101 PBKDF2 iterations) gets an argon2id hash at its next
// successful CONNECT (Auth.Rehash), which then admits it.
func TestRehashOnConnect(t *testing.T) {
	t.Parallel()
	const pass = "gateway-secret-0123"
	old, err := registry.HashPassword(pass)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	stored := old
	rehashed := make(chan string, 1)
	b, err := broker.Start(broker.Config{Addr: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Auth: &broker.Auth{InternalUser: "eldercare-internal", InternalPassword: internalPass,
			Lookup: func(_ context.Context, u string) (broker.Account, error) {
				if u != "gw-3" {
					return broker.Account{}, broker.ErrUnknownUser
				}
				mu.Lock()
				defer mu.Unlock()
				return broker.Account{Username: u, PasswordHash: stored, Site: "s3", Devices: []string{"gw-3"}}, nil
			},
			Rehash: func(_ context.Context, u, h string) error {
				mu.Lock()
				stored = h
				mu.Unlock()
				rehashed <- h
				return nil
			}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	first, err := connect(t, mqttconn.Options{URL: withUser(b.URL(), "gw-3", pass), ClientID: "gw-3"})
	if err != nil {
		t.Fatalf("connect with the $7$ hash: %v", err)
	}
	select {
	case h := <-rehashed:
		if !strings.HasPrefix(h, "$argon2id$") || !registry.CheckPassword(h, pass) || registry.NeedsRehash(h) {
			t.Fatalf("rehash stored %q", h)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no rehash within 10 s of a successful CONNECT")
	}
	// Leave before the second CONNECT with the same client id: a taken-over
	// client reconnects on its own (mqttconn sets AutoReconnect), and the
	// two would take the session from each other until the broker closes.
	first.Disconnect(0)
	c, err := connect(t, mqttconn.Options{URL: withUser(b.URL(), "gw-3", pass), ClientID: "gw-3"})
	if err != nil {
		t.Fatalf("connect with the argon2id hash: %v", err)
	}
	c.Disconnect(0)
	select {
	case h := <-rehashed:
		t.Errorf("an argon2id hash was rehashed again: %q", h)
	default:
	}
}
