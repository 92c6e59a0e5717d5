package firmwaresim

import (
	"context"
	"errors"
	"math"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/eldercare-iot/eldercare/device"
)

func TestAnchor(t *testing.T) {
	start := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	tests := []struct {
		name        string
		a           Anchor
		t           time.Duration
		send, stamp time.Time
		end         time.Time
	}{
		{"1x first", Anchor{start, 0, 480 * time.Second, 1}, 0, start, start, start.Add(480 * time.Second)},
		{"1x last", Anchor{start, 0, 480 * time.Second, 1}, 480 * time.Second, start.Add(480 * time.Second), start.Add(480 * time.Second), start.Add(480 * time.Second)},
		{"100x first", Anchor{start, 0, 480 * time.Second, 100}, 0, start, start.Add(4800*time.Millisecond - 480*time.Second), start.Add(4800 * time.Millisecond)},
		{"100x middle", Anchor{start, 0, 480 * time.Second, 100}, 240 * time.Second, start.Add(2400 * time.Millisecond), start.Add(4800*time.Millisecond - 240*time.Second), start.Add(4800 * time.Millisecond)},
		{"100x last", Anchor{start, 0, 480 * time.Second, 100}, 480 * time.Second, start.Add(4800 * time.Millisecond), start.Add(4800 * time.Millisecond), start.Add(4800 * time.Millisecond)},
		{"offset first", Anchor{start, 10 * time.Second, 20 * time.Second, 2}, 10 * time.Second, start, start.Add(5*time.Second - 10*time.Second), start.Add(5 * time.Second)},
		{"0.5x slow motion stamps at send", Anchor{start, 0, 10 * time.Second, 0.5}, 4 * time.Second, start.Add(8 * time.Second), start.Add(8 * time.Second), start.Add(20 * time.Second)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.a.SendAt(tc.t); !got.Equal(tc.send) {
				t.Errorf("SendAt = %v, want %v", got, tc.send)
			}
			if got := tc.a.Stamp(tc.t); !got.Equal(tc.stamp) {
				t.Errorf("Stamp = %v, want %v", got, tc.stamp)
			}
			if got := tc.a.End(); !got.Equal(tc.end) {
				t.Errorf("End = %v, want %v", got, tc.end)
			}
			if tc.a.Stamp(tc.t).After(tc.a.SendAt(tc.t)) {
				t.Errorf("stamp %v after send time %v", tc.a.Stamp(tc.t), tc.a.SendAt(tc.t))
			}
		})
	}
}

func TestCheckSpeed(t *testing.T) {
	for _, s := range []float64{0.5, 1, 100, 1000} {
		if err := CheckSpeed(s); err != nil {
			t.Errorf("speed %g: %v", s, err)
		}
	}
	for _, s := range []float64{0, -1, 1000.5, math.NaN(), math.Inf(1)} {
		if err := CheckSpeed(s); err == nil {
			t.Errorf("speed %g accepted", s)
		}
	}
}

// fakePub records what a replay publishes, with the clock at publish time.
type fakePub struct {
	mu       sync.Mutex
	now      func() time.Time
	readings []published
	events   []published
}

type published struct {
	sent, ts time.Time
	values   map[string]float64
	typ      device.EventType
	attrs    map[string]any
}

func (f *fakePub) PublishReading(_ context.Context, ts time.Time, v map[string]float64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.readings = append(f.readings, published{sent: f.now(), ts: ts, values: v})
	return nil
}

func (f *fakePub) PublishEvent(_ context.Context, ts time.Time, typ device.EventType, attrs map[string]any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, published{sent: f.now(), ts: ts, typ: typ, attrs: attrs})
	return nil
}

// TestReplayVitalsAnchoring replays 481 rows under a fake clock (synctest)
// whose epoch is injected, and checks the anchoring rule on what is sent.
func TestReplayVitalsAnchoring(t *testing.T) {
	nan := math.NaN()
	rows := make([]VitalsRow, 481)
	for i := range rows {
		rows[i] = VitalsRow{T: time.Duration(i) * time.Second, HR: 80, Pulse: 80, Resp: 16, SpO2: 97}
	}
	rows[5] = VitalsRow{T: 5 * time.Second, HR: nan, Pulse: nan, Resp: nan, SpO2: nan} // not sent
	rows[6].SpO2 = nan
	for _, speed := range []float64{100, 1, 0.5, 1000} {
		t.Run("speed", func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				epoch := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
				bubble := time.Now()
				now := func() time.Time { return epoch.Add(time.Since(bubble)) }
				pub := &fakePub{now: now}
				start := now()
				n, err := replayVitals(t.Context(), pub, rows, speed, false, now)
				if err != nil {
					t.Fatal(err)
				}
				end := now()
				if n != 480 || len(pub.readings) != 480 {
					t.Fatalf("published %d (%d), want 480: the all-NaN row is not sent", n, len(pub.readings))
				}
				wantDur := time.Duration(float64(480*time.Second) / speed)
				if got := end.Sub(start); got != wantDur {
					t.Errorf("replay took %s of fake time, want %s", got, wantDur)
				}
				last := pub.readings[len(pub.readings)-1]
				if !last.ts.Equal(end) {
					t.Errorf("last stamp %v, want the replay end %v", last.ts, end)
				}
				for i, r := range pub.readings {
					if r.ts.After(r.sent) {
						t.Fatalf("reading %d stamped %v after it was sent at %v", i, r.ts, r.sent)
					}
					if r.ts.After(end) {
						t.Fatalf("reading %d stamped %v after the replay end %v", i, r.ts, end)
					}
				}
				if _, ok := pub.readings[5].values["spo2_pct"]; ok {
					t.Errorf("NaN SpO2 sent: %v", pub.readings[5].values)
				}
				if speed >= 1 {
					// Device-time spacing stays real: rows 10 and 11 are 1 s apart.
					if d := pub.readings[10].ts.Sub(pub.readings[9].ts); d != time.Second {
						t.Errorf("device spacing %s at %gx, want 1s", d, speed)
					}
					if d := last.ts.Sub(pub.readings[0].ts); d != 480*time.Second {
						t.Errorf("device span %s at %gx, want 8m0s", d, speed)
					}
				}
			})
		})
	}
}

func TestReplayVitalsNoValues(t *testing.T) {
	nan := math.NaN()
	_, err := replayVitals(t.Context(), &fakePub{now: time.Now}, []VitalsRow{{0, nan, nan, nan, nan}}, 1, false, time.Now)
	if err == nil {
		t.Fatal("replay of a recording without values succeeded")
	}
}

func TestReplayVitalsLoopCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rows := []VitalsRow{{0, 80, 80, 16, 97}, {time.Second, 81, 80, 16, 97}, {2 * time.Second, 82, 80, 16, 97}}
		pub := &fakePub{now: time.Now}
		ctx, cancel := context.WithTimeout(t.Context(), 10500*time.Millisecond)
		defer cancel()
		n, err := replayVitals(ctx, pub, rows, 1, true, time.Now)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err %v, want the context's", err)
		}
		// Passes start 3 s apart (2 s recording + 1 s gap): t=0,1,2,3,...,10.
		if n != 11 {
			t.Fatalf("published %d readings in 10.5 s of looping, want 11", n)
		}
		for i := 1; i < len(pub.readings); i++ {
			if d := pub.readings[i].ts.Sub(pub.readings[i-1].ts); d != time.Second {
				t.Fatalf("stamps %d and %d are %s apart across the loop, want 1s", i-1, i, d)
			}
		}
	})
}
