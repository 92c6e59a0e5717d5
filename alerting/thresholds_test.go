package alerting

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/internal/sqldb/sqldbtest"
)

// TestThresholdHysteresis: SpO2 < 90 % for 30 s opens; the alert clears
// only after SpO2 >= 92 % held 60 s (device time). 90-91 % neither breaches
// nor clears.
func TestThresholdHysteresis(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	run := spo2Every
	cat := slices.Concat[[]sample]
	tests := []struct {
		name    string
		samples []sample
		clearAt []float64
	}{
		{"92 % held 60 s clears at the boundary", cat(run(0, 30, 85), run(31, 91, 92)), []float64{91}},
		{"92 % held 59 s does not clear", cat(run(0, 30, 85), run(31, 90, 92)), nil},
		{"91 % for ever never clears", cat(run(0, 30, 85), run(31, 300, 91)), nil},
		{"a dip to 91 % restarts the clear time", cat(run(0, 30, 85), run(31, 80, 95), run(81, 81, 91), run(82, 142, 95)), []float64{142}},
		{"a breach restarts the clear time", cat(run(0, 30, 85), run(31, 80, 95), run(81, 81, 80), run(82, 142, 95)), []float64{142}},
		{"a gap over 10 s restarts the clear time", cat(run(0, 30, 85), run(31, 60, 95), run(71, 131, 95)), []float64{131}},
		{"cleared once per calm run", cat(run(0, 30, 85), run(31, 400, 97)), []float64{91}},
		{"two episodes, two clears", cat(run(0, 30, 85), run(31, 100, 97), run(101, 131, 85), run(132, 200, 97)), []float64{91, 192}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := newVitals([]Threshold{SpO2Low}, DefaultMaxGap)
			var clears []clearing
			for i, s := range tc.samples {
				v.observe(1, uint64(i+1), t0.Add(time.Duration(s.sec*float64(time.Second))), s.values)
				clears = append(clears, v.takeCleared()...)
			}
			var got []float64
			for _, c := range clears {
				got = append(got, c.At.Sub(t0).Seconds())
				if c.Threshold.Type != TypeSpO2Low || c.Span < 60*time.Second {
					t.Errorf("clearing %+v", c)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.clearAt) {
				t.Errorf("cleared at %v, want %v", got, tc.clearAt)
			}
		})
	}
	c := clearing{Threshold: SpO2Low, Span: 60 * time.Second}
	if c.Note() != "cleared: value back in range for 60 s" {
		t.Errorf("note %q", c.Note())
	}
}

func TestThresholdValidate(t *testing.T) {
	t.Parallel()
	nan := math.NaN()
	ok := SpO2Low
	tests := []struct {
		name string
		mod  func(*Threshold)
		want string // "" = valid
	}{
		{"default", func(*Threshold) {}, ""},
		{"no type", func(th *Threshold) { th.Type = "" }, "type is required"},
		{"no field", func(th *Threshold) { th.Field = "" }, "field is required"},
		{"bad severity", func(th *Threshold) { th.Severity = "urgent" }, "severity"},
		{"no bound", func(th *Threshold) { th.Low, th.High = nan, nan }, "no bound"},
		{"low above high", func(th *Threshold) { th.Low, th.High = 100, 90 }, "not below"},
		{"clear below low", func(th *Threshold) { th.ClearLow = 88 }, "clear low 88 must be >= low 90"},
		{"clear missing", func(th *Threshold) { th.ClearLow = nan }, "clear low"},
		{"negative sustain", func(th *Threshold) { th.Sustain = -time.Second }, "negative"},
		{"infinite", func(th *Threshold) { th.Low = math.Inf(-1) }, "finite"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			th := ok
			tc.mod(&th)
			err := th.Validate()
			if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
	for _, th := range DefaultThresholds {
		if err := th.Validate(); err != nil {
			t.Errorf("default %s: %v", th.Type, err)
		}
	}
}

// TestResidentThresholds stores a resident's own threshold on SQLite and
// PostgreSQL, reads it back, audits who changed what, and merges it over
// the defaults.
func TestResidentThresholds(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, dsn string) {
		t.Parallel()
		ctx := context.Background()
		m := openTestManager(t, dsn)
		clock := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
		m.now = func() time.Time { return clock }
		copd := SpO2Low
		copd.Low, copd.ClearLow = 86, 88 // COPD target 88-92 % (BTS 2017)
		if err := m.SetResidentThreshold(ctx, "nurse-ana", "res-1", copd); err != nil {
			t.Fatal(err)
		}
		clock = clock.Add(time.Minute)
		copd.Sustain = 45 * time.Second
		if err := m.SetResidentThreshold(ctx, "nurse-ben", "res-1", copd); err != nil {
			t.Fatal(err)
		}
		bad := copd
		bad.ClearLow = 80
		if err := m.SetResidentThreshold(ctx, "nurse-ben", "res-1", bad); err == nil {
			t.Fatal("invalid threshold stored")
		}
		if err := m.SetResidentThreshold(ctx, "", "res-1", copd); err == nil {
			t.Fatal("threshold stored without an actor")
		}
		all, err := m.ResidentThresholds(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(all["res-1"]) != 1 || !sameThreshold(all["res-1"][0], copd) {
			t.Fatalf("stored %+v, want %+v", all["res-1"], copd)
		}
		if !math.IsNaN(all["res-1"][0].High) {
			t.Errorf("no-bound High came back as %g", all["res-1"][0].High)
		}
		merged := mergeThresholds(DefaultThresholds, all["res-1"])
		if len(merged) != 3 || merged[0].Low != 86 || merged[1].Type != TypeHeartRate {
			t.Errorf("merged %+v", merged)
		}
		clock = clock.Add(time.Minute)
		if err := m.DeleteResidentThreshold(ctx, "nurse-cy", "res-1", TypeSpO2Low); err != nil {
			t.Fatal(err)
		}
		if err := m.DeleteResidentThreshold(ctx, "nurse-cy", "res-1", TypeSpO2Low); !errors.Is(err, ErrNotFound) {
			t.Errorf("second delete: %v, want ErrNotFound", err)
		}
		changes, err := m.ThresholdChanges(ctx, "res-1")
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, c := range changes {
			got = append(got, fmt.Sprintf("%s %s %s before=%t after=%t", c.At.Format("15:04"), c.Actor, c.Action, c.Before != "", c.After != ""))
		}
		want := "[10:00 nurse-ana set before=false after=true 10:01 nurse-ben set before=true after=true 10:02 nurse-cy delete before=true after=false]"
		if fmt.Sprint(got) != want {
			t.Errorf("audit %v\nwant %s", got, want)
		}
		if !strings.Contains(changes[1].After, `"sustain_ms":45000`) || !strings.Contains(changes[1].Before, `"sustain_ms":30000`) {
			t.Errorf("audit bodies %q -> %q", changes[1].Before, changes[1].After)
		}
		v, err := m.thresholdsVersion(ctx)
		if err != nil || v != 3 {
			t.Errorf("version %d %v, want 3", v, err)
		}
	})
}

// TestAutoResolve: resolveByKey resolves an open alert as the system with
// outcome other and the note, records history and queues a notification;
// on a key with nothing open it does nothing.
func TestAutoResolve(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := openTestManager(t, sqldbtest.SQLiteDSN(t))
	key := alertKey(strp("res-1"), "vm-1", TypeSpO2Low)
	a, _, err := m.open(ctx, openSpec{Key: key, Site: "s", Resident: strp("res-1"), Device: "vm-1", Type: TypeSpO2Low,
		Severity: SeverityHigh, At: time.Now(), Detail: "SpO2 85 % for 30 s"})
	if err != nil {
		t.Fatal(err)
	}
	got, ok, err := m.resolveByKey(ctx, key, "cleared: value back in range for 60 s")
	if err != nil || !ok {
		t.Fatalf("resolveByKey: %v %v", ok, err)
	}
	if got.ID != a.ID || got.Status != StatusResolved || got.Outcome != OutcomeOther || got.ResolvedBy != ActorSystem ||
		got.Note != "cleared: value back in range for 60 s" {
		t.Errorf("resolved %+v", got)
	}
	h, err := m.History(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	last := h[len(h)-1]
	if last.Action != ActionResolved || last.Actor != ActorSystem || last.Channel != ChannelRule {
		t.Errorf("history %+v", last)
	}
	if _, ok, err := m.resolveByKey(ctx, key, "again"); ok || err != nil {
		t.Errorf("second resolve: %v %v", ok, err)
	}
}
