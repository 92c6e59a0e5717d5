package registry

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync/atomic"
	"time"

	"github.com/eldercare-iot/eldercare/device"
)

// Snapshot is an immutable in-memory copy of the registry for hot paths:
// ingest tags every reading with it and alerting looks up every event. All
// lookups are map hits or binary searches and do not allocate. A nil or empty
// Snapshot answers every lookup with "not found". Safe for concurrent use.
type Snapshot struct {
	at        time.Time
	sites     map[string]siteEntry
	beds      map[string]Bed
	rooms     map[string]Room // set by WithRooms
	residents map[string]Resident
	devices   map[string]Device
	kinds     map[string]time.Duration // kind -> report interval set in the registry
	behind    map[string][]string      // gateway id -> device ids registered behind it, sorted
	cards     map[string]string        // card id -> resident id
	bindings  map[string][]span        // device id -> spans sorted by from
}

type siteEntry struct {
	site Site
	loc  *time.Location
}

// span is one binding in unix ms; to is openEnd while open.
type span struct {
	from, to int64
	resident string
}

// Snapshot reads the whole registry in one read-only transaction (repeatable
// read on PostgreSQL) and returns it as a [Snapshot]. A site whose zone no
// longer loads gets time.UTC.
func (s *Store) Snapshot(ctx context.Context) (*Snapshot, error) {
	tx, err := s.readTx(ctx)
	if err != nil {
		return nil, fmt.Errorf("registry snapshot: begin: %w", err)
	}
	defer tx.Rollback()
	sites, err := queryAll(ctx, tx, selectSites, scanSite)
	if err != nil {
		return nil, fmt.Errorf("registry snapshot: sites: %w", err)
	}
	beds, err := queryAll(ctx, tx, selectBeds, scanBed)
	if err != nil {
		return nil, fmt.Errorf("registry snapshot: beds: %w", err)
	}
	residents, err := queryAll(ctx, tx, selectResidents, scanResident)
	if err == nil {
		err = s.attachCare(ctx, tx, residents)
	}
	if err != nil {
		return nil, fmt.Errorf("registry snapshot: residents: %w", err)
	}
	devices, err := queryAll(ctx, tx, selectDevices, scanDevice)
	if err == nil {
		err = s.attachLimits(ctx, tx, devices)
	}
	if err != nil {
		return nil, fmt.Errorf("registry snapshot: devices: %w", err)
	}
	cards, err := queryAll(ctx, tx, selectCards, scanCard)
	if err != nil {
		return nil, fmt.Errorf("registry snapshot: cards: %w", err)
	}
	bindings, err := s.bindings(ctx, tx, "")
	if err != nil {
		return nil, fmt.Errorf("registry snapshot: bindings: %w", err)
	}
	kinds, err := queryAll(ctx, tx, selectKinds, scanKind)
	if err != nil {
		return nil, fmt.Errorf("registry snapshot: kinds: %w", err)
	}
	rooms, err := queryAll(ctx, tx, selectRooms, scanRoom)
	if err != nil {
		return nil, fmt.Errorf("registry snapshot: rooms: %w", err)
	}
	return NewSnapshot(time.Now(), sites, beds, residents, devices, cards, bindings).WithKinds(kinds).WithRooms(rooms), nil
}

// WithRooms sets the rooms (names, wards) of a snapshot being built and
// returns it; use it only before the snapshot is shared.
func (sn *Snapshot) WithRooms(rooms []Room) *Snapshot {
	sn.rooms = make(map[string]Room, len(rooms))
	for _, r := range rooms {
		sn.rooms[r.ID] = r
	}
	return sn
}

// Room returns room id (its name, ward and display names); false when the
// snapshot has no such room (or was built without WithRooms).
func (sn *Snapshot) Room(id string) (Room, bool) {
	if sn == nil {
		return Room{}, false
	}
	r, ok := sn.rooms[id]
	return r, ok
}

// WithKinds sets the per-kind report intervals of a snapshot being built
// (see [KindSetting]) and returns it; use it only before the snapshot is
// shared.
func (sn *Snapshot) WithKinds(kinds []KindSetting) *Snapshot {
	for _, k := range kinds {
		if k.ReportInterval > 0 {
			sn.kinds[k.Kind] = k.ReportInterval
		}
	}
	return sn
}

// ReportInterval returns the expected report interval of a registered
// device: the device's own, else its kind's from the registry
// ([KindSetting]), else device.DefaultInterval of its kind and power. It
// returns false for a device the registry does not know.
func (sn *Snapshot) ReportInterval(deviceID string) (time.Duration, bool) {
	if sn == nil {
		return 0, false
	}
	d, ok := sn.devices[deviceID]
	if !ok {
		return 0, false
	}
	if d.ReportInterval > 0 {
		return d.ReportInterval, true
	}
	return sn.KindInterval(d.Kind, d.Power), true
}

// KindInterval returns the report interval of a device of kind and power
// that sets none of its own: the registry's [KindSetting] for the kind, else
// device.DefaultInterval.
func (sn *Snapshot) KindInterval(kind, power string) time.Duration {
	if sn != nil {
		if d, ok := sn.kinds[kind]; ok {
			return d
		}
	}
	return device.DefaultInterval(device.Kind(kind), device.Power(power))
}

// DevicesBehind returns the ids of the devices registered behind gateway
// gw (their GatewayID), sorted; nil when none. The slice is shared: do not
// modify it.
func (sn *Snapshot) DevicesBehind(gw string) []string {
	if sn == nil {
		return nil
	}
	return sn.behind[gw]
}

// NewSnapshot builds a [Snapshot] from plain lists, for tests and tools that
// have no database. at is when the data was read. Bindings of one device must
// not overlap; later duplicates of an id win.
func NewSnapshot(at time.Time, sites []Site, beds []Bed, residents []Resident, devices []Device, cards []MealCard, bindings []Binding) *Snapshot {
	sn := &Snapshot{
		at:        at,
		sites:     make(map[string]siteEntry, len(sites)),
		beds:      make(map[string]Bed, len(beds)),
		residents: make(map[string]Resident, len(residents)),
		devices:   make(map[string]Device, len(devices)),
		kinds:     map[string]time.Duration{},
		behind:    map[string][]string{},
		cards:     make(map[string]string, len(cards)),
		bindings:  make(map[string][]span),
	}
	for _, x := range sites {
		loc, err := time.LoadLocation(x.TimeZone)
		if err != nil || x.TimeZone == "" || x.TimeZone == "Local" {
			loc = time.UTC
		}
		sn.sites[x.ID] = siteEntry{site: x, loc: loc}
	}
	for _, x := range beds {
		sn.beds[x.ID] = x
	}
	for _, x := range residents {
		sn.residents[x.ID] = x
	}
	for _, x := range devices {
		sn.devices[x.ID] = x
	}
	for _, x := range sn.devices {
		if x.GatewayID != "" {
			sn.behind[x.GatewayID] = append(sn.behind[x.GatewayID], x.ID)
		}
	}
	for _, ids := range sn.behind {
		sort.Strings(ids)
	}
	for _, x := range cards {
		sn.cards[x.ID] = x.ResidentID
	}
	for _, b := range bindings {
		sn.bindings[b.DeviceID] = append(sn.bindings[b.DeviceID], span{
			from: b.From.UnixMilli(), to: endMS(b.To), resident: b.ResidentID,
		})
	}
	for _, spans := range sn.bindings {
		sort.Slice(spans, func(i, j int) bool { return spans[i].from < spans[j].from })
	}
	return sn
}

// At returns when the snapshot was read.
func (sn *Snapshot) At() time.Time {
	if sn == nil {
		return time.Time{}
	}
	return sn.at
}

// ResidentAt returns the resident the device was bound to at t: the binding
// whose [From, To) contains t, at millisecond resolution. It returns false
// when the device was unbound at t (alerting still raises the event, marked
// unassigned) or the bound resident is unknown. O(log n) in the device's
// bindings; it does not allocate.
func (sn *Snapshot) ResidentAt(deviceID string, t time.Time) (Resident, bool) {
	if sn == nil {
		return Resident{}, false
	}
	spans := sn.bindings[deviceID]
	ms := t.UnixMilli()
	// Find the last span with from <= ms.
	lo, hi := 0, len(spans)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if spans[m].from <= ms {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == 0 || ms >= spans[lo-1].to {
		return Resident{}, false
	}
	r, ok := sn.residents[spans[lo-1].resident]
	return r, ok
}

// Device returns a device by id.
func (sn *Snapshot) Device(id string) (Device, bool) {
	if sn == nil {
		return Device{}, false
	}
	d, ok := sn.devices[id]
	return d, ok
}

// Resident returns a resident by id.
func (sn *Snapshot) Resident(id string) (Resident, bool) {
	if sn == nil {
		return Resident{}, false
	}
	r, ok := sn.residents[id]
	return r, ok
}

// Site returns a site by id.
func (sn *Snapshot) Site(id string) (Site, bool) {
	if sn == nil {
		return Site{}, false
	}
	e, ok := sn.sites[id]
	return e.site, ok
}

// Location returns the site's time zone, or time.UTC for an unknown site.
func (sn *Snapshot) Location(siteID string) *time.Location {
	if sn == nil {
		return time.UTC
	}
	if e, ok := sn.sites[siteID]; ok {
		return e.loc
	}
	return time.UTC
}

// ResidentByCard returns the holder of a meal card. Cards have no validity
// period yet, so t (the time the card was read) only matters in that the
// holder must exist; it is part of the signature so that card validity can be
// added without changing callers.
func (sn *Snapshot) ResidentByCard(cardID string, t time.Time) (Resident, bool) {
	_ = t
	if sn == nil {
		return Resident{}, false
	}
	id, ok := sn.cards[cardID]
	if !ok {
		return Resident{}, false
	}
	r, ok := sn.residents[id]
	return r, ok
}

// BedOf returns the bed of a resident; false when the resident is unknown or
// has no bed (home care).
func (sn *Snapshot) BedOf(residentID string) (Bed, bool) {
	if sn == nil {
		return Bed{}, false
	}
	r, ok := sn.residents[residentID]
	if !ok || r.BedID == "" {
		return Bed{}, false
	}
	b, ok := sn.beds[r.BedID]
	return b, ok
}

// Cache holds the current [Snapshot] of a [Store] and refreshes it. Readers
// call Current on every reading or event; it is one atomic load.
type Cache struct {
	store *Store
	every time.Duration
	cur   atomic.Pointer[Snapshot]
}

// NewCache returns a cache over store that [Cache.Run] refreshes every
// `every` (a non-positive value means one minute). Until the first refresh,
// Current returns an empty snapshot.
func NewCache(store *Store, every time.Duration) *Cache {
	if every <= 0 {
		every = time.Minute
	}
	c := &Cache{store: store, every: every}
	c.cur.Store(NewSnapshot(time.Time{}, nil, nil, nil, nil, nil, nil))
	return c
}

// Current returns the latest snapshot; never nil.
func (c *Cache) Current() *Snapshot { return c.cur.Load() }

// Refresh reads a new snapshot and publishes it. On error the previous
// snapshot stays current.
func (c *Cache) Refresh(ctx context.Context) error {
	sn, err := c.store.Snapshot(ctx)
	if err != nil {
		return err
	}
	c.cur.Store(sn)
	return nil
}

// Run refreshes at once, returning that error so a service fails at start-up
// rather than tagging with an empty registry, then every period until ctx is
// cancelled, when it returns nil. Later refresh errors are logged with
// log/slog and the previous snapshot is kept.
func (c *Cache) Run(ctx context.Context) error {
	if err := c.Refresh(ctx); err != nil {
		return err
	}
	tick := time.NewTicker(c.every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if err := c.Refresh(ctx); err != nil && ctx.Err() == nil {
				slog.Warn("registry refresh failed; keeping previous snapshot",
					"err", err, "snapshot_at", c.Current().At())
			}
		}
	}
}

// CardHolders returns the residents who hold a meal card, resident id ->
// site id. The map is new on every call.
func (sn *Snapshot) CardHolders() map[string]string {
	out := map[string]string{}
	if sn == nil {
		return out
	}
	for _, id := range sn.cards {
		if r, ok := sn.residents[id]; ok {
			out[id] = r.SiteID
		}
	}
	return out
}
