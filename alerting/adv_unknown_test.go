package alerting

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/device/registry"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// advDir is a directory whose registered devices change while the service
// runs (adoption from the admin pages, and the odd removal).
type advDir struct {
	gatewayDir
	registered *sync.Map // device id -> registry.Device
}

func (d advDir) Device(id string) (registry.Device, bool) {
	x, ok := d.registered.Load(id)
	if !ok {
		return registry.Device{}, false
	}
	return x.(registry.Device), true
}

// checkUnknownConsistent checks the tracker's invariants: the map and the
// list hold the same entries, each entry's element is its own, the list
// is bounded, and pending only holds devices of at most the bound.
func checkUnknownConsistent(t *testing.T, u *unknownTracker) {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.recent.Len() != len(u.byID) {
		t.Fatalf("list holds %d entries, map %d", u.recent.Len(), len(u.byID))
	}
	if len(u.byID) > MaxUnknownDevices || len(u.pending) > MaxUnknownDevices {
		t.Fatalf("%d tracked, %d pending; bound %d", len(u.byID), len(u.pending), MaxUnknownDevices)
	}
	seen := map[string]bool{}
	for el := u.recent.Front(); el != nil; el = el.Next() {
		e := el.Value.(*unknownEntry)
		if seen[e.Device] {
			t.Fatalf("%s twice in the list", e.Device)
		}
		seen[e.Device] = true
		if u.byID[e.Device] != e || e.elem != el {
			t.Fatalf("%s: list entry not the map's, or its element not its own", e.Device)
		}
	}
}

// TestUnknownTrackerConsistentUnderChurn: four goroutines note messages of
// 800 device ids (more than the bound: eviction) while devices are adopted
// and un-registered at random (the adoption path removes entries): no
// panic, and the list and the map stay the same set.
func TestUnknownTrackerConsistentUnderChurn(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var reg sync.Map
	r := e.start(func(c *Config) {
		c.Rules.Directory = func() Directory {
			return advDir{gatewayDir: gatewayDir{testDirectory: testDirectory{loc: time.UTC}, devices: map[string]registry.Device{}}, registered: &reg}
		}
	})
	ctx := context.Background()
	const ids = 800
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(w), 1))
			for i := range 3000 {
				dev := fmt.Sprintf("churn-%03d", rnd.IntN(ids))
				switch rnd.IntN(40) {
				case 0: // adopted
					reg.Store(dev, registry.Device{ID: dev, SiteID: "demo", Kind: registry.KindEnvSensor})
				case 1: // removed from the registry again
					reg.Delete(dev)
				}
				var ev device.EventType
				if i%97 == 0 {
					ev = device.EventSOS
				}
				r.svc.noteUnknown(ctx, "demo", dev, map[string]float64{"hr_bpm": float64(60 + i%40)}, ev)
			}
		})
	}
	wg.Wait()
	checkUnknownConsistent(t, r.svc.cmds.unknown)
	// A listed device registered since is dropped at its next message.
	u := r.svc.cmds.unknown
	var adopted []string
	u.mu.Lock()
	for dev := range u.byID {
		if _, ok := reg.Load(dev); ok {
			adopted = append(adopted, dev)
		}
	}
	u.mu.Unlock()
	for _, dev := range adopted {
		r.svc.noteUnknown(ctx, "demo", dev, map[string]float64{"hr_bpm": 70}, "")
		u.mu.Lock()
		_, still := u.byID[dev]
		u.mu.Unlock()
		if still {
			t.Fatalf("%s registered and heard from, still listed", dev)
		}
	}
	checkUnknownConsistent(t, u)
	testenv.EventuallyTrue(t, 30*time.Second, "unknown-device writer idle", func() bool {
		u.mu.Lock()
		defer u.mu.Unlock()
		return !u.writing && len(u.pending) == 0
	})
}

// TestUnknownSOSDuringFlood: with the list full and the store-write budget
// spent by a flood of made-up ids, an SOS from yet another unregistered
// device still opens its alert (unassigned) at once, the device is in the
// in-memory list, and it reaches the stored adoption list although it
// sends nothing else (a pendant that only ever sent this SOS).
func TestUnknownSOSDuringFlood(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.start(func(c *Config) {
		c.Rules.Directory = func() Directory {
			return gatewayDir{testDirectory: testDirectory{loc: time.UTC}, devices: map[string]registry.Device{}}
		}
	})
	ctx := context.Background()
	u := r.svc.cmds.unknown
	flood := func(prefix string, n int) {
		for i := range n {
			r.svc.noteUnknown(ctx, "demo", fmt.Sprintf("%s-%04d", prefix, i), map[string]float64{"hr_bpm": 72}, "")
		}
	}
	flood("fake", 2*MaxUnknownDevices)
	if u.writes.Tokens() >= 1 {
		t.Fatalf("the flood left %v write tokens; the test needs none", u.writes.Tokens())
	}
	start := time.Now()
	e.publish("lone-pendant", device.ChanEvent, device.Event{V: 1, Device: "lone-pendant", Boot: 1, ID: 1, Seq: 1,
		TS: time.Now().UnixMilli(), Type: device.EventSOS})
	// The flood goes on meanwhile, with fewer new ids than the in-memory
	// list holds: more would push the pendant out of it, as the least
	// recently heard, which is the list's rule, not a loss (the alert
	// stands either way).
	flood("more", MaxUnknownDevices/2)
	testenv.EventuallyTrue(t, 10*time.Second, "SOS alert of the unregistered device during the flood", func() bool {
		for _, a := range openAlerts(t, r.m, TypeSOS) {
			if a.Device == "lone-pendant" && a.Unassigned {
				return true
			}
		}
		return false
	})
	t.Logf("SOS alert after %v", time.Since(start).Round(time.Millisecond))
	u.mu.Lock()
	_, listed := u.byID["lone-pendant"]
	u.mu.Unlock()
	if !listed {
		t.Fatal("lone-pendant not in the in-memory list")
	}
	checkUnknownConsistent(t, u)
	testenv.EventuallyTrue(t, 15*time.Second, "lone-pendant in the stored adoption list", func() bool {
		got, err := r.m.UnknownDevices(ctx)
		if err != nil {
			return false
		}
		for _, x := range got {
			if x.Device == "lone-pendant" {
				return true
			}
		}
		return false
	})
}
