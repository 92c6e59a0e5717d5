package firmwaresim

import (
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/device/fall"
)

// TestSyntheticTracesThroughDetector: without recordings the demo replays
// the synthetic traces; the shipped detector must report the fall once,
// at its impact, and nothing for the walk.
func TestSyntheticTracesThroughDetector(t *testing.T) {
	dets, cands := fall.Run(fall.DefaultConfig(), SyntheticFallTrace())
	if len(dets) != 1 || dets[0].At < 4400*time.Millisecond || dets[0].At > 4500*time.Millisecond {
		t.Fatalf("synthetic fall: %+v (candidates %+v), want one detection at the 4.4 s impact", dets, cands)
	}
	if dets, cands := fall.Run(fall.DefaultConfig(), SyntheticWalkTrace(30*time.Second)); len(dets) != 0 {
		t.Fatalf("synthetic walk: %+v (candidates %+v), want none", dets, cands)
	}
}
