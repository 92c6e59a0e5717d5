// Stage 3, store: wards. A site's rooms are grouped in wards (the registry's
// Room.Ward); a ward may have its own roster, which wins over the site's for
// alerts of residents whose bed's room is in that ward.

package alerting

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/eldercare-iot/eldercare/device/registry"
)

// Wards tells escalation which ward an alert belongs to and which wards a
// site has. [RegistryWards] implements it from the registry.
type Wards interface {
	// WardOf returns the ward of the room of the bed of a's resident, ""
	// when a has no resident, the resident no bed, or the room no ward.
	WardOf(a Alert) string
	// SiteWards returns the distinct wards of site's rooms, sorted; ok
	// false when they cannot be read now (then nothing is refused).
	SiteWards(site string) (wards []string, ok bool)
}

// SetWards makes escalation resolve on-duty staff per ward: the roster of
// the ward of an alert's resident's room wins over the site's roster, and
// PutRoster refuses a ward the site does not have. nil: no wards.
func (m *Manager) SetWards(w Wards) {
	m.settings.mu.Lock()
	m.settings.wards = w
	m.settings.mu.Unlock()
}

func (m *Manager) checkWard(r Roster) error {
	if r.Ward == "" {
		return nil
	}
	m.settings.mu.Lock()
	w := m.settings.wards
	m.settings.mu.Unlock()
	if w == nil {
		return nil
	}
	known, ok := w.SiteWards(r.Site)
	if !ok || slices.Contains(known, r.Ward) {
		return nil
	}
	if len(known) == 0 {
		return fmt.Errorf("roster %s: unknown ward %q: site %s has no rooms with a ward (set a room's ward in the registry)", r.Key(), r.Ward, r.Site)
	}
	return fmt.Errorf("roster %s: unknown ward %q: the wards of site %s are %s", r.Key(), r.Ward, r.Site, strings.Join(known, ", "))
}

func (s Settings) withWards(w Wards) Settings {
	s.wards = w
	return s
}

// wardOf returns a's ward ("" without wards).
func (s Settings) wardOf(a Alert) string {
	if s.wards == nil {
		return ""
	}
	return s.wards.WardOf(a)
}

// RegistryWards reads wards from the registry: the current snapshot for a
// resident's bed, and the rooms (read through Rooms, every site) for each
// room's ward, re-read when the snapshot changes and at least every
// minute. Safe for concurrent use.
type RegistryWards struct {
	Snapshot func() *registry.Snapshot
	// Rooms lists the rooms of a site ("" = every site), e.g.
	// (*registry.Store).Rooms.
	Rooms func(ctx context.Context, site string) ([]registry.Room, error)

	mu     sync.Mutex
	snap   *registry.Snapshot
	read   time.Time
	rooms  map[string]registry.Room // room id -> room
	failed bool
}

// NewRegistryWards returns the wards of a registry cache's snapshots and
// its store's rooms.
func NewRegistryWards(snapshot func() *registry.Snapshot, rooms func(ctx context.Context, site string) ([]registry.Room, error)) *RegistryWards {
	return &RegistryWards{Snapshot: snapshot, Rooms: rooms}
}

// current returns the rooms by id, reading them again when stale; ok false
// when they could never be read.
func (w *RegistryWards) current() (map[string]registry.Room, bool) {
	sn := w.Snapshot()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.rooms != nil && sn == w.snap && time.Since(w.read) < time.Minute {
		return w.rooms, !w.failed
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	list, err := w.Rooms(ctx, "")
	w.read = time.Now()
	if err != nil {
		// Keep what was read before; retry at the next minute.
		w.failed = w.rooms == nil
		return w.rooms, !w.failed
	}
	m := make(map[string]registry.Room, len(list))
	for _, r := range list {
		m[r.ID] = r
	}
	w.rooms, w.snap, w.failed = m, sn, false
	return m, true
}

// WardOf implements Wards.
func (w *RegistryWards) WardOf(a Alert) string {
	if a.Resident == nil {
		return ""
	}
	b, ok := w.Snapshot().BedOf(*a.Resident)
	if !ok {
		return ""
	}
	rooms, _ := w.current()
	return rooms[b.RoomID].Ward
}

// SiteWards implements Wards.
func (w *RegistryWards) SiteWards(site string) ([]string, bool) {
	rooms, ok := w.current()
	if !ok {
		return nil, false
	}
	var out []string
	for _, r := range rooms {
		if r.SiteID == site && r.Ward != "" && !slices.Contains(out, r.Ward) {
			out = append(out, r.Ward)
		}
	}
	slices.Sort(out)
	return out, true
}
