package spool

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/eldercare-iot/eldercare/device"
)

func open(t testing.TB, path string, cfg Config) (*Spool, *prometheus.Registry) {
	t.Helper()
	cfg.Path = path
	reg := prometheus.NewRegistry()
	s, err := Open(context.Background(), cfg, reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, reg
}

var t0 = time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)

// TestFull pins the documented drop policy: oldest readings first, events
// only when no reading remains, every drop counted by kind.
func TestFull(t *testing.T) {
	type add struct {
		kind Kind
		n    int // value of the reading / attr "n" of the event
	}
	tests := []struct {
		name        string
		maxEntries  int
		adds        []add
		wantKept    []add
		wantDropped map[string]float64
	}{
		{
			name:        "readings dropped oldest first",
			maxEntries:  3,
			adds:        []add{{KindReading, 1}, {KindReading, 2}, {KindReading, 3}, {KindReading, 4}, {KindReading, 5}},
			wantKept:    []add{{KindReading, 3}, {KindReading, 4}, {KindReading, 5}},
			wantDropped: map[string]float64{"reading": 2, "event": 0},
		},
		{
			name:        "events kept while a reading remains",
			maxEntries:  3,
			adds:        []add{{KindEvent, 1}, {KindReading, 2}, {KindEvent, 3}, {KindReading, 4}, {KindEvent, 5}},
			wantKept:    []add{{KindEvent, 1}, {KindEvent, 3}, {KindEvent, 5}},
			wantDropped: map[string]float64{"reading": 2, "event": 0},
		},
		{
			name:        "events dropped oldest first when only events remain",
			maxEntries:  2,
			adds:        []add{{KindEvent, 1}, {KindEvent, 2}, {KindEvent, 3}},
			wantKept:    []add{{KindEvent, 2}, {KindEvent, 3}},
			wantDropped: map[string]float64{"reading": 0, "event": 1},
		},
		{
			name:        "a new reading into a spool full of events is the oldest reading",
			maxEntries:  2,
			adds:        []add{{KindEvent, 1}, {KindEvent, 2}, {KindReading, 3}},
			wantKept:    []add{{KindEvent, 1}, {KindEvent, 2}},
			wantDropped: map[string]float64{"reading": 1, "event": 0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			s, _ := open(t, filepath.Join(t.TempDir(), "spool.db"), Config{MaxEntries: tt.maxEntries})
			for _, a := range tt.adds {
				var err error
				if a.kind == KindReading {
					_, err = s.AddReading(ctx, "dev-1", t0, map[string]float64{"n": float64(a.n)})
				} else {
					_, err = s.AddEvent(ctx, "dev-1", t0, device.EventFall, map[string]any{"n": float64(a.n)})
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			got, err := s.Peek(ctx, 100)
			if err != nil {
				t.Fatal(err)
			}
			var kept []add
			for _, e := range got {
				if e.Kind == KindReading {
					kept = append(kept, add{e.Kind, int(e.Values["n"])})
				} else {
					kept = append(kept, add{e.Kind, int(e.Attrs["n"].(float64))})
				}
			}
			if fmt.Sprint(kept) != fmt.Sprint(tt.wantKept) {
				t.Errorf("kept %v, want %v", kept, tt.wantKept)
			}
			for kind, want := range tt.wantDropped {
				if got := testutil.ToFloat64(s.dropped.WithLabelValues(kind)); got != want {
					t.Errorf("dropped_total{kind=%q} = %g, want %g", kind, got, want)
				}
			}
			if n, _ := s.Len(); n != int64(len(tt.wantKept)) {
				t.Errorf("Len = %d, want %d", n, len(tt.wantKept))
			}
			if g := testutil.ToFloat64(s.depth); g != float64(len(tt.wantKept)) {
				t.Errorf("entries gauge = %g, want %d", g, len(tt.wantKept))
			}
		})
	}
}

// TestFullBytes bounds the spool by bytes instead of entries.
func TestFullBytes(t *testing.T) {
	ctx := context.Background()
	s, _ := open(t, filepath.Join(t.TempDir(), "spool.db"), Config{MaxBytes: 1000})
	for i := range 50 {
		if _, err := s.AddReading(ctx, "dev-1", t0, map[string]float64{"n": float64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	n, b := s.Len()
	if b > 1000 || n == 0 || n >= 50 {
		t.Fatalf("Len = %d entries, %d bytes; want 0 < entries < 50 and bytes <= 1000", n, b)
	}
	got, _ := s.Peek(ctx, 100)
	if last := got[len(got)-1].Values["n"]; last != 49 {
		t.Errorf("newest kept reading n=%g, want 49", last)
	}
	if d := testutil.ToFloat64(s.dropped.WithLabelValues("reading")); d != float64(50-n) {
		t.Errorf("dropped %g readings, want %d", d, 50-n)
	}
	big := map[string]float64{}
	for i := range 200 {
		big[fmt.Sprintf("field_%d", i)] = 1
	}
	if _, err := s.AddReading(ctx, "dev-1", t0, big); err == nil {
		t.Error("a reading larger than the whole spool was accepted")
	}
}

// TestReopen: entries survive a restart with their identity, the boot grows,
// and the new boot's ids and seqs start again at 1.
func TestReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "spool.db")
	s1, err := Open(ctx, Config{Path: path}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var first []Entry
	for i := range 3 {
		e, err := s1.AddReading(ctx, "dev-1", t0.Add(time.Duration(i)*time.Second), map[string]float64{"n": float64(i)})
		if err != nil {
			t.Fatal(err)
		}
		first = append(first, e)
	}
	ev, err := s1.AddEvent(ctx, "dev-1", t0.Add(3*time.Second), device.EventSOS, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ev.ID != 4 || ev.Seq != 1 || first[2].ID != 3 || first[2].Seq != 3 {
		t.Errorf("ids/seqs: readings %+v, event id %d seq %d; want ids 1..4, reading seqs 1..3, event seq 1", first, ev.ID, ev.Seq)
	}
	if err := s1.Delete(ctx, first[0].Pos); err != nil {
		t.Fatal(err)
	}
	s1.Close()

	s2, err := Open(ctx, Config{Path: path}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if s2.Boot() <= s1.Boot() {
		t.Errorf("boot after restart %d, want > %d", s2.Boot(), s1.Boot())
	}
	got, err := s2.Peek(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("%d entries after restart, want 3", len(got))
	}
	for i, e := range got[:2] {
		w := first[i+1]
		if e.Boot != w.Boot || e.ID != w.ID || e.Seq != w.Seq || e.TS != w.TS || e.Values["n"] != w.Values["n"] {
			t.Errorf("entry %d after restart = %+v, want %+v", i, e, w)
		}
	}
	if got[2].Kind != KindEvent || got[2].Type != device.EventSOS {
		t.Errorf("last entry %+v, want the sos event", got[2])
	}
	if n, b := s2.Len(); n != 3 || b <= 0 {
		t.Errorf("Len after restart = %d, %d", n, b)
	}
	e, err := s2.AddReading(ctx, "dev-1", t0, map[string]float64{"n": 9})
	if err != nil {
		t.Fatal(err)
	}
	if e.Boot != s2.Boot() || e.ID != 1 || e.Seq != 1 {
		t.Errorf("first reading of the new boot: boot %d id %d seq %d, want %d 1 1", e.Boot, e.ID, e.Seq, s2.Boot())
	}
}

func TestAddRejects(t *testing.T) {
	ctx := context.Background()
	s, _ := open(t, filepath.Join(t.TempDir(), "spool.db"), Config{})
	nan := 0.0
	nan = nan / nan
	for name, f := range map[string]func() error{
		"no values":  func() error { _, err := s.AddReading(ctx, "d", t0, nil); return err },
		"NaN":        func() error { _, err := s.AddReading(ctx, "d", t0, map[string]float64{"x": nan}); return err },
		"bad device": func() error { _, err := s.AddReading(ctx, "a/b", t0, map[string]float64{"x": 1}); return err },
		"no type":    func() error { _, err := s.AddEvent(ctx, "d", t0, "", nil); return err },
	} {
		t.Run(name, func(t *testing.T) {
			if err := f(); err == nil {
				t.Error("accepted")
			}
		})
	}
	if n, _ := s.Len(); n != 0 {
		t.Errorf("%d entries after rejected adds", n)
	}
}

func TestConfigValidate(t *testing.T) {
	err := Config{MaxBytes: -1, MaxEntries: -1}.Validate()
	if err == nil {
		t.Fatal("accepted")
	}
	for _, w := range []string{"path", "max bytes", "max entries"} {
		if !contains(err.Error(), w) {
			t.Errorf("error %q does not mention %s", err, w)
		}
	}
}

func contains(s, sub string) bool {
	return len(sub) == 0 || len(s) >= len(sub) && (s[:len(sub)] == sub || contains(s[1:], sub))
}

func FuzzDecodeBody(f *testing.F) {
	f.Add(0, []byte(`{"values":{"hr_bpm":81}}`))
	f.Add(1, []byte(`{"type":"fall","attrs":{"peak_accel_ms2":61.2}}`))
	f.Add(0, []byte(`{"values":{}}`))
	f.Add(2, []byte(`{}`))
	f.Fuzz(func(t *testing.T, kind int, b []byte) {
		var e Entry
		if err := DecodeBody(Kind(kind), b, &e); err != nil {
			return
		}
		switch Kind(kind) {
		case KindReading:
			if len(e.Values) == 0 {
				t.Fatal("reading without values accepted")
			}
		case KindEvent:
			if e.Type == "" {
				t.Fatal("event without type accepted")
			}
		default:
			t.Fatal("unknown kind accepted")
		}
	})
}

// BenchmarkAddReading is the spool's write path: one committed transaction
// per reading, as the gateway does before acknowledging a source.
func BenchmarkAddReading(b *testing.B) {
	for _, sync := range []bool{false, true} {
		b.Run(fmt.Sprintf("sync=%v", sync), func(b *testing.B) {
			ctx := context.Background()
			s, _ := open(b, filepath.Join(b.TempDir(), "spool.db"), Config{Sync: sync})
			vals := map[string]float64{"hr_bpm": 81, "pulse_bpm": 80, "resp_per_min": 18, "spo2_pct": 97}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if _, err := s.AddReading(ctx, "vm-101", t0.Add(time.Duration(i)*time.Millisecond), vals); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
