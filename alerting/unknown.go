// Unknown devices (issue 13, onboarding): a device that sends data but is
// not in the registry still has its safety events raised (unassigned); it
// is also remembered here, with its last message, so an admin can adopt
// it from the dashboard. The list is bounded (MaxUnknownDevices, the
// least recently heard dropped first) in memory and in the alert store
// (table alert_unknown_devices, written at most every unknownWriteEvery
// per device), so the dashboard role reads it from the store.

package alerting

import (
	"container/list"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/eldercare-iot/eldercare/device"
)

// MaxUnknownDevices bounds the list of unknown devices, in memory and in
// the alert store.
const MaxUnknownDevices = 500

// unknownWriteEvery is the shortest time between two store writes of one
// unknown device (its first message is written at once).
const unknownWriteEvery = 15 * time.Second

// unknownWritesPerSecond and unknownWriteBurst bound the store writes of
// the list across all devices: a flood of made-up device ids (a
// misconfigured gateway, a hostile client, the 10,000 unregistered ids of
// `eldercare-bench ingest --only up`) was an upsert per message, a fifth of
// `up`'s CPU (docs/benchmarks.md, 2026-12-07 evening). The in-memory list
// still takes every message; a device whose write is refused is written at
// a later message. A site that brings 100 new devices online at once sees
// them all in the store at once, 500 within 20 s.
const (
	unknownWritesPerSecond = 20
	unknownWriteBurst      = 100
)

// maxUnknownSummary bounds UnknownDevice.LastMessage, in bytes.
const maxUnknownSummary = 300

// UnknownDevice is a device heard from but not registered. Times are
// receive times (UTC); Kind is what the device announced in its status
// ("" unknown); LastMessage a summary of its last telemetry ("hr_bpm=72
// spo2_pct=97") or event ("event alarm_test").
type UnknownDevice struct {
	Site        string    `json:"site"`
	Device      string    `json:"device"`
	Kind        string    `json:"kind,omitempty"`
	FirstSeen   time.Time `json:"first_seen"`
	LastSeen    time.Time `json:"last_seen"`
	Messages    int64     `json:"messages"`
	LastMessage string    `json:"last_message"`
}

type unknownEntry struct {
	UnknownDevice
	written time.Time
	elem    *list.Element // in unknownTracker.recent
}

// unknownTracker is the in-memory list, guarded by mu. Its store writes
// are made by one background writer (drainUnknown) from pending, so a
// slow or locked alert_unknown_devices table never holds up the message
// (a fall or SOS of an unregistered device, or the readings behind it).
type unknownTracker struct {
	mu      sync.Mutex
	byID    map[string]*unknownEntry
	recent  *list.List               // of *unknownEntry, the most recently heard first
	pending map[string]UnknownDevice // to write, by device id (at most MaxUnknownDevices)
	writing bool                     // drainUnknown runs
	// writes bounds the store writes (unknownWritesPerSecond); written
	// counts them (eldercare_alerting_unknown_device_writes_total).
	writes  *rate.Limiter
	written atomic.Int64
}

func newUnknownTracker() *unknownTracker {
	return &unknownTracker{byID: map[string]*unknownEntry{}, recent: list.New(), pending: map[string]UnknownDevice{},
		writes: rate.NewLimiter(unknownWritesPerSecond, unknownWriteBurst)}
}

func (u *unknownTracker) len() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.byID)
}

// summarize renders values (or the event) as a short last message.
func summarize(values map[string]float64, ev device.EventType) string {
	if ev != "" {
		return "event " + string(ev)
	}
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(values)) {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%g", k, values[k])
		if b.Len() > maxUnknownSummary {
			break
		}
	}
	s := b.String()
	if len(s) > maxUnknownSummary {
		s = s[:maxUnknownSummary] + "…"
	}
	return s
}

// noteUnknown remembers a message of dev when the registry does not know
// it (no directory: nothing is tracked), and forgets a tracked device that
// has since been registered. It never fails or blocks the message: the
// store write is made in the background (drainUnknown); an error there is
// logged and retried at the next message.
func (s *Service) noteUnknown(ctx context.Context, site, dev string, values map[string]float64, ev device.EventType) {
	d := s.directory()
	if d == nil {
		return
	}
	u := s.cmds.unknown
	if _, ok := d.Device(dev); ok {
		u.mu.Lock()
		e, tracked := u.byID[dev]
		if tracked {
			u.recent.Remove(e.elem)
		}
		delete(u.byID, dev)
		delete(u.pending, dev)
		u.mu.Unlock()
		if tracked {
			if err := s.m.ForgetUnknownDevice(ctx, dev); err != nil {
				s.log.Warn("alerting: forget adopted device", "device", dev, "err", err)
			}
		}
		return
	}
	now := s.cfg.Now().UTC()
	s.rules.mu.Lock()
	kind := s.rules.kinds[dev]
	s.rules.mu.Unlock()
	u.mu.Lock()
	e := u.byID[dev]
	if e == nil {
		if len(u.byID) >= MaxUnknownDevices { // drop the least recently heard
			oldest := u.recent.Remove(u.recent.Back()).(*unknownEntry)
			delete(u.byID, oldest.Device)
		}
		e = &unknownEntry{UnknownDevice: UnknownDevice{Device: dev, FirstSeen: now}}
		e.elem = u.recent.PushFront(e)
		u.byID[dev] = e
	} else {
		u.recent.MoveToFront(e.elem)
	}
	e.Site, e.LastSeen, e.LastMessage = site, now, summarize(values, ev)
	if kind != "" {
		e.Kind = kind
	}
	e.Messages++
	write := e.written.IsZero() || now.Sub(e.written) >= unknownWriteEvery
	_, queued := u.pending[dev]
	// An event (a fall, an SOS) is not held back by the write budget: a
	// pendant that sends nothing else would otherwise never reach the
	// stored list, and each event costs an alert anyway.
	if write && !queued && (len(u.pending) >= MaxUnknownDevices || ev == "" && !u.writes.AllowN(now, 1)) {
		write = false // the writer is behind, or too many devices are new: written at a later message
	}
	start := false
	if write {
		e.written = now
		u.pending[dev] = e.UnknownDevice
		start, u.writing = !u.writing, true
	}
	u.mu.Unlock()
	if start {
		go s.drainUnknown(context.WithoutCancel(ctx))
	}
}

// drainUnknown writes the pending unknown devices to the store until none
// is left. A failed write is logged; the device is written again at its
// next message.
func (s *Service) drainUnknown(ctx context.Context) {
	u := s.cmds.unknown
	for {
		u.mu.Lock()
		if len(u.pending) == 0 {
			u.writing = false
			u.mu.Unlock()
			return
		}
		batch := u.pending
		u.pending = map[string]UnknownDevice{}
		u.mu.Unlock()
		for _, x := range batch {
			wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			err := s.m.putUnknownDevice(wctx, x)
			cancel()
			u.written.Add(1)
			if err != nil {
				s.log.Warn("alerting: record unknown device", "device", x.Device, "err", err)
				u.mu.Lock()
				if e := u.byID[x.Device]; e != nil {
					e.written = time.Time{}
				}
				u.mu.Unlock()
			}
		}
	}
}

// UnknownCollectors are the metrics of the unknown-device list:
// eldercare_alerting_unknown_devices (gauge, devices in the in-memory
// list, at most MaxUnknownDevices). The caller registers them.
func (s *Service) UnknownCollectors() []prometheus.Collector {
	u := s.cmds.unknown
	return []prometheus.Collector{prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "eldercare_alerting_unknown_devices",
		Help: fmt.Sprintf("Devices heard from but not in the registry, kept for adoption from the admin pages (at most %d; the least recently heard are dropped).", MaxUnknownDevices)},
		func() float64 { return float64(u.len()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "eldercare_alerting_unknown_device_writes_total",
			Help: fmt.Sprintf("Store writes of the unknown-device list (alert_unknown_devices), failed ones included; at most %d a second after a burst of %d, whatever the number of unknown devices.", unknownWritesPerSecond, unknownWriteBurst)},
			func() float64 { return float64(u.written.Load()) })}
}

// putUnknownDevice upserts x into alert_unknown_devices and keeps the
// table to the MaxUnknownDevices most recently heard devices.
func (m *Manager) putUnknownDevice(ctx context.Context, x UnknownDevice) error {
	_, err := m.db.ExecContext(ctx, m.db.Rebind(`INSERT INTO alert_unknown_devices (device_id, site_id, kind, first_ms, last_ms, messages, last_message)
		VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (device_id) DO UPDATE SET site_id = excluded.site_id, kind = excluded.kind, last_ms = excluded.last_ms,
		messages = excluded.messages, last_message = excluded.last_message`),
		x.Device, x.Site, x.Kind, x.FirstSeen.UnixMilli(), x.LastSeen.UnixMilli(), x.Messages, x.LastMessage)
	if err != nil {
		return fmt.Errorf("record unknown device %s: %w", x.Device, err)
	}
	_, err = m.db.ExecContext(ctx, m.db.Rebind(`DELETE FROM alert_unknown_devices WHERE last_ms < (
		SELECT last_ms FROM alert_unknown_devices ORDER BY last_ms DESC LIMIT 1 OFFSET ?)`), MaxUnknownDevices-1)
	if err != nil {
		return fmt.Errorf("trim unknown devices: %w", err)
	}
	return nil
}

// UnknownDevices returns the devices heard from but not registered, most
// recently heard first (at most MaxUnknownDevices). A device registered
// since may still be listed until its next message; callers filter with
// the registry.
func (m *Manager) UnknownDevices(ctx context.Context) ([]UnknownDevice, error) {
	rows, err := m.db.QueryContext(ctx, `SELECT device_id, site_id, kind, first_ms, last_ms, messages, last_message
		FROM alert_unknown_devices ORDER BY last_ms DESC, device_id`)
	if err != nil {
		return nil, fmt.Errorf("list unknown devices: %w", err)
	}
	defer rows.Close()
	var out []UnknownDevice
	for rows.Next() {
		var x UnknownDevice
		var first, last int64
		if err := rows.Scan(&x.Device, &x.Site, &x.Kind, &first, &last, &x.Messages, &x.LastMessage); err != nil {
			return nil, fmt.Errorf("list unknown devices: %w", err)
		}
		x.FirstSeen, x.LastSeen = time.UnixMilli(first).UTC(), time.UnixMilli(last).UTC()
		out = append(out, x)
	}
	return out, rows.Err()
}

// ForgetUnknownDevice removes dev from the list (it was adopted).
func (m *Manager) ForgetUnknownDevice(ctx context.Context, dev string) error {
	if _, err := m.db.ExecContext(ctx, m.db.Rebind(`DELETE FROM alert_unknown_devices WHERE device_id = ?`), dev); err != nil {
		return fmt.Errorf("forget unknown device %s: %w", dev, err)
	}
	return nil
}
