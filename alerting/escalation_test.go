package alerting

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/internal/sqldb/sqldbtest"
)

// fakeClock is an injected wall clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func testSettings(t *testing.T) Settings {
	t.Helper()
	b, err := os.ReadFile("testdata/settings.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s, err := ParseSettings(b)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// escManager opens a manager on dsn with a fake clock at start and the test
// settings imported.
func escManager(t *testing.T, dsn string, start time.Time) (*Manager, *fakeClock) {
	t.Helper()
	m := openTestManager(t, dsn)
	clk := &fakeClock{t: start}
	m.now = clk.Now
	if err := m.ImportSettings(context.Background(), "test", testSettings(t)); err != nil {
		t.Fatal(err)
	}
	return m, clk
}

// notices returns the notifications of alert id in the outbox, in order.
func notices(t *testing.T, m *Manager, id int64) []Notice {
	t.Helper()
	rows, err := m.db.QueryContext(context.Background(), m.db.Rebind(`SELECT payload FROM alert_outbox WHERE alert_id = ? ORDER BY seq`), id)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []Notice
	for rows.Next() {
		var body string
		if err := rows.Scan(&body); err != nil {
			t.Fatal(err)
		}
		var n Notice
		if err := json.Unmarshal([]byte(body), &n); err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
	}
	return out
}

func recipientIDs(e *Escalation) []string {
	if e == nil {
		return nil
	}
	var ids []string
	for _, c := range e.Recipients {
		ids = append(ids, c.ID)
	}
	return ids
}

func openAt(t *testing.T, m *Manager, resident, typ, severity string) Alert {
	t.Helper()
	a, created, err := m.open(context.Background(), openSpec{Key: dedupKey(&resident, "dev-"+resident, typ), Site: "demo", Resident: &resident,
		Device: "dev-" + resident, Type: typ, Severity: severity, At: m.now(), Detail: typ})
	if err != nil {
		t.Fatal(err)
	}
	if !created {
		t.Fatalf("alert %s/%s not created", resident, typ)
	}
	return a
}

func fire(t *testing.T, e *Escalator) int {
	t.Helper()
	n, err := e.Fire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestEscalationPolicy walks a warning alert opened at 03:00 Berlin (night
// shift; the family contact is in quiet hours) through every step and a
// reminder, then acknowledges it; a critical alert pages the family
// contact despite quiet hours.
func TestEscalationPolicy(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, dsn string) {
		t.Parallel()
		t0 := utc("2026-01-15T02:00:00Z") // 03:00 CET
		m, clk := escManager(t, dsn, t0)
		esc := NewEscalator(m, clk.Now, 0, nil)
		a := openAt(t, m, "res-1", TypeSpO2Low, SeverityHigh)

		steps := []struct {
			at    time.Duration
			fired int
		}{
			{0, 0}, {3*time.Minute - time.Millisecond, 0}, {3 * time.Minute, 1}, {3 * time.Minute, 0},
			{10 * time.Minute, 1}, {15*time.Minute - time.Millisecond, 0}, {15 * time.Minute, 1},
		}
		for _, s := range steps {
			clk.Set(t0.Add(s.at))
			if n := fire(t, esc); n != s.fired {
				t.Fatalf("at +%s: fired %d, want %d", s.at, n, s.fired)
			}
		}
		got := notices(t, m, a.ID)
		want := []struct {
			event, shift string
			step         int
			to, quiet    []string
		}{
			{EventOpened, "night", 0, []string{"ben"}, nil},
			{EventEscalated, "night", 1, []string{"lead"}, nil},
			{EventEscalated, "night", 2, []string{"mgr"}, []string{"fam"}},
			{EventReminder, "night", 2, []string{"ben", "lead", "mgr"}, []string{"fam"}},
		}
		if len(got) != len(want) {
			t.Fatalf("%d notifications, want %d: %+v", len(got), len(want), got)
		}
		for i, w := range want {
			n := got[i]
			if n.Event != w.event || n.Escalation == nil || n.Escalation.Step != w.step || n.Escalation.Shift != w.shift ||
				!slices.Equal(recipientIDs(n.Escalation), w.to) || !slices.Equal(n.Escalation.Quiet, w.quiet) {
				t.Errorf("notification %d: %s %+v, want %+v", i, n.Event, n.Escalation, w)
			}
		}
		if got[3].Escalation.Reminder != true {
			t.Error("reminder not marked")
		}
		st, _, err := m.Escalation(context.Background(), a.ID)
		if err != nil || st.Due == nil || !st.Due.Equal(t0.Add(20*time.Minute)) {
			t.Fatalf("escalation state %+v, %v: want next reminder at +20m", st, err)
		}

		// Acknowledge: nothing more fires, ever.
		clk.Set(t0.Add(16 * time.Minute))
		if _, err := m.Acknowledge(context.Background(), a.ID, "ana", "dashboard"); err != nil {
			t.Fatal(err)
		}
		for _, d := range []time.Duration{20 * time.Minute, 2 * time.Hour} {
			clk.Set(t0.Add(d))
			if n := fire(t, esc); n != 0 {
				t.Fatalf("fired %d after acknowledgement", n)
			}
		}
		if st, _, _ := m.Escalation(context.Background(), a.ID); st.Due != nil {
			t.Errorf("escalation still due at %s after acknowledgement", st.Due)
		}

		// Critical: quiet hours do not hold the family contact back.
		clk.Set(t0)
		c := openAt(t, m, "res-2", TypeFall, SeverityCritical)
		clk.Set(t0.Add(10 * time.Minute))
		if n := fire(t, esc); n != 2 {
			t.Fatalf("critical: fired %d steps at +10m, want 2 (steps 1 and 2, late)", n)
		}
		cn := notices(t, m, c.ID)
		if last := cn[len(cn)-1]; !slices.Equal(recipientIDs(last.Escalation), []string{"fam", "mgr"}) || len(last.Escalation.Quiet) != 0 {
			t.Errorf("critical step 2 pages %v (quiet %v), want fam and mgr", recipientIDs(last.Escalation), last.Escalation.Quiet)
		}
	})
}

// TestAckLastMillisecondBeforeStep: an acknowledgement 1 ms before step 1
// is due stops it; and acknowledgements racing the escalator at the due
// time never leave a step announced after the acknowledgement.
func TestAckLastMillisecondBeforeStep(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, dsn string) {
		t.Parallel()
		ctx := context.Background()
		t0 := utc("2026-01-15T10:00:00Z")
		m, clk := escManager(t, dsn, t0)
		esc := NewEscalator(m, clk.Now, 0, nil)
		a := openAt(t, m, "res-1", TypeSpO2Low, SeverityHigh)
		clk.Set(t0.Add(3*time.Minute - time.Millisecond))
		if n := fire(t, esc); n != 0 {
			t.Fatalf("step fired %d before its time", n)
		}
		if _, err := m.Acknowledge(ctx, a.ID, "ana", "dashboard"); err != nil {
			t.Fatal(err)
		}
		clk.Set(t0.Add(3 * time.Minute))
		if n := fire(t, esc); n != 0 {
			t.Fatalf("step fired %d after the acknowledgement 1 ms before it", n)
		}
		for _, n := range notices(t, m, a.ID) {
			if n.Event == EventEscalated || n.Event == EventReminder {
				t.Errorf("notification %s %s after acknowledgement", n.ID, n.Event)
			}
		}

		// The race: at the due time, acknowledge and fire concurrently.
		const N = 20
		clk.Set(t0)
		var ids []int64
		for i := range N {
			ids = append(ids, openAt(t, m, "race-"+string(rune('a'+i)), TypeSpO2Low, SeverityHigh).ID)
		}
		clk.Set(t0.Add(3 * time.Minute))
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			for _, id := range ids {
				if _, err := m.Acknowledge(ctx, id, "ana", "dashboard"); err != nil {
					t.Error(err)
				}
			}
		}()
		go func() {
			defer wg.Done()
			for range 5 {
				if _, err := esc.Fire(ctx); err != nil {
					t.Error(err)
				}
			}
		}()
		wg.Wait()
		fired := 0
		for _, id := range ids {
			seenAck := false
			for _, n := range notices(t, m, id) {
				switch n.Event {
				case EventAcknowledged:
					seenAck = true
				case EventEscalated:
					fired++
					if seenAck {
						t.Errorf("alert %d: step announced after the acknowledgement", id)
					}
				}
			}
		}
		if n := fire(t, esc); n != 0 {
			t.Errorf("fired %d after every alert was acknowledged", n)
		}
		t.Logf("race: %d of %d steps fired before their acknowledgement", fired, N)
	})
}

// TestEscalationRestart: the escalator and manager stop after step 1 and a
// new process on the same database fires step 2 once, at its time.
func TestEscalationRestart(t *testing.T) {
	t.Parallel()
	dsn := sqldbtest.SQLiteDSN(t)
	t0 := utc("2026-01-15T10:00:00Z") // 11:00 CET, day shift
	m1, clk1 := escManager(t, dsn, t0)
	a := openAt(t, m1, "res-1", TypeSpO2Low, SeverityHigh)
	clk1.Set(t0.Add(3 * time.Minute))
	if n := fire(t, NewEscalator(m1, clk1.Now, 0, nil)); n != 1 {
		t.Fatalf("step 1: fired %d", n)
	}
	m1.db.Close() // the process stops

	m2 := openTestManager(t, dsn)
	clk2 := &fakeClock{t: t0.Add(10*time.Minute - time.Millisecond)}
	m2.now = clk2.Now
	esc2 := NewEscalator(m2, clk2.Now, 0, nil)
	if n := fire(t, esc2); n != 0 {
		t.Fatalf("after restart, fired %d before step 2 is due", n)
	}
	clk2.Set(t0.Add(10 * time.Minute))
	if n := fire(t, esc2); n != 1 {
		t.Fatalf("after restart, step 2 fired %d times at its time", n)
	}
	if n := fire(t, esc2); n != 0 {
		t.Fatalf("step 2 fired again: %d", n)
	}
	var steps []int
	for _, n := range notices(t, m2, a.ID) {
		if n.Escalation != nil {
			steps = append(steps, n.Escalation.Step)
		}
	}
	if !slices.Equal(steps, []int{0, 1, 2}) {
		t.Errorf("steps announced %v, want [0 1 2] (none lost or repeated)", steps)
	}
	h, err := m2.History(context.Background(), a.ID)
	if err != nil {
		t.Fatal(err)
	}
	var esc int
	for _, e := range h {
		if e.Action == ActionEscalated {
			esc++
		}
	}
	if esc != 2 {
		t.Errorf("%d escalated history entries, want 2", esc)
	}
}

// TestFlapping: with 3 openings in 10 min a flapping episode, the third
// opening is one "repeating" notice, the fourth is not notified, and an
// opening after 10 quiet minutes notifies normally. A critical alert is
// never suppressed.
func TestFlapping(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t0 := utc("2026-01-15T10:00:00Z")
	m, clk := escManager(t, sqldbtest.SQLiteDSN(t), t0)
	cycle := func(at time.Duration, typ, sev string) (Alert, []Notice) {
		clk.Set(t0.Add(at))
		a := openAt(t, m, "res-1", typ, sev)
		clk.Set(t0.Add(at + 10*time.Second))
		if _, err := m.Resolve(ctx, a.ID, "system", "rule", OutcomeOther, "cleared"); err != nil {
			t.Fatal(err)
		}
		return a, notices(t, m, a.ID)
	}
	cases := []struct {
		at    time.Duration
		first string // first notification's event; "" = none at all
	}{
		{0, EventOpened},
		{1 * time.Minute, EventOpened},
		{2 * time.Minute, EventRepeating},
		{3 * time.Minute, ""},
		{4 * time.Minute, ""},
		{15 * time.Minute, EventOpened}, // 11 min after the last opening
	}
	for _, c := range cases {
		a, ns := cycle(c.at, TypeSpO2Low, SeverityHigh)
		var first string
		for _, n := range ns {
			if n.Event != EventResolved {
				first = n.Event
				break
			}
		}
		if first != c.first {
			t.Errorf("opening at +%s: first notification %q, want %q (%d notifications)", c.at, first, c.first, len(ns))
		}
		if c.first == "" {
			if len(ns) > 1 {
				t.Errorf("suppressed alert %d has %d notifications", a.ID, len(ns))
			}
			if st, ok, _ := m.Escalation(ctx, a.ID); ok {
				t.Errorf("suppressed alert escalates: %+v", st)
			}
		}
	}
	for i := range 5 {
		_, ns := cycle(20*time.Minute+time.Duration(i)*time.Minute, TypeFall, SeverityCritical)
		if len(ns) == 0 || ns[0].Event != EventOpened {
			t.Errorf("critical opening %d: %v, want opened", i, ns)
		}
	}
}

// TestLiveSettings: a policy change takes effect for the next step
// without a restart, also when another process makes it, and every change
// is audited.
func TestLiveSettings(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := sqldbtest.SQLiteDSN(t)
	t0 := utc("2026-01-15T10:00:00Z")
	m, clk := escManager(t, dsn, t0)
	esc := NewEscalator(m, clk.Now, 0, nil)
	a := openAt(t, m, "res-1", TypeSpO2Low, SeverityHigh)
	s, err := m.Settings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := s.policy("default")
	p.Steps[1].Targets = []string{"recipient:mgr"}
	if err := m.PutPolicy(ctx, "ops@example.org", p); err != nil {
		t.Fatal(err)
	}
	clk.Set(t0.Add(3 * time.Minute))
	fire(t, esc)
	ns := notices(t, m, a.ID)
	if got := recipientIDs(ns[len(ns)-1].Escalation); !slices.Equal(got, []string{"mgr"}) {
		t.Errorf("step 1 after the change pages %v, want [mgr]", got)
	}

	// Another process changes the roster; this one sees it within 2 s.
	other := openTestManager(t, dsn)
	r, _ := s.roster("demo", "")
	r.Shifts[0].OnDuty = []string{"ana", "ben"}
	if err := other.PutRoster(ctx, "nurse-lead@example.org", r); err != nil {
		t.Fatal(err)
	}
	// The 2 s pass on the cache's clock: m last checked its settings 2 s
	// earlier than it did (currentSettings rechecks on the wall clock).
	m.settings.mu.Lock()
	m.settings.checked = m.settings.checked.Add(-2 * time.Second)
	m.settings.mu.Unlock()
	cur, err := m.currentSettings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rr, _ := cur.roster("demo", ""); len(rr.Shifts[0].OnDuty) != 2 {
		t.Errorf("roster change in another process not seen 2 s later: on duty %v", rr.Shifts[0].OnDuty)
	}

	audit, err := m.SettingsAudit(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(audit) < 2 || audit[0].Kind != KindRoster || audit[0].Actor != "nurse-lead@example.org" || audit[0].Old == "" ||
		audit[1].Kind != KindPolicy || audit[1].ID != "default" || audit[1].Actor != "ops@example.org" {
		t.Fatalf("audit %+v", audit[:min(3, len(audit))])
	}
	// Re-importing the same settings changes (and audits) nothing but the
	// two settings that differ.
	before := len(audit)
	if err := m.ImportSettings(ctx, "import", testSettings(t)); err != nil {
		t.Fatal(err)
	}
	audit, _ = m.SettingsAudit(ctx, 1000)
	if len(audit) != before+2 {
		t.Errorf("re-import audited %d changes, want 2", len(audit)-before)
	}
	if err := m.DeleteSetting(ctx, "ops", KindPolicy, "default"); err != nil {
		t.Fatal(err)
	}
	audit, _ = m.SettingsAudit(ctx, 1)
	if audit[0].New != "" || audit[0].Old == "" {
		t.Errorf("delete audited as %+v", audit[0])
	}
	// With the policy gone, the pending step stops and pages nobody.
	clk.Set(t0.Add(10 * time.Minute))
	fire(t, esc)
	if ns2 := notices(t, m, a.ID); len(ns2) != len(ns) {
		t.Errorf("a deleted policy still paged: %d notifications, want %d", len(ns2), len(ns))
	}
}

func TestSettingsValidation(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"unknown field":     "recipients: [{id: a, colour: red}]",
		"bad zone":          "recipients: [{id: a, quiet: {start: '22:00', end: '07:00', zone: Mars/Base}}]",
		"bad clock":         "rosters: [{site: s, zone: UTC, shifts: [{name: d, start: '25:00', end: '07:00'}]}]",
		"unknown on duty":   "rosters: [{site: s, zone: UTC, shifts: [{name: d, start: '07:00', end: '19:00', on_duty: [ghost]}]}]",
		"bad target":        "policies: [{id: p, steps: [{after: 0s, targets: [everyone]}]}]",
		"decreasing delay":  "policies: [{id: p, steps: [{after: 5m, targets: [on_duty]}, {after: 1m, targets: [on_duty]}]}]",
		"bad duration":      "policies: [{id: p, steps: [{after: soon, targets: [on_duty]}]}]",
		"flapping of one":   "flapping: {transitions: 1, window: 5m}",
		"zone-less roster":  "rosters: [{site: s, shifts: [{name: d, start: '07:00', end: '19:00'}]}]",
		"duplicate id":      "recipients: [{id: a}, {id: a}]",
		"unknown recipient": "policies: [{id: p, steps: [{after: 0s, targets: ['recipient:ghost']}]}]",
	}
	for name, y := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseSettings([]byte(y)); err == nil {
				t.Errorf("no error for %s", y)
			}
		})
	}
	if _, err := ParseSettings([]byte("")); err != nil {
		t.Errorf("empty settings: %v", err)
	}
}

func FuzzParseSettings(f *testing.F) {
	b, err := os.ReadFile("testdata/settings.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(b))
	f.Add("policies: [{id: p, steps: [{after: 0s, targets: [on_duty]}]}]")
	f.Fuzz(func(t *testing.T, y string) {
		s, err := ParseSettings([]byte(y))
		if err != nil {
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("parsed settings do not validate: %v", err)
		}
		// Whatever parses can be used without panicking.
		a := Alert{Site: "demo", Type: TypeFall, Severity: SeverityHigh}
		for _, p := range s.Policies {
			for i := range len(p.Steps) + 1 {
				s.stepInfo(p, i, a, time.Unix(0, 0))
			}
		}
	})
}

// TestEventKeys: an event raised once is dropped when delivered again, by
// any manager on the database, until its key is older than the retention.
func TestEventKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := sqldbtest.SQLiteDSN(t)
	t0 := utc("2026-01-15T10:00:00Z")
	m, clk := escManager(t, dsn, t0)
	other := openTestManager(t, dsn)
	spec := openSpec{Key: "device:fd-1:fall", Site: "demo", Device: "fd-1", Type: TypeFall, Severity: SeverityCritical,
		At: t0, Detail: "fall", NotifyRepeat: true, EventKey: "fd-1 boot 1 seq 7"}
	if _, created, err := m.open(ctx, spec); err != nil || !created {
		t.Fatalf("first delivery: created %v, %v", created, err)
	}
	for _, mm := range []*Manager{m, other} {
		if _, _, err := mm.open(ctx, spec); err != errDuplicateEvent {
			t.Fatalf("redelivery: %v, want errDuplicateEvent", err)
		}
	}
	if err := m.pruneEventKeys(ctx, t0.Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.open(ctx, spec); err != errDuplicateEvent {
		t.Fatalf("a key younger than the cutoff was pruned: %v", err)
	}
	clk.Set(t0.Add(EventKeyRetention + time.Hour))
	if err := m.pruneEventKeys(ctx, clk.Now().Add(-EventKeyRetention)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.open(ctx, spec); err != nil {
		t.Fatalf("after the retention the key is forgotten: %v", err)
	}
	if ns := notices(t, m, 1); len(ns) != 2 || ns[1].Event != EventRepeated {
		t.Errorf("notifications %+v, want opened then repeated", ns)
	}
}
