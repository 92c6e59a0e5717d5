package alerting

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pressly/goose/v3"

	"github.com/eldercare-iot/eldercare/internal/sqldb"
	"github.com/eldercare-iot/eldercare/internal/sqldb/sqldbtest"
)

// historyFixture opens alerts one minute apart from t0 (two at the same
// millisecond, to test the id tie-break) and returns their ids by name.
func historyFixture(t *testing.T, m *Manager, t0 time.Time) map[string]int64 {
	t.Helper()
	ctx := context.Background()
	clock := t0
	m.now = func() time.Time { return clock }
	ids := map[string]int64{}
	for i, x := range []struct {
		name, site, res, dev, typ, sev string
		sameMS                         bool
	}{
		{"fall-a1", "site-a", "res-1", "fd-1", TypeFall, SeverityCritical, false},
		{"spo2-a1", "site-a", "res-1", "vm-1", TypeSpO2Low, SeverityHigh, false},
		{"fall-a2", "site-a", "res-2", "fd-2", TypeFall, SeverityCritical, false},
		{"hr-a2", "site-a", "res-2", "vm-2", TypeHeartRate, SeverityWarning, true},
		{"off-a", "site-a", "", "gw-9", TypeDeviceOffline, SeverityWarning, false},
		{"fall-b1", "site-b", "res-9", "fd-9", TypeFall, SeverityCritical, false},
	} {
		if !x.sameMS {
			clock = t0.Add(time.Duration(i) * time.Minute)
		}
		s := openSpec{Site: x.site, Device: x.dev, Type: x.typ, Severity: x.sev, Detail: x.typ + " on " + x.dev}
		if x.res != "" {
			s.Resident = strp(x.res)
		}
		s.Key = dedupKey(s.Resident, s.Device, s.Type)
		a, created, err := m.open(ctx, s)
		if err != nil || !created {
			t.Fatalf("open %s: created=%v %v", x.name, created, err)
		}
		ids[x.name] = a.ID
	}
	clock = t0.Add(time.Hour)
	must := func(_ Alert, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(m.Acknowledge(ctx, ids["fall-a1"], "nurse-li", "dashboard"))
	must(m.Resolve(ctx, ids["fall-a1"], "nurse-li", "dashboard", OutcomeInjury, "Bruised left hip; GP called"))
	must(m.Acknowledge(ctx, ids["fall-a2"], "carer-wang", "api"))
	must(m.Resolve(ctx, ids["fall-a2"], "lead-zhao", "dashboard", OutcomeFalseAlarm, "dropped the pendant, 100% fine"))
	must(m.Resolve(ctx, ids["spo2-a1"], "carer-wang", "dashboard", OutcomeNoInjury, ""))
	must(m.Acknowledge(ctx, ids["fall-b1"], "nurse-li", "dashboard"))
	if _, err := m.AddComment(ctx, ids["hr-a2"], "carer-wang", "dashboard", "扶起后无外伤，已通知家属"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.AddComment(ctx, ids["off-a"], "nurse-li", "api:nursecall", "Gateway power cable loose in the WARDROBE"); err != nil {
		t.Fatal(err)
	}
	return ids
}

func TestQueryHistory(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, dsn string) {
		t.Parallel()
		ctx := context.Background()
		m := openTestManager(t, dsn)
		t0 := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
		ids := historyFixture(t, m, t0)
		name := map[int64]string{}
		for k, v := range ids {
			name[v] = k
		}
		query := func(t *testing.T, q HistoryQuery) []string {
			t.Helper()
			p, err := m.QueryHistory(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			out := []string{}
			for _, a := range p.Alerts {
				out = append(out, name[a.ID])
			}
			return out
		}
		newestFirst := []string{"fall-b1", "off-a", "hr-a2", "fall-a2", "spo2-a1", "fall-a1"}
		for _, c := range []struct {
			name string
			q    HistoryQuery
			want []string
		}{
			{"everything, newest first, same ms by id", HistoryQuery{}, newestFirst},
			{"site", HistoryQuery{Site: "site-b"}, []string{"fall-b1"}},
			{"scope: the user's sites", HistoryQuery{Sites: []string{"site-b"}}, []string{"fall-b1"}},
			{"scope: no site", HistoryQuery{Sites: []string{}}, []string{}},
			{"resident", HistoryQuery{Resident: "res-2"}, []string{"hr-a2", "fall-a2"}},
			{"ward: residents and unassigned devices", HistoryQuery{Place: &HistoryPlace{Residents: []string{"res-1"}, Devices: []string{"gw-9", "fd-2"}}},
				[]string{"off-a", "spo2-a1", "fall-a1"}},
			{"empty ward", HistoryQuery{Place: &HistoryPlace{}}, []string{}},
			{"type", HistoryQuery{Types: []string{TypeFall}}, []string{"fall-b1", "fall-a2", "fall-a1"}},
			{"type and outcome", HistoryQuery{Types: []string{TypeFall}, Outcomes: []string{OutcomeFalseAlarm}}, []string{"fall-a2"}},
			{"severity", HistoryQuery{Severities: []string{SeverityWarning}}, []string{"off-a", "hr-a2"}},
			{"status: unresolved", HistoryQuery{Statuses: []string{StatusOpen, StatusAcknowledged}}, []string{"fall-b1", "off-a", "hr-a2"}},
			{"responder acknowledged or resolved", HistoryQuery{Responder: "carer-wang"}, []string{"fall-a2", "spo2-a1"}},
			{"responder and site", HistoryQuery{Responder: "nurse-li", Site: "site-a"}, []string{"fall-a1"}},
			{"date range [from, to)", HistoryQuery{From: t0.Add(time.Minute), To: t0.Add(3 * time.Minute)}, []string{"hr-a2", "fall-a2", "spo2-a1"}},
			{"text in note, any case", HistoryQuery{Text: "GP CALLED"}, []string{"fall-a1"}},
			{"text in a comment", HistoryQuery{Text: "wardrobe"}, []string{"off-a"}},
			{"Chinese text in a comment", HistoryQuery{Text: "无外伤"}, []string{"hr-a2"}},
			{"text in the detail", HistoryQuery{Text: "vm-1"}, []string{"spo2-a1"}},
			{"% is a literal", HistoryQuery{Text: "100%"}, []string{"fall-a2"}},
			{"_ is a literal", HistoryQuery{Text: "_low"}, []string{"spo2-a1"}},
			{"% alone matches no alert without one", HistoryQuery{Text: "%", Site: "site-b"}, []string{}},
			{"text or resident names", HistoryQuery{Text: "Wang", TextResidents: []string{"res-9"}}, []string{"fall-b1"}},
			{"no match", HistoryQuery{Text: "nothing like this"}, []string{}},
		} {
			t.Run(c.name, func(t *testing.T) {
				if got := query(t, c.q); !slices.Equal(got, c.want) {
					t.Errorf("got %v, want %v", got, c.want)
				}
			})
		}

		t.Run("paging is stable while alerts arrive", func(t *testing.T) {
			var got []string
			q := HistoryQuery{Limit: 4}
			p, err := m.QueryHistory(ctx, q)
			if err != nil || p.Next == nil || len(p.Alerts) != 4 {
				t.Fatalf("page 1: %d alerts next=%v %v", len(p.Alerts), p.Next, err)
			}
			for _, a := range p.Alerts {
				got = append(got, name[a.ID])
			}
			// A new alert arrives between two pages: it is on no later page.
			m.now = func() time.Time { return t0.Add(2 * time.Hour) }
			s := openSpec{Site: "site-a", Resident: strp("res-3"), Device: "fd-3", Type: TypeFall, Severity: SeverityCritical}
			s.Key = dedupKey(s.Resident, s.Device, s.Type)
			if _, _, err := m.open(ctx, s); err != nil {
				t.Fatal(err)
			}
			c, err := ParseCursor(p.Next.String())
			if err != nil || c != *p.Next {
				t.Fatalf("cursor round trip %v: %v %v", p.Next, c, err)
			}
			q.Before = &c
			p, err = m.QueryHistory(ctx, q)
			if err != nil || p.Next != nil || len(p.Alerts) != 2 {
				t.Fatalf("page 2: %d alerts next=%v %v", len(p.Alerts), p.Next, err)
			}
			for _, a := range p.Alerts {
				got = append(got, name[a.ID])
			}
			if !slices.Equal(got, newestFirst) {
				t.Errorf("pages %v, want %v", got, newestFirst)
			}
		})

		t.Run("responders", func(t *testing.T) {
			for _, c := range []struct {
				sites []string
				want  []string
			}{{nil, []string{"carer-wang", "lead-zhao", "nurse-li"}}, {[]string{"site-b"}, []string{"nurse-li"}}, {[]string{}, []string{}}} {
				got, err := m.Responders(ctx, c.sites)
				if err != nil || !slices.Equal(got, c.want) {
					t.Errorf("responders of %v: %v %v, want %v", c.sites, got, err, c.want)
				}
			}
		})

		t.Run("limits and cursors", func(t *testing.T) {
			for _, l := range []int{-1, MaxHistoryLimit + 1} {
				if _, err := m.QueryHistory(ctx, HistoryQuery{Limit: l}); err == nil {
					t.Errorf("limit %d accepted", l)
				}
			}
			for _, s := range []string{"", "12", "a-1", "1-0", "-1-2", "1-x"} {
				if _, err := ParseCursor(s); err == nil {
					t.Errorf("cursor %q accepted", s)
				}
			}
		})

		t.Run("comments", func(t *testing.T) {
			id := ids["fall-a1"] // resolved: still takes comments
			c, err := m.AddComment(ctx, id, "lead-zhao", "dashboard", "  Family informed at 10:05.\r\nReviewed with GP.  ")
			if err != nil {
				t.Fatal(err)
			}
			if c.Text != "Family informed at 10:05.\nReviewed with GP." || c.Author != "lead-zhao" || c.ID == 0 || c.AlertID != id {
				t.Errorf("comment %+v", c)
			}
			for _, bad := range []struct{ text, reason string }{
				{"", CommentEmpty}, {" \n\t ", CommentEmpty},
				{strings.Repeat("长", MaxCommentLen+1), CommentTooLong},
				{"bell\x07", CommentControl}, {"nul\x00byte", CommentControl}, {"esc\x1b[31m", CommentControl},
				{"rtl \u202e override", CommentControl}, {"c1 \u0085 next line", CommentControl},
				{"bad \xff utf8", CommentUTF8},
			} {
				_, err := m.AddComment(ctx, id, "lead-zhao", "dashboard", bad.text)
				var ce *CommentError
				if !errors.Is(err, ErrInvalidComment) || !errors.As(err, &ce) || ce.Reason != bad.reason {
					t.Errorf("comment %q: %v, want %s", truncateText(bad.text, 20), err, bad.reason)
				}
			}
			if _, err := m.AddComment(ctx, id, "lead-zhao", "dashboard", strings.Repeat("长", MaxCommentLen)); err != nil {
				t.Errorf("comment of %d characters: %v", MaxCommentLen, err)
			}
			if _, err := m.AddComment(ctx, 999999, "lead-zhao", "dashboard", "x"); !errors.Is(err, ErrNotFound) {
				t.Errorf("comment on a missing alert: %v", err)
			}
			if _, err := m.AddComment(ctx, id, "", "dashboard", "x"); err == nil {
				t.Error("comment without author accepted")
			}
			cs, err := m.Comments(ctx, id)
			if err != nil || len(cs) != 2 || cs[0].ID != c.ID || cs[1].Text != strings.Repeat("长", MaxCommentLen) {
				t.Errorf("comments %d %v", len(cs), err)
			}
			if got := query(t, HistoryQuery{Text: "reviewed with gp"}); !slices.Equal(got, []string{"fall-a1"}) {
				t.Errorf("search of the new comment: %v", got)
			}
		})

		t.Run("timeline", func(t *testing.T) {
			id := ids["fall-a1"]
			tl, err := m.Timeline(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			var actions []string
			for _, h := range tl.History {
				actions = append(actions, h.Action)
			}
			if !slices.Equal(actions, []string{ActionOpened, ActionAcknowledged, ActionResolved}) {
				t.Errorf("history actions %v", actions)
			}
			var events []string
			for _, n := range tl.Notifications {
				events = append(events, n.Event)
				if n.Deliveries == nil {
					t.Errorf("notification %s: nil deliveries", n.ID)
				}
			}
			if !slices.Equal(events, []string{EventOpened, EventAcknowledged, EventResolved}) {
				t.Errorf("notifications %v", events)
			}
			if len(tl.Comments) != 2 || tl.Alert.Outcome != OutcomeInjury || tl.Escalation != nil {
				t.Errorf("timeline comments %d outcome %q escalation %v", len(tl.Comments), tl.Alert.Outcome, tl.Escalation)
			}
			// A delivery recorded by a receiver shows under its notification.
			nid := tl.Notifications[0].ID
			if _, err := m.db.ExecContext(ctx, m.db.Rebind(`INSERT INTO alert_deliveries (notification_id, receiver, status, attempts, last_error, updated_ms)
				VALUES (?, 'webhook', 'failed', 5, 'HTTP 503', ?)`), nid, t0.UnixMilli()); err != nil {
				t.Fatal(err)
			}
			tl, err = m.Timeline(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if ds := tl.Notifications[0].Deliveries; len(ds) != 1 || ds[0].Receiver != "webhook" || ds[0].Status != "failed" || ds[0].LastError != "HTTP 503" {
				t.Errorf("deliveries %+v", ds)
			}
			if _, err := m.Timeline(ctx, 999999); !errors.Is(err, ErrNotFound) {
				t.Errorf("timeline of a missing alert: %v", err)
			}
		})
	})
}

// BenchmarkQueryHistory measures one filtered page over 2000 alerts on
// SQLite.
func BenchmarkQueryHistory(b *testing.B) {
	ctx := context.Background()
	db, err := sqldb.Open(ctx, "sqlite:"+filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	m, err := OpenManager(ctx, db, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for i := range 2000 {
		m.now = func() time.Time { return t0.Add(time.Duration(i) * time.Minute) }
		s := openSpec{Site: "site-a", Resident: strp(fmt.Sprintf("res-%d", i%50)), Device: "fd", Type: TypeFall, Severity: SeverityCritical, Detail: "fall"}
		s.Key = dedupKey(s.Resident, s.Device, s.Type) + fmt.Sprint(i)
		if _, _, err := m.open(ctx, s); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := m.QueryHistory(ctx, HistoryQuery{Sites: []string{"site-a"}, Types: []string{TypeFall}, Text: "pendant", Limit: 50}); err != nil {
			b.Fatal(err)
		}
	}
}

// TestCommentsMigrationDown: migration 00050 goes down (table, counter and
// index gone) and up again on both dialects.
func TestCommentsMigrationDown(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, dsn string) {
		t.Parallel()
		ctx := context.Background()
		m := openTestManager(t, dsn)
		dialect := goose.DialectSQLite3
		if m.db.Dialect == sqldb.Postgres {
			dialect = goose.DialectPostgres
		}
		sub, err := fs.Sub(migrationFiles, "migrations")
		if err != nil {
			t.Fatal(err)
		}
		p, err := goose.NewProvider(dialect, m.db.DB, sub, goose.WithTableName(VersionTable), goose.WithDisableGlobalRegistry(true))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.DownTo(ctx, 49); err != nil {
			t.Fatalf("down to 49: %v", err)
		}
		if _, err := m.db.ExecContext(ctx, `SELECT 1 FROM alert_comments`); err == nil {
			t.Error("alert_comments still exists after down")
		}
		var n int
		if err := m.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM alerting_counters WHERE name = 'comment'`).Scan(&n); err != nil || n != 0 {
			t.Errorf("comment counter after down: %d %v", n, err)
		}
		if _, err := p.Up(ctx); err != nil {
			t.Fatalf("up again: %v", err)
		}
		if err := m.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM alert_comments`).Scan(&n); err != nil || n != 0 {
			t.Errorf("alert_comments after up: %d %v", n, err)
		}
	})
}
