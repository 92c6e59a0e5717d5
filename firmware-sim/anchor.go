package firmwaresim

import (
	"context"
	"fmt"
	"time"
)

// MaxSpeed is the fastest replay speed accepted (1000x real time).
const MaxSpeed = 1000

// CheckSpeed reports an error unless 0 < speed <= MaxSpeed.
func CheckSpeed(speed float64) error {
	if !(speed > 0 && speed <= MaxSpeed) {
		return fmt.Errorf("speed %g: want a factor of real time in (0, %d], e.g. 1 (real time), 0.5 or 100", speed, MaxSpeed)
	}
	return nil
}

// Anchor maps the time of a recording onto wall time for one pass of a
// replay at Speed times real time.
//
// With D = Last - First and the pass starting at wall time Start, the sample
// recorded at t is sent at SendAt(t) = Start + (t - First)/Speed and, for
// Speed >= 1, stamped Stamp(t) = Start + D/Speed - (Last - t): the last
// sample is stamped at the moment the replay ends (End), the device-time
// spacing between samples stays as recorded (1 s stays 1 s at 100x), and no
// stamp is after its send time, so nothing is ever stamped in the future.
//
// For Speed < 1 (slow motion) keeping the recorded spacing would put the
// first stamps in the future, so the device clock runs slow with the
// replay instead: Stamp(t) = SendAt(t), and the last sample is still
// stamped End.
type Anchor struct {
	// Start is the wall time at which the pass starts.
	Start time.Time
	// First and Last are the recording times of the first and last sample.
	First, Last time.Duration
	// Speed is the replay speed, a factor of real time (> 0).
	Speed float64
}

func scale(d time.Duration, speed float64) time.Duration {
	return time.Duration(float64(d) / speed)
}

// SendAt returns the wall time at which the sample recorded at t is sent.
func (a Anchor) SendAt(t time.Duration) time.Time { return a.Start.Add(scale(t-a.First, a.Speed)) }

// End returns the wall time at which the pass ends: SendAt(Last).
func (a Anchor) End() time.Time { return a.SendAt(a.Last) }

// Stamp returns the device timestamp of the sample recorded at t.
func (a Anchor) Stamp(t time.Duration) time.Time {
	if a.Speed < 1 {
		return a.SendAt(t)
	}
	return a.End().Add(-(a.Last - t))
}

// sleepUntil waits until now() >= t or ctx is done.
func sleepUntil(ctx context.Context, now func() time.Time, t time.Time) error {
	d := t.Sub(now())
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
