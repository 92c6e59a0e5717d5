package alerting

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/internal/sqldb"
	"github.com/eldercare-iot/eldercare/internal/sqldb/sqldbtest"
)

func openTestManager(t *testing.T, dsn string) *Manager {
	t.Helper()
	ctx := context.Background()
	db, err := sqldb.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	m, err := OpenManager(ctx, db, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func strp(s string) *string { return &s }

func TestStore(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, dsn string) {
		t.Parallel()
		ctx := context.Background()
		m := openTestManager(t, dsn)
		// Migrations are idempotent: a second manager on the same database.
		m2 := openTestManager(t, dsn)

		fall := openSpec{Site: "demo", Resident: strp("res-001"), Device: "fd-1", Type: TypeFall, Severity: SeverityCritical,
			At: time.Now(), Detail: "fall detected"}
		fall.Key = dedupKey(fall.Resident, fall.Device, fall.Type)

		t.Run("open and repeat", func(t *testing.T) {
			a, created, err := m.open(ctx, fall)
			if err != nil || !created {
				t.Fatalf("open: created=%v err=%v", created, err)
			}
			if a.Status != StatusOpen || a.Resident == nil || *a.Resident != "res-001" || a.Unassigned {
				t.Fatalf("opened %+v", a)
			}
			b, created, err := m2.open(ctx, fall)
			if err != nil || created || b.ID != a.ID {
				t.Fatalf("second fall: id %d created=%v err=%v, want repeat of %d", b.ID, created, err, a.ID)
			}
			h, err := m.History(ctx, a.ID)
			if err != nil {
				t.Fatal(err)
			}
			if len(h) != 2 || h[0].Action != ActionOpened || h[1].Action != ActionRepeated || h[1].Actor != ActorSystem {
				t.Fatalf("history %+v", h)
			}
		})

		t.Run("acknowledge resolve and conflicts", func(t *testing.T) {
			open, err := m.List(ctx, Filter{Status: []string{StatusOpen}, Site: "demo"})
			if err != nil || len(open) != 1 {
				t.Fatalf("list open: %v %v", open, err)
			}
			id := open[0].ID
			a, err := m2.Acknowledge(ctx, id, "nurse-li", "dashboard")
			if err != nil || a.Status != StatusAcknowledged || a.AcknowledgedBy != "nurse-li" || a.AcknowledgedAt == nil {
				t.Fatalf("acknowledge: %+v %v", a, err)
			}
			if _, err := m.Acknowledge(ctx, id, "nurse-li", "dashboard"); !errors.Is(err, ErrConflict) {
				t.Fatalf("second acknowledge: %v, want ErrConflict", err)
			}
			// A fall while acknowledged is still a repeat.
			if _, created, err := m.open(ctx, fall); err != nil || created {
				t.Fatalf("fall while acknowledged: created=%v %v", created, err)
			}
			if _, err := m.Resolve(ctx, id, "nurse-li", "dashboard", "broken", ""); err == nil {
				t.Fatal("resolve with a bad outcome succeeded")
			}
			a, err = m.Resolve(ctx, id, "nurse-li", "api", OutcomeNoInjury, "found sitting, unhurt")
			if err != nil || a.Status != StatusResolved || a.Outcome != OutcomeNoInjury || a.ResolvedAt == nil {
				t.Fatalf("resolve: %+v %v", a, err)
			}
			if _, err := m.Resolve(ctx, id, "x", "api", OutcomeOther, ""); !errors.Is(err, ErrConflict) {
				t.Fatalf("resolve resolved: %v, want ErrConflict", err)
			}
			if _, err := m.Acknowledge(ctx, 99999, "x", "api"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("acknowledge missing: %v, want ErrNotFound", err)
			}
			if _, err := m.Get(ctx, 99999); !errors.Is(err, ErrNotFound) {
				t.Fatalf("get missing: %v, want ErrNotFound", err)
			}
			h, err := m.History(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			var actions []string
			for _, e := range h {
				actions = append(actions, e.Action+"/"+e.Channel)
			}
			want := []string{"opened/rule", "repeated/rule", "acknowledged/dashboard", "repeated/rule", "resolved/api"}
			if len(actions) != len(want) {
				t.Fatalf("history %v, want %v", actions, want)
			}
			for i := range want {
				if actions[i] != want[i] {
					t.Fatalf("history %v, want %v", actions, want)
				}
			}
			// Outbox: opened, acknowledged, resolved, numbered per alert.
			rows, err := m.db.QueryContext(ctx, m.db.Rebind(`SELECT id, event FROM alert_outbox WHERE alert_id = ? ORDER BY seq`), id)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			var got []string
			for rows.Next() {
				var nid, ev string
				rows.Scan(&nid, &ev)
				got = append(got, nid+":"+ev)
			}
			if len(got) != 3 || got[0] != "alert-1-1:opened" || got[1] != "alert-1-2:acknowledged" || got[2] != "alert-1-3:resolved" {
				t.Fatalf("outbox %v", got)
			}
			// After resolution the same key opens a new alert.
			b, created, err := m.open(ctx, fall)
			if err != nil || !created || b.ID == id {
				t.Fatalf("fall after resolve: %+v created=%v %v", b, created, err)
			}
		})

		t.Run("unassigned", func(t *testing.T) {
			s := openSpec{Site: "demo", Device: "fd-new", Type: TypeFall, Severity: SeverityCritical, At: time.Now(), Detail: "fall"}
			s.Key = dedupKey(nil, s.Device, s.Type)
			a, created, err := m.open(ctx, s)
			if err != nil || !created || a.Resident != nil || !a.Unassigned {
				t.Fatalf("unassigned: %+v created=%v %v", a, created, err)
			}
		})

		t.Run("concurrent opens of one key make one alert", func(t *testing.T) {
			s := openSpec{Site: "demo", Resident: strp("res-race"), Device: "vm-9", Type: TypeSpO2Low, Severity: SeverityHigh, At: time.Now(), Detail: "SpO2 85 % for 30 s"}
			s.Key = dedupKey(s.Resident, s.Device, s.Type)
			const n = 8
			var wg sync.WaitGroup
			ids := make([]int64, n)
			errs := make([]error, n)
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					mm := m
					if i%2 == 1 {
						mm = m2
					}
					a, _, err := mm.open(ctx, s)
					ids[i], errs[i] = a.ID, err
				}()
			}
			wg.Wait()
			for i := range n {
				if errs[i] != nil {
					t.Fatalf("open %d: %v", i, errs[i])
				}
				if ids[i] != ids[0] {
					t.Fatalf("ids %v: want one alert", ids)
				}
			}
			list, err := m.List(ctx, Filter{Resident: "res-race"})
			if err != nil || len(list) != 1 {
				t.Fatalf("alerts for res-race: %d %v", len(list), err)
			}
		})

		t.Run("unique index enforced by the database", func(t *testing.T) {
			_, err := m.db.ExecContext(ctx, m.db.Rebind(`INSERT INTO alerts (id, dedup_key, site_id, device_id, type, severity, status, opened_ms)
				VALUES (?, ?, 'demo', 'vm-9', 'spo2_low', 'high', 'open', 0)`), 1000, "resident:res-race:spo2_low")
			if err == nil {
				t.Fatal("a second open alert with the same dedup_key was accepted")
			}
		})
	})
}
