package alerting

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/internal/sqldb/sqldbtest"
)

// TestResponseTimes constructs alerts with known acknowledgement and
// resolution times across the day and night shifts and checks count, p50
// and p90 per site, shift, receiver and responder.
func TestResponseTimes(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, dsn string) {
		t.Parallel()
		ctx := context.Background()
		day := utc("2026-01-15T10:00:00Z")   // 11:00 CET: day shift
		night := utc("2026-01-15T22:00:00Z") // 23:00 CET: night shift
		m, clk := escManager(t, dsn, day)
		type spec struct {
			opened       time.Time
			ack, resolve time.Duration // 0 = never
			channel, by  string
		}
		var specs []spec
		for i := 1; i <= 10; i++ { // day: acknowledged after 1..10 min via dashboard, resolved after 2x
			specs = append(specs, spec{day.Add(time.Duration(i) * time.Second), time.Duration(i) * time.Minute, time.Duration(2*i) * time.Minute, "dashboard", "ana"})
		}
		for i := 1; i <= 4; i++ { // night: 30 s .. 2 min via api
			specs = append(specs, spec{night.Add(time.Duration(i) * time.Second), time.Duration(i) * 30 * time.Second, 0, "api", "ben"})
		}
		specs = append(specs, spec{night.Add(time.Minute), 0, 0, "", ""}) // never acknowledged
		for i, s := range specs {
			clk.Set(s.opened)
			a := openAt(t, m, fmt.Sprintf("res-%d", i), TypeSpO2Low, SeverityHigh)
			if s.ack > 0 {
				clk.Set(s.opened.Add(s.ack))
				if _, err := m.Acknowledge(ctx, a.ID, s.by, s.channel); err != nil {
					t.Fatal(err)
				}
			}
			if s.resolve > 0 {
				clk.Set(s.opened.Add(s.resolve))
				if _, err := m.Resolve(ctx, a.ID, s.by, s.channel, OutcomeNoInjury, ""); err != nil {
					t.Fatal(err)
				}
			}
		}
		stats, err := m.ResponseTimes(ctx, day.Add(-time.Hour), night.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]struct {
			alerts, acked, resolved int
			ack50, ack90, res50     string // "" = nil
		}{
			"site/demo":          {15, 14, 10, "3m0s", "9m0s", "10m0s"},
			"shift/day":          {10, 10, 10, "5m0s", "9m0s", "10m0s"},
			"shift/night":        {5, 4, 0, "1m0s", "2m0s", ""},
			"receiver/":          {1, 0, 0, "", "", ""},
			"receiver/api":       {4, 4, 0, "1m0s", "2m0s", ""},
			"receiver/dashboard": {10, 10, 10, "5m0s", "9m0s", "10m0s"},
			"responder/ana":      {10, 10, 10, "5m0s", "9m0s", "10m0s"},
			"responder/ben":      {4, 4, 0, "1m0s", "2m0s", ""},
			"responder/":         {1, 0, 0, "", "", ""},
		}
		got := map[string]ResponseStat{}
		for _, s := range stats {
			got[s.Dimension+"/"+s.Key] = s
		}
		if len(got) != len(want) {
			t.Errorf("groups %v, want %d", got, len(want))
		}
		str := func(p *time.Duration) string {
			if p == nil {
				return ""
			}
			return p.String()
		}
		for k, w := range want {
			s, ok := got[k]
			if !ok {
				t.Errorf("no group %s", k)
				continue
			}
			if s.Alerts != w.alerts || s.Acknowledged != w.acked || s.Resolved != w.resolved ||
				str(s.AckP50) != w.ack50 || str(s.AckP90) != w.ack90 || str(s.ResolveP50) != w.res50 {
				t.Errorf("%s: alerts %d acked %d resolved %d ack p50 %s p90 %s resolve p50 %s; want %+v",
					k, s.Alerts, s.Acknowledged, s.Resolved, str(s.AckP50), str(s.AckP90), str(s.ResolveP50), w)
			}
		}
		// The period bounds by opening time.
		stats, err = m.ResponseTimes(ctx, night.Add(-time.Hour), night.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range stats {
			if s.Dimension == "site" && s.Alerts != 5 {
				t.Errorf("night-only period: %d alerts, want 5", s.Alerts)
			}
		}
	})
}

func TestPercentile(t *testing.T) {
	t.Parallel()
	ds := []time.Duration{5, 1, 4, 2, 3}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{50, 3}, {90, 5}, {100, 5}, {1, 1}} {
		if got := percentile(ds, c.p); got == nil || *got != c.want {
			t.Errorf("p%g = %v, want %v", c.p, got, c.want)
		}
	}
	if percentile(nil, 50) != nil {
		t.Error("empty: want nil")
	}
}
