package alerting

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/internal/sqldb/sqldbtest"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// unroutedSettings: the policy's only step names the nurse leads, but the
// one nurse lead works at another site, so at site demo the step reaches
// nobody. The manager of demo and the fallback station are who an
// operations alert pages.
func unroutedSettings() Settings {
	return Settings{
		Recipients: []Recipient{
			{ID: "lead", Name: "Lead elsewhere", Role: "nurse_lead", Sites: []string{"other"}, Email: "lead@example.org"},
			{ID: "boss", Name: "Manager of demo", Role: "manager", Sites: []string{"demo"}, Email: "boss@example.org", Lang: "zh-CN"},
			{ID: "boss2", Name: "Manager of other", Role: "manager", Sites: []string{"other"}, Email: "boss2@example.org"},
			{ID: "station", Name: "Station display", Role: "station", InApp: true},
		},
		Fallbacks: []Fallback{{Site: "demo", Recipients: []string{"station"}}},
		Policies:  []Policy{{ID: "sos", Types: []string{TypeSOS}, Steps: []Step{{Targets: []string{"role:nurse_lead"}}}}},
	}
}

// End to end through a real broker: an SOS whose first escalation step
// reaches nobody pages the fallback station AND opens one
// escalation_unrouted operations alert (high, site-level) that pages the
// site's manager and the fallback; a second unrouted SOS of another
// resident repeats that alert without a new notification (no storm), and
// eldercare_alerting_unrouted_steps_total counts both steps.
func TestUnroutedStepRaisesOperationsAlert(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.binding["sos-1"] = "res-001"
	e.binding["sos-2"] = "res-002"
	r := e.start(nil)
	if err := r.m.RegisterMetrics(r.reg); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := r.m.ImportSettings(ctx, "test", unroutedSettings()); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixMilli()
	e.publish("sos-1", device.ChanEvent, device.Event{V: 1, Device: "sos-1", Boot: 1, ID: 1, Seq: 1, TS: now, Type: device.EventSOS})
	var ops []Alert
	testenv.EventuallyTrue(t, 10*time.Second, "unrouted operations alert", func() bool {
		ops = openAlerts(t, r.m, TypeEscalationUnrouted)
		return len(ops) == 1
	})
	op := ops[0]
	if op.Severity != SeverityHigh || op.Site != "demo" || op.Resident != nil || op.Device != "escalation:sos:0" {
		t.Fatalf("operations alert %+v", op)
	}
	sos := openAlerts(t, r.m, TypeSOS)
	if len(sos) != 1 {
		t.Fatalf("sos alerts %+v", sos)
	}
	ns := notices(t, r.m, sos[0].ID)
	if len(ns) == 0 || ns[0].Escalation == nil || !ns[0].Escalation.Fallback || !slices.Equal(ids(ns[0].Escalation.Recipients), []string{"station"}) {
		t.Fatalf("sos notice %+v: want the fallback station paged", ns)
	}
	on := notices(t, r.m, op.ID)
	if len(on) != 1 || on[0].Event != EventOpened || on[0].Escalation == nil || !slices.Equal(ids(on[0].Escalation.Recipients), []string{"boss", "station"}) {
		t.Fatalf("operations notices %+v: want one opening that pages boss and station", on)
	}
	if !strings.Contains(op.Detail, "step 0 reached nobody") || !strings.Contains(op.Detail, "alert "+itoa(sos[0].ID)) {
		t.Fatalf("operations detail %q", op.Detail)
	}

	e.publish("sos-2", device.ChanEvent, device.Event{V: 1, Device: "sos-2", Boot: 1, ID: 1, Seq: 1, TS: now, Type: device.EventSOS})
	testenv.EventuallyTrue(t, 10*time.Second, "second sos", func() bool { return len(openAlerts(t, r.m, TypeSOS)) == 2 })
	testenv.EventuallyTrue(t, 10*time.Second, "repeat on the operations alert", func() bool {
		a, err := r.m.Get(ctx, op.ID)
		return err == nil && a.Repeats == 1
	})
	if got := openAlerts(t, r.m, TypeEscalationUnrouted); len(got) != 1 {
		t.Fatalf("operations alerts %+v: want still one", got)
	}
	if on := notices(t, r.m, op.ID); len(on) != 1 {
		t.Fatalf("operations notices %d after a repeat, want 1 (deduplicated)", len(on))
	}
	// Counted once the step's transaction has committed (just after the
	// repeat is readable).
	testenv.Eventually(t, 10*time.Second, func() string {
		if n := counterSum(r.reg, "eldercare_alerting_unrouted_steps_total"); n != 2 {
			return fmt.Sprintf("unrouted steps counted %g, want 2", n)
		}
		return ""
	})
	// The rendered notification names the step, in the manager's language.
	msg := (&Renderer{}).message(on[0], "zh-CN")
	if !strings.Contains(msg.Subject, "升级无人接收") || !strings.Contains(msg.Subject, "escalation:sos:0") {
		t.Fatalf("zh-CN subject %q", msg.Subject)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// On SQLite and PostgreSQL: two alerts whose first step reaches nobody
// open one escalation_unrouted alert of that policy and step (its second
// occurrence is a repeat), and a later step that reaches nobody, fired
// by the escalator, opens its own.
func TestUnroutedDeduplicatedPerStep(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, dsn string) {
		t.Parallel()
		ctx := context.Background()
		start := time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)
		now := start
		m := openTestManager(t, dsn)
		m.now = func() time.Time { return now }
		s := unroutedSettings()
		s.Policies = []Policy{{ID: "fall", Types: []string{TypeFall}, Steps: []Step{{Targets: []string{"role:nurse_lead"}},
			{After: Duration(time.Minute), Targets: []string{"role:nurse_lead"}}}}}
		if err := m.ImportSettings(ctx, "test", s); err != nil {
			t.Fatal(err)
		}
		a1 := openAt(t, m, "res-001", TypeFall, SeverityCritical)
		openAt(t, m, "res-002", TypeFall, SeverityCritical)
		ops := openAlerts(t, m, TypeEscalationUnrouted)
		if len(ops) != 1 || ops[0].Device != "escalation:fall:0" || ops[0].Repeats != 1 || ops[0].Site != "demo" {
			t.Fatalf("operations alerts %+v: want one for step 0 with one repeat", ops)
		}
		now = start.Add(2 * time.Minute)
		if _, err := NewEscalator(m, func() time.Time { return now }, time.Second, nil).Fire(ctx); err != nil {
			t.Fatal(err)
		}
		ops = openAlerts(t, m, TypeEscalationUnrouted)
		if len(ops) != 2 || !slices.ContainsFunc(ops, func(a Alert) bool { return a.Device == "escalation:fall:1" && a.Repeats == 1 }) {
			t.Fatalf("operations alerts after step 1 of both falls: %+v", ops)
		}
		h, err := m.History(ctx, a1.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(h, func(e HistoryEntry) bool { return strings.Contains(e.Detail, "raised an escalation_unrouted alert") }) {
			t.Fatalf("fall history %+v names no operations alert", h)
		}
	})
}

// On SQLite and PostgreSQL: a transaction that reached raiseUnrouted but
// then rolled back (a later statement failed; durably retries the whole
// decision) counts nothing and leaves no operations alert; the retry that
// commits counts the step once. Before the fix the counter was bumped
// inside the transaction, so every failed attempt of a store that was
// failing counted the step again.
func TestUnroutedCountedOnceCommitted(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, dsn string) {
		t.Parallel()
		ctx := context.Background()
		m := openTestManager(t, dsn)
		reg := prometheus.NewRegistry()
		if err := m.RegisterMetrics(reg); err != nil {
			t.Fatal(err)
		}
		s := unroutedSettings()
		if err := m.ImportSettings(ctx, "test", s); err != nil {
			t.Fatal(err)
		}
		now := time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)
		a := Alert{ID: 99, Site: "demo", Type: TypeSOS, Severity: SeverityCritical}
		info := &Escalation{Policy: "sos", Step: 0, Fallback: true}
		failed := errors.New("a later statement of the decision failed")
		for range 3 {
			err := m.tx(ctx, func(tx *sql.Tx) error {
				if _, err := m.raiseUnrouted(ctx, tx, s, a, info, now); err != nil {
					return err
				}
				return failed
			})
			if !errors.Is(err, failed) {
				t.Fatalf("tx: %v", err)
			}
		}
		if n := counterSum(reg, "eldercare_alerting_unrouted_steps_total"); n != 0 {
			t.Fatalf("unrouted steps counted %g after three rolled-back attempts, want 0", n)
		}
		if ops := openAlerts(t, m, TypeEscalationUnrouted); len(ops) != 0 {
			t.Fatalf("operations alerts after rolled-back attempts: %+v", ops)
		}
		if err := m.tx(ctx, func(tx *sql.Tx) error {
			_, err := m.raiseUnrouted(ctx, tx, s, a, info, now)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if n := counterSum(reg, "eldercare_alerting_unrouted_steps_total"); n != 1 {
			t.Fatalf("unrouted steps counted %g after the committed attempt, want 1", n)
		}
		if ops := openAlerts(t, m, TypeEscalationUnrouted); len(ops) != 1 {
			t.Fatalf("operations alerts after the committed attempt: %+v, want 1", ops)
		}
	})
}

// On SQLite and PostgreSQL: a site with nobody at all (no nurse lead, no
// manager, no fallback). The unrouted step still opens its operations
// alert, whose timeline says it reaches nobody either; a second unrouted
// alert is a repeat, not a new operations alert, and no operations alert
// is raised about the operations alert (no loop, no storm).
func TestUnroutedOperationsAlertReachesNobody(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, dsn string) {
		t.Parallel()
		m := openTestManager(t, dsn)
		s := unroutedSettings()
		s.Recipients = s.Recipients[:1] // only the lead of another site
		s.Fallbacks = nil
		if err := m.ImportSettings(context.Background(), "test", s); err != nil {
			t.Fatal(err)
		}
		openAt(t, m, "res-001", TypeSOS, SeverityCritical)
		openAt(t, m, "res-002", TypeSOS, SeverityCritical)
		ops := openAlerts(t, m, TypeEscalationUnrouted)
		if len(ops) != 1 || ops[0].Repeats != 1 {
			t.Fatalf("operations alerts %+v: want one, repeated once", ops)
		}
		if h := historyText(t, m, ops[0].ID); !strings.Contains(h, "reaches nobody either") {
			t.Fatalf("operations alert history does not say it reaches nobody:\n%s", h)
		}
		if n := len(allAlerts(t, m)); n != 3 {
			t.Fatalf("%d alerts, want the two SOS and one operations alert", n)
		}
	})
}
