package dashboard

import (
	"strings"
	"testing"
	"time"

	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
	"github.com/influxdata/influxdb-client-go/v2/api/write"

	"github.com/eldercare-iot/eldercare/internal/testenv"
)

func TestFluxVitals(t *testing.T) {
	t.Parallel()
	url, db := testenv.SharedInflux(t, true)
	bucket := db + "/autogen"
	ctx := t.Context()
	client := influxdb2.NewClient(url, "")
	defer client.Close()

	now := time.Now().UTC()
	base := now.Truncate(10 * time.Second).Add(-5 * time.Minute) // a window start
	point := func(dev, res string, at time.Duration, fields map[string]any) *write.Point {
		return influxdb2.NewPoint("readings", map[string]string{"site": "demo-station", "device": dev, "resident": res}, fields, base.Add(at))
	}
	points := []*write.Point{
		point("vm-101", "res-001", 1*time.Second, map[string]any{"hr_bpm": 70.0, "resp_per_min": 16.0}),
		point("vm-101", "res-001", 2*time.Second, map[string]any{"hr_bpm": 80.0, "resp_per_min": 18.0}),
		point("vm-101", "res-001", 31*time.Second, map[string]any{"hr_bpm": 90.0}),
		point("ox-101", "res-001", 3*time.Second, map[string]any{"spo2_pct": 95.0, "pulse_bpm": 79.0}),
		point("vm-102", "res-002", 1*time.Second, map[string]any{"hr_bpm": 120.0}),   // another resident
		point("vm-101", "res-001", -20*time.Minute, map[string]any{"hr_bpm": 150.0}), // too old
		point("vm-101", "res-001", 4*time.Second, map[string]any{"temp_c": 36.6}),    // not a vital
	}
	if err := client.WriteAPIBlocking("", bucket).WritePoint(ctx, points...); err != nil {
		t.Fatalf("write: %v", err)
	}

	q := NewFluxVitals(url, "", bucket)
	defer q.Close()
	got, err := q.ResidentVitals(ctx, "res-001", now.Add(-15*time.Minute), now)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]float64{
		"hr_bpm":       {75, 90}, // mean of the first 10 s window, then the fourth window
		"resp_per_min": {17},
		"spo2_pct":     {95},
		"pulse_bpm":    {79},
	}
	if len(got) != len(want) {
		t.Errorf("fields %v, want %v", keys(got), keys(want))
	}
	for f, vals := range want {
		pts := got[f]
		if len(pts) != len(vals) {
			t.Errorf("%s: %d points %v, want %v", f, len(pts), pts, vals)
			continue
		}
		for i, v := range vals {
			if pts[i].V != v {
				t.Errorf("%s[%d] = %v, want %v", f, i, pts[i].V, v)
			}
			if pts[i].T.Before(base) || pts[i].T.After(base.Add(time.Minute)) {
				t.Errorf("%s[%d] at %v, outside the written minute from %v", f, i, pts[i].T, base)
			}
		}
	}
	if hr := got["hr_bpm"]; len(hr) == 2 && !hr[0].T.Before(hr[1].T) {
		t.Errorf("hr points not oldest first: %v", hr)
	}

	t.Run("bad input", func(t *testing.T) {
		for _, tc := range []struct {
			res      string
			from, to time.Time
			want     string
		}{
			{`res") |> drop() //`, now.Add(-time.Minute), now, "resident"},
			{"res-001", now, now.Add(-time.Minute), "not before"},
		} {
			if _, err := q.ResidentVitals(ctx, tc.res, tc.from, tc.to); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ResidentVitals(%q): err %v, want one mentioning %q", tc.res, err, tc.want)
			}
		}
	})

	t.Run("unknown bucket", func(t *testing.T) {
		q := NewFluxVitals(url, "", "nodb/autogen")
		defer q.Close()
		if _, err := q.ResidentVitals(ctx, "res-001", now.Add(-time.Minute), now); err == nil || !strings.Contains(err.Error(), "nodb/autogen") {
			t.Errorf("err %v, want one naming the bucket", err)
		}
	})
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestFluxString(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"res-001", `"res-001"`},
		{`a"b`, `"a\"b"`},
		{`a\b`, `"a\\b"`},
		{"${x}", `"\${x}"`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := fluxString(tt.in); got != tt.want {
				t.Errorf("fluxString(%q) = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}
