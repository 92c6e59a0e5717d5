package alerting

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/internal/sqldb/sqldbtest"
)

// TestResponseTargetByShift opens 10 alerts in Asia/Shanghai across
// midnight with known first-response delays and checks, on SQLite and
// PostgreSQL, the share answered within 2 minutes per shift (day 07-15,
// evening 15-23, night 23-07), the percentiles, and that a resolution by
// the system is no response while a person's resolution without an
// acknowledgement is one.
func TestResponseTargetByShift(t *testing.T) {
	t.Parallel()
	sh, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		t.Fatal(err)
	}
	local := func(s string) time.Time {
		v, err := time.ParseInLocation("2006-01-02 15:04:05", s, sh)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	type spec struct {
		opened string
		delay  time.Duration // 0 = never answered by a person
		how    string        // ack, resolve (a person, no ack), system (resolved by a rule)
	}
	specs := []spec{
		{"2026-03-01 22:50:00", 60 * time.Second, "ack"},  // evening, within
		{"2026-03-01 22:52:00", 150 * time.Second, "ack"}, // evening, late
		{"2026-03-01 22:55:00", 90 * time.Second, "ack"},  // evening, within
		{"2026-03-01 23:30:00", 30 * time.Second, "ack"},  // night, within
		{"2026-03-01 23:59:00", 120 * time.Second, "ack"}, // night, exactly the target: within (answered after midnight)
		{"2026-03-02 00:10:00", 121 * time.Second, "ack"}, // night after midnight, late
		{"2026-03-02 01:00:00", 0, ""},                    // night, never answered
		{"2026-03-02 06:50:00", 45 * time.Second, "resolve"},
		{"2026-03-02 07:00:00", 10 * time.Second, "ack"},    // day starts at 07:00, within
		{"2026-03-02 07:30:00", 20 * time.Second, "system"}, // day, cleared by a rule: not a response
	}
	sqldbtest.Dialects(t, func(t *testing.T, dsn string) {
		t.Parallel()
		ctx := context.Background()
		m, clk := escManager(t, dsn, local(specs[0].opened))
		for i, s := range specs {
			clk.Set(local(s.opened))
			a := openAt(t, m, fmt.Sprintf("res-%d", i), TypeSpO2Low, SeverityHigh)
			if s.delay == 0 {
				continue
			}
			clk.Set(local(s.opened).Add(s.delay))
			var err error
			switch s.how {
			case "ack":
				_, err = m.Acknowledge(ctx, a.ID, "ana", "dashboard")
			case "resolve":
				_, err = m.Resolve(ctx, a.ID, "ben", "api", OutcomeNoInjury, "")
			case "system":
				_, err = m.Resolve(ctx, a.ID, ActorSystem, ChannelRule, OutcomeOther, "")
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		rs, err := m.AlertResponses(ctx, local("2026-03-01 00:00:00"), local("2026-03-03 00:00:00"))
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) != 10 {
			t.Fatalf("%d alerts, want 10", len(rs))
		}
		if r := rs[7]; r.Responder != "ben" || r.Channel != "api" || r.Action != ActionResolved {
			t.Errorf("resolved without ack: responder %q channel %q action %q, want ben api resolved", r.Responder, r.Channel, r.Action)
		}
		if _, ok := rs[9].ResponseTime(); ok {
			t.Error("a resolution by the system counted as a response")
		}
		if r := rs[0]; r.Responder != "ana" || r.Channel != "dashboard" || r.Action != ActionAcknowledged {
			t.Errorf("first alert: responder %q channel %q action %q", r.Responder, r.Channel, r.Action)
		}
		bounds := DefaultShiftBounds
		stats := SummariseResponses(rs, DefaultResponseTarget, func(a AlertResponse) string {
			s, _ := bounds.Shift(a.Opened, sh)
			return s
		})
		d := func(s string) string { return s }
		want := map[string]struct {
			alerts, responded, within int
			share                     float64
			p50, p90                  string
		}{
			"day":     {2, 1, 1, 0.5, d("10s"), d("10s")},
			"evening": {3, 3, 2, 2.0 / 3, d("1m30s"), d("2m30s")},
			"night":   {5, 4, 3, 0.6, d("45s"), d("2m1s")},
		}
		if len(stats) != 3 {
			t.Fatalf("%d shift groups, want 3: %+v", len(stats), stats)
		}
		for _, st := range stats {
			w, ok := want[st.Key]
			if !ok {
				t.Errorf("unexpected shift %q", st.Key)
				continue
			}
			if st.Alerts != w.alerts || st.Responded != w.responded || st.Within != w.within || math.Abs(st.Share-w.share) > 1e-9 {
				t.Errorf("%s: alerts %d responded %d within %d share %.4f, want %d %d %d %.4f", st.Key, st.Alerts, st.Responded, st.Within, st.Share, w.alerts, w.responded, w.within, w.share)
			}
			if st.P50 == nil || st.P50.String() != w.p50 || st.P90 == nil || st.P90.String() != w.p90 {
				t.Errorf("%s: p50 %v p90 %v, want %s %s", st.Key, st.P50, st.P90, w.p50, w.p90)
			}
			if st.Met {
				t.Errorf("%s: met the 90 %% target with share %.2f", st.Key, st.Share)
			}
		}
		all := SummariseResponses(rs, ResponseTarget{Within: 2 * time.Minute, Share: 0.6}, func(AlertResponse) string { return "all" })
		if len(all) != 1 || all[0].Within != 6 || all[0].Alerts != 10 || !all[0].Met {
			t.Errorf("all at 60 %%: %+v, want 6 of 10 within, met", all)
		}
		if n, s := bounds.Shift(local("2026-03-02 00:10:00"), sh); n != ShiftNight || s != "2026-03-01" {
			t.Errorf("00:10 is shift %s started %s, want night started 2026-03-01", n, s)
		}
	})
}

func TestShiftBoundsValidate(t *testing.T) {
	t.Parallel()
	for _, b := range []ShiftBounds{{Day: 420, Evening: 420, Night: 1380}, {Day: -1, Evening: 900, Night: 1380}, {Day: 420, Evening: 900, Night: 1440}} {
		if b.Validate() == nil {
			t.Errorf("%+v accepted", b)
		}
	}
	if err := DefaultShiftBounds.Validate(); err != nil {
		t.Error(err)
	}
	for _, tg := range []ResponseTarget{{Within: 0, Share: 0.9}, {Within: time.Minute, Share: 0}, {Within: time.Minute, Share: 1.5}} {
		if tg.Validate() == nil {
			t.Errorf("%+v accepted", tg)
		}
	}
}

// TestOfflineAndVisited checks offline time in a period (an alert before
// the period, one inside, one still open) and the residents visited.
func TestOfflineAndVisited(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, dsn string) {
		t.Parallel()
		ctx := context.Background()
		from := utc("2026-03-01T00:00:00Z")
		to := utc("2026-04-01T00:00:00Z")
		m, clk := escManager(t, dsn, from.Add(-2*time.Hour))
		openDev := func(dev string) Alert {
			a, _, err := m.open(ctx, openSpec{Key: dedupKey(nil, dev, TypeDeviceOffline), Site: "demo", Device: dev, Type: TypeDeviceOffline,
				Severity: SeverityWarning, At: m.now(), Detail: "offline"})
			if err != nil {
				t.Fatal(err)
			}
			return a
		}
		a := openDev("fd-1") // 2 h before the period, resolved 1 h into it
		clk.Set(from.Add(time.Hour))
		if _, err := m.Resolve(ctx, a.ID, ActorSystem, ChannelRule, OutcomeOther, ""); err != nil {
			t.Fatal(err)
		}
		clk.Set(from.Add(48 * time.Hour))
		b := openDev("fd-1") // 30 min
		clk.Set(from.Add(48*time.Hour + 30*time.Minute))
		if _, err := m.Resolve(ctx, b.ID, ActorSystem, ChannelRule, OutcomeOther, ""); err != nil {
			t.Fatal(err)
		}
		clk.Set(from.Add(72 * time.Hour))
		openDev("bs-2") // still open: counts until now
		now := from.Add(75 * time.Hour)
		off, err := m.OfflinePeriods(ctx, from, to, now)
		if err != nil {
			t.Fatal(err)
		}
		if off["fd-1"] != 90*time.Minute || off["bs-2"] != 3*time.Hour || len(off) != 2 {
			t.Errorf("offline %v, want fd-1 1h30m, bs-2 3h", off)
		}
		for _, v := range []Visit{{Resident: "r1", Site: "demo", At: from.Add(time.Hour), Device: "gw"}, {Resident: "r1", Site: "demo", At: from.Add(5 * time.Hour), Device: "gw"},
			{Resident: "r2", Site: "demo", At: from.Add(-time.Hour), Device: "gw"}} {
			if err := m.recordVisit(ctx, v); err != nil {
				t.Fatal(err)
			}
		}
		vis, err := m.VisitedResidents(ctx, from, to)
		if err != nil {
			t.Fatal(err)
		}
		if len(vis) != 1 || !vis["r1"].Equal(from.Add(5*time.Hour)) {
			t.Errorf("visited %v, want r1 last at +5h only", vis)
		}
	})
}

// TestResponseTimesSystemClear: the overview's time to acknowledge counts
// a person's resolution without acknowledgement as the response, and a
// rule clearing the alert as none (the same rule as AlertResponses).
func TestResponseTimesSystemClear(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, dsn string) {
		t.Parallel()
		ctx := context.Background()
		start := utc("2026-01-15T10:00:00Z")
		m, clk := escManager(t, dsn, start)
		a := openAt(t, m, "res-a", TypeSpO2Low, SeverityHigh)
		b := openAt(t, m, "res-b", TypeSpO2Low, SeverityHigh)
		clk.Set(start.Add(time.Minute))
		if _, err := m.Resolve(ctx, a.ID, ActorSystem, ChannelRule, OutcomeOther, ""); err != nil {
			t.Fatal(err)
		}
		clk.Set(start.Add(2 * time.Minute))
		if _, err := m.Resolve(ctx, b.ID, "ana", "dashboard", OutcomeNoInjury, ""); err != nil {
			t.Fatal(err)
		}
		stats, err := m.ResponseTimes(ctx, start.Add(-time.Hour), start.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range stats {
			if st.Dimension == "site" && (st.Alerts != 2 || st.Acknowledged != 1 || st.AckP50 == nil || *st.AckP50 != 2*time.Minute) {
				t.Errorf("site: %d alerts, %d acknowledged, p50 %v; want 2, 1, 2m0s", st.Alerts, st.Acknowledged, st.AckP50)
			}
			if st.Dimension == "receiver" && st.Key == ChannelRule {
				t.Error("a rule's clear counted as a response channel")
			}
		}
	})
}
