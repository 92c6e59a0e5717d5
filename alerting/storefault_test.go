package alerting

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/internal/sqldb"
	"github.com/eldercare-iot/eldercare/internal/sqldb/sqldbtest"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// gauge returns the value of a gauge (summed over its series).
func gauge(t *testing.T, r *running, name string) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if g := m.GetGauge(); g != nil {
				sum += g.GetValue()
			}
			if c := m.GetCounter(); c != nil {
				sum += c.GetValue()
			}
		}
	}
	return sum
}

// onceEach checks that the webhook got exactly one "opened" notification of
// a fall alert on dev, and no notification id twice, once the outbox of m
// is settled.
func onceEach(t *testing.T, e *env, m *Manager, dev string) {
	t.Helper()
	outboxSettled(t, m)
	e.hook.check(t)
	e.hook.mu.Lock()
	defer e.hook.mu.Unlock()
	ids := map[string]int{}
	opened := 0
	for _, c := range e.hook.got {
		ids[c.ID]++
		if c.Alert.Device == dev && c.Alert.Type == TypeFall && c.Event == EventOpened {
			opened++
		}
	}
	if opened != 1 {
		t.Errorf("%d opened notifications of the fall on %s, want exactly 1", opened, dev)
	}
	for id, n := range ids {
		if n != 1 {
			t.Errorf("notification %s delivered %d times", id, n)
		}
	}
}

// TestFallWhileSQLiteLocked: another connection holds the SQLite alert
// store's write lock (BEGIN EXCLUSIVE, as a sqlite3 shell or a backup tool
// does) while a fall arrives, for four times busy_timeout (a 20 s lock
// against the production busy_timeout of 5 s; here busy_timeout is set to
// 250 ms and the lock held 1 s, so that the test takes a second). The fall
// is held, not acked and not dropped: /readyz's check and the gauge say
// the store is failing, and once the lock ends the alert opens and its
// first notification reaches the webhook exactly once.
func TestFallWhileSQLiteLocked(t *testing.T) {
	t.Parallel()
	const busyTimeout = 250 * time.Millisecond
	e := newEnv(t)
	e.dsn += fmt.Sprintf("?_pragma=busy_timeout(%d)", busyTimeout.Milliseconds())
	r := e.start(nil)
	// Ready once both sessions' subscriptions are acknowledged, which may
	// come just after start's probe is handled.
	testenv.Eventually(t, 10*time.Second, func() string {
		if err := r.svc.Ready(); err != nil {
			return "Ready before the lock: " + err.Error()
		}
		return ""
	})

	ctx := context.Background()
	other, err := sqldb.Open(ctx, e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	conn, err := other.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN EXCLUSIVE"); err != nil {
		t.Fatal(err)
	}
	locked := time.Now()
	e.fall("fd-lock", 1)

	// After busy_timeout the decision is retried, and the engine says so.
	testenv.EventuallyTrue(t, 15*time.Second, "store failing reported", func() bool {
		return r.svc.Ready() != nil && gauge(t, r, "eldercare_alerting_store_failing") == 1
	})
	t.Logf("not ready after %s: %v", time.Since(locked).Round(time.Millisecond), r.svc.Ready())
	if n := len(openAlerts(t, r.m, TypeFall)); n != 0 {
		t.Fatalf("%d fall alerts readable while the writer lock is held", n)
	}
	time.Sleep(time.Until(locked.Add(4 * busyTimeout))) // the lock's length: the scenario, not a wait for something
	if n := len(openAlerts(t, r.m, TypeFall)); n != 0 {
		t.Fatalf("%d fall alerts readable while the writer lock is held", n)
	}
	if err := r.svc.Ready(); err == nil {
		t.Fatal("ready while the fall's decision cannot be stored")
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	unlocked := time.Now()
	t.Logf("lock held %s", unlocked.Sub(locked).Round(time.Millisecond))
	testenv.EventuallyTrue(t, 15*time.Second, "fall alert opened after the lock", func() bool {
		return len(e.hook.changes(TypeFall, EventOpened)) > 0
	})
	t.Logf("opened notification %s after the lock ended", time.Since(unlocked).Round(time.Millisecond))
	testenv.EventuallyTrue(t, 10*time.Second, "ready again", func() bool {
		return r.svc.Ready() == nil && gauge(t, r, "eldercare_alerting_store_failing") == 0
	})
	if n := gauge(t, r, "eldercare_alerting_store_retries_total"); n < 1 {
		t.Errorf("store retries %v, want >= 1", n)
	}
	if n := len(openAlerts(t, r.m, TypeFall)); n != 1 {
		t.Errorf("%d open fall alerts, want 1", n)
	}
	onceEach(t, e, r.m, "fd-lock")
}

// TestFallWhilePostgresTerminatesConnections: an admin connection
// terminates every connection of the product (pg_terminate_backend, what a
// PostgreSQL restart or failover does) every 100 ms for 5 s while a fall
// arrives at two alerting replicas. The alert opens once, and its first
// notification reaches the webhook exactly once.
func TestFallWhilePostgresTerminatesConnections(t *testing.T) {
	t.Parallel()
	base := sqldbtest.PostgresDSN(t)
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	app := fmt.Sprintf("eldercare-test-%d", time.Now().UnixNano()%1e9)
	q := u.Query()
	q.Set("application_name", app)
	u.RawQuery = q.Encode()
	dsn := u.String()

	e := newEnv(t)
	a := e.startReplica(dsn, "replica-a", nil, nil)
	b := e.startReplica(dsn, "replica-b", nil, nil)

	admin, err := sql.Open("pgx", sqldbtest.PostgresURL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	terminate := func() int {
		var n int
		if err := admin.QueryRow(`SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1`, app).Scan(&n); err != nil {
			t.Errorf("terminate: %v", err)
		}
		return n
	}
	if n := terminate(); n == 0 {
		t.Fatal("no connection of the product to terminate (application_name not seen)")
	}
	e.fall("fd-pg", 1)
	var killed int
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		killed += terminate()
	}
	t.Logf("%d connections terminated", killed)
	testenv.EventuallyTrue(t, 30*time.Second, "fall alert opened", func() bool {
		return len(e.hook.changes(TypeFall, EventOpened)) > 0
	})
	for _, r := range []*running{a, b} {
		testenv.EventuallyTrue(t, 10*time.Second, "ready again", func() bool { return r.svc.Ready() == nil })
	}
	retries := gauge(t, a, "eldercare_alerting_store_retries_total") + gauge(t, b, "eldercare_alerting_store_retries_total")
	t.Logf("store retries: %v", retries)
	if retries < 1 {
		t.Error("no decision was retried: the terminations never hit the fall's transaction")
	}
	// The test's own pooled connections were terminated too: the first
	// read may fail once.
	var open []Alert
	testenv.EventuallyTrue(t, 10*time.Second, "alerts listed", func() bool {
		var err error
		open, err = a.m.List(context.Background(), Filter{Status: []string{StatusOpen}})
		return err == nil
	})
	if len(open) != 1 || open[0].Type != TypeFall {
		t.Errorf("open alerts %+v, want one fall", open)
	}
	onceEach(t, e, a.m, "fd-pg")
}

// TestRetireUnsubscribes: a replica stopped with UnsubscribeOnStop (the
// alerting role's --retire) drops its subscriptions before disconnecting,
// so the broker queues nothing for its sessions: a fall published while it
// is away is not delivered when the same client id comes back, while a fall
// published after that is. Without it (TestBIDMC32LowSpO2AndRestart and
// the restart tests), the sessions keep what arrives meanwhile.
func TestRetireUnsubscribes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.start(func(c *Config) { c.UnsubscribeOnStop = true })
	r.stop()
	e.fall("fd-away", 1)
	r2 := e.start(nil)
	e.fall("fd-after", 1)
	testenv.EventuallyTrue(t, 10*time.Second, "fall after the comeback alerted", func() bool {
		return len(alertsOf(t, r2.m, "fd-after", TypeFall)) == 1
	})
	if n := len(alertsOf(t, r2.m, "fd-away", TypeFall)); n != 0 {
		t.Errorf("%d alerts for the fall published while the retired replica was away, want 0 (its session was still subscribed)", n)
	}
}
