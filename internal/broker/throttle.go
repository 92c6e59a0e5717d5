package broker

import (
	"net"
	"sync"
	"time"
)

// Password-guess throttling of the embedded broker (issue 11 item 8).
//
// Failed CONNECTs (bad password or unknown user) are counted per client
// address and username together and per client address alone. After
// ThrottleFreePerPair failures of one username from one address (or
// ThrottleFreePerHost from one address), that address is refused without
// a password check ("throttled") for ThrottleBaseDelay, doubling with
// every further failure up to ThrottleMaxDelay. A successful CONNECT
// clears the username's count at that address. Other usernames and other
// addresses are not held back, so a guesser cannot lock a gateway out
// from its own address. Counts are forgotten ThrottleForget after the
// last failure. Mosquitto itself has no such limit; this follows OWASP's
// "Protect against automated attacks" with growing delays instead of a
// lockout.
const (
	ThrottleFreePerPair = 5
	ThrottleFreePerHost = 20
	ThrottleBaseDelay   = time.Second
	ThrottleMaxDelay    = 5 * time.Minute
	ThrottleForget      = time.Hour
	throttleMaxKeys     = 100_000
)

type throttleEntry struct {
	fails int
	last  time.Time
	until time.Time
}

// throttle keeps the counts in memory (the embedded broker is one
// process). Safe for concurrent use.
type throttle struct {
	mu  sync.Mutex
	m   map[string]*throttleEntry
	now func() time.Time
}

func newThrottle(now func() time.Time) *throttle {
	if now == nil {
		now = time.Now
	}
	return &throttle{m: map[string]*throttleEntry{}, now: now}
}

// hostOf is the address of remote without its port.
func hostOf(remote string) string {
	if h, _, err := net.SplitHostPort(remote); err == nil {
		return h
	}
	return remote
}

func throttleDelay(fails, free int) time.Duration {
	if fails < free {
		return 0
	}
	n := fails - free
	if n > 20 {
		return ThrottleMaxDelay
	}
	return min(ThrottleMaxDelay, ThrottleBaseDelay<<n)
}

func (t *throttle) keys(user, remote string) [2]string {
	h := hostOf(remote)
	return [2]string{"pair:" + h + "|" + user, "host:" + h}
}

// wait returns how long user from remote is held back (0: check the
// password).
func (t *throttle) wait(user, remote string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	var w time.Duration
	for _, k := range t.keys(user, remote) {
		if e := t.m[k]; e != nil && now.Sub(e.last) <= ThrottleForget {
			w = max(w, e.until.Sub(now))
		}
	}
	return w
}

// fail counts a failed CONNECT of user from remote.
func (t *throttle) fail(user, remote string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	if len(t.m) >= throttleMaxKeys {
		for k, e := range t.m {
			if now.Sub(e.last) > ThrottleForget || now.After(e.until) && e.fails < ThrottleFreePerPair {
				delete(t.m, k)
			}
		}
	}
	for i, k := range t.keys(user, remote) {
		e := t.m[k]
		if e == nil || now.Sub(e.last) > ThrottleForget {
			e = &throttleEntry{}
			t.m[k] = e
		}
		e.fails++
		e.last = now
		free := ThrottleFreePerPair
		if i == 1 {
			free = ThrottleFreePerHost
		}
		e.until = now.Add(throttleDelay(e.fails, free))
	}
}

// ok forgets the failures of user from remote.
func (t *throttle) ok(user, remote string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.m, t.keys(user, remote)[0])
}
