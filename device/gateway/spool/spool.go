// Package spool is the gateway's store-and-forward queue on disk: every
// reading and event a source produces is committed here before the source
// is acknowledged, and the uplink deletes it only after the broker's PUBACK.
//
// The store is one SQLite file (modernc.org/sqlite through internal/sqldb,
// WAL journal). A commit survives a crash of the process (kill -9) with the
// default synchronous=NORMAL; with Config.Sync (synchronous=FULL) it also
// survives a power cut, at the price of one fsync per commit.
//
// Identity. Open increments a boot counter kept in the file. Every entry is
// stamped when it enters the spool with that boot, a message id (strictly
// increasing per device and boot, shared by readings and events) and a
// sequence number (strictly increasing per device, boot and channel:
// readings and events count apart), exactly as protocol v1 wants them
// (docs/protocol.md). They never change on replay, so ingest deduplicates a
// reading by (device, boot, seq).
//
// Bound and drop policy. The spool holds at most Config.MaxEntries entries
// and Config.MaxBytes bytes (entry size = its encoded body plus its device id
// plus EntryOverhead). When an Add would exceed either bound, the OLDEST
// READINGS are deleted first, in the same transaction; events are deleted
// (oldest first) only when no reading remains. Every dropped entry is counted
// in eldercare_gateway_spool_dropped_total{kind} and logged.
package spool

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/internal/sqldb"
)

// Kind tells a reading from an event.
type Kind int

// The kinds of entry.
const (
	KindReading Kind = 0
	KindEvent   Kind = 1
)

func (k Kind) String() string {
	if k == KindEvent {
		return "event"
	}
	return "reading"
}

// EntryOverhead is the fixed size in bytes charged for every entry on top of
// its body and device id (row id, boot, id, seq, ts and SQLite's row header).
const EntryOverhead = 64

// Defaults of Config.
const (
	// DefaultMaxBytes bounds the spool at 256 MiB: at 1,000 readings/s of
	// about 100 bytes each that is roughly 45 minutes, at the 1 reading/s of
	// a typical bed that is weeks.
	DefaultMaxBytes int64 = 256 << 20
	// DefaultMaxEntries bounds the spool at 2 million entries.
	DefaultMaxEntries = 2_000_000
)

// Config configures a spool.
type Config struct {
	// Path is the SQLite file; its directory is created.
	Path string
	// MaxBytes bounds the spool's size in bytes (see the package doc for how
	// an entry is charged); 0 = DefaultMaxBytes.
	MaxBytes int64
	// MaxEntries bounds the number of entries; 0 = DefaultMaxEntries.
	MaxEntries int
	// Sync makes every commit durable across a power cut (SQLite
	// synchronous=FULL). Without it a commit survives a process crash.
	Sync bool
}

// Validate reports every problem with c.
func (c Config) Validate() error {
	var errs []error
	if c.Path == "" {
		errs = append(errs, errors.New("spool path: required"))
	}
	if c.MaxBytes < 0 {
		errs = append(errs, fmt.Errorf("spool max bytes: %d is negative", c.MaxBytes))
	}
	if c.MaxEntries < 0 {
		errs = append(errs, fmt.Errorf("spool max entries: %d is negative", c.MaxEntries))
	}
	return errors.Join(errs...)
}

// Entry is one spooled reading or event with the identity it got when it
// entered the spool.
type Entry struct {
	// Pos orders the entries: oldest first. It is the key for Delete.
	Pos    int64
	Kind   Kind
	Device string
	Boot   uint32
	ID     uint64
	Seq    uint64
	// TS is the device time in ms since the Unix epoch.
	TS int64
	// Values of a reading (field name -> finite number).
	Values map[string]float64
	// Type and Attrs of an event.
	Type  device.EventType
	Attrs map[string]any
	// Size is what the entry is charged against MaxBytes.
	Size int64
}

// body is what is stored in the body column, as JSON.
type body struct {
	Values map[string]float64 `json:"values,omitempty"`
	Type   device.EventType   `json:"type,omitempty"`
	Attrs  map[string]any     `json:"attrs,omitempty"`
}

// DecodeBody parses a stored body into e's Values, Type and Attrs. It
// rejects anything the spool would not have written: wrong JSON, a reading
// without values, non-finite values or an event without a type.
func DecodeBody(kind Kind, b []byte, e *Entry) error {
	var bd body
	if err := json.Unmarshal(b, &bd); err != nil {
		return fmt.Errorf("decode spooled %s: %w", kind, err)
	}
	switch kind {
	case KindReading:
		if len(bd.Values) == 0 {
			return fmt.Errorf("decode spooled reading: no values")
		}
		for k, v := range bd.Values {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return fmt.Errorf("decode spooled reading: value %s is not finite", k)
			}
		}
	case KindEvent:
		if bd.Type == "" {
			return fmt.Errorf("decode spooled event: no type")
		}
	default:
		return fmt.Errorf("decode spooled entry: unknown kind %d", kind)
	}
	e.Values, e.Type, e.Attrs = bd.Values, bd.Type, bd.Attrs
	return nil
}

// counters are the per-device, per-boot message id and sequence numbers.
type counters struct {
	id, readingSeq, eventSeq uint64
}

// Spool is safe for concurrent use.
type Spool struct {
	db  *sqldb.DB
	cfg Config
	log *slog.Logger
	now func() time.Time

	boot uint32

	mu       sync.Mutex
	counters map[string]*counters
	entries  int64 // all entries
	readings int64 // reading entries
	bytes    int64

	depth   prometheus.Gauge
	size    prometheus.Gauge
	dropped *prometheus.CounterVec
	added   *prometheus.CounterVec
}

const schema = `
CREATE TABLE IF NOT EXISTS meta (
	key   TEXT PRIMARY KEY,
	value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS entries (
	pos    INTEGER PRIMARY KEY AUTOINCREMENT,
	kind   INTEGER NOT NULL,
	device TEXT    NOT NULL,
	boot   INTEGER NOT NULL,
	id     INTEGER NOT NULL,
	seq    INTEGER NOT NULL,
	ts     INTEGER NOT NULL,
	body   BLOB    NOT NULL,
	size   INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_kind_pos ON entries (kind, pos);
CREATE TABLE IF NOT EXISTS local_alarms (
	device   TEXT    PRIMARY KEY,
	type     TEXT    NOT NULL,
	since_ms INTEGER NOT NULL
);
`

// Open opens (or creates) the spool at cfg.Path, increments its boot
// counter and registers its metrics on reg (nil: not registered):
// eldercare_gateway_spool_depth (entries), _bytes (gauges), _dropped_total{kind} and
// _added_total{kind} (counters).
//
// The new boot is max(stored boot + 1, now in Unix seconds), so it still
// grows if the spool file is lost while the clock is right.
func Open(ctx context.Context, cfg Config, reg prometheus.Registerer, log *slog.Logger) (*Spool, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.MaxEntries == 0 {
		cfg.MaxEntries = DefaultMaxEntries
	}
	if log == nil {
		log = slog.Default()
	}
	mode := "NORMAL"
	if cfg.Sync {
		mode = "FULL"
	}
	dsn := "sqlite:" + cfg.Path + "?_pragma=synchronous(" + mode + ")"
	db, err := sqldb.Open(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("open spool %s: %w", cfg.Path, err)
	}
	// One writer at a time; readers share the same connection too, which
	// keeps the counters and the table in step.
	db.SetMaxOpenConns(1)
	s := &Spool{db: db, cfg: cfg, log: log, now: time.Now, counters: map[string]*counters{}}
	if err := s.init(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open spool %s: %w", cfg.Path, err)
	}
	s.depth = prometheus.NewGauge(prometheus.GaugeOpts{Name: "eldercare_gateway_spool_depth", Help: "Readings and events in the gateway's spool, not yet acknowledged by the broker."})
	s.size = prometheus.NewGauge(prometheus.GaugeOpts{Name: "eldercare_gateway_spool_bytes", Help: "Size of the gateway's spool in bytes, as charged against its bound."})
	s.dropped = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "eldercare_gateway_spool_dropped_total", Help: "Entries dropped from the full spool (oldest readings first, events only when no reading remains), by kind."}, []string{"kind"})
	s.added = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "eldercare_gateway_spool_added_total", Help: "Entries committed to the spool, by kind."}, []string{"kind"})
	for _, k := range []string{"reading", "event"} {
		s.dropped.WithLabelValues(k)
		s.added.WithLabelValues(k)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{s.depth, s.size, s.dropped, s.added} {
			if err := reg.Register(c); err != nil {
				db.Close()
				return nil, fmt.Errorf("register spool metrics: %w", err)
			}
		}
	}
	s.gauges()
	return s, nil
}

func (s *Spool) init(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, schema); err != nil {
		return fmt.Errorf("create tables: %w", err)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()
	var boot int64
	if err := tx.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'boot'`).Scan(&boot); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("read boot counter: %w", err)
	}
	boot = max(boot+1, time.Now().Unix())
	if boot > math.MaxUint32 {
		return fmt.Errorf("boot counter %d overflows 2^32-1", boot)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES ('boot', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`, boot); err != nil {
		return fmt.Errorf("write boot counter: %w", err)
	}
	var n, r, b sql.NullInt64
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(kind = 0), 0), COALESCE(SUM(size), 0) FROM entries`).Scan(&n, &r, &b); err != nil {
		return fmt.Errorf("count entries: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit boot counter: %w", err)
	}
	s.boot = uint32(boot)
	s.entries, s.readings, s.bytes = n.Int64, r.Int64, b.Int64
	return nil
}

// Boot is this run's boot counter.
func (s *Spool) Boot() uint32 { return s.boot }

// Len returns the number of entries and their size in bytes.
func (s *Spool) Len() (entries int64, bytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.entries, s.bytes
}

// Close closes the file.
func (s *Spool) Close() error { return s.db.Close() }

// AddReading commits a reading of dev taken at ts (device time) and returns
// it with its identity. values must be non-empty and finite. When it
// returns nil the reading is on disk (see Config.Sync for power cuts).
func (s *Spool) AddReading(ctx context.Context, dev string, ts time.Time, values map[string]float64) (Entry, error) {
	if len(values) == 0 {
		return Entry{}, fmt.Errorf("spool reading of %s: no values", dev)
	}
	for k, v := range values {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return Entry{}, fmt.Errorf("spool reading of %s: value %s is %g, not a finite number", dev, k, v)
		}
	}
	return s.add(ctx, Entry{Kind: KindReading, Device: dev, TS: ts.UnixMilli(), Values: values})
}

// AddEvent commits an event of dev at ts (device time) and returns it with
// its identity.
func (s *Spool) AddEvent(ctx context.Context, dev string, ts time.Time, typ device.EventType, attrs map[string]any) (Entry, error) {
	if typ == "" {
		return Entry{}, fmt.Errorf("spool event of %s: no type", dev)
	}
	return s.add(ctx, Entry{Kind: KindEvent, Device: dev, TS: ts.UnixMilli(), Type: typ, Attrs: attrs})
}

func (s *Spool) add(ctx context.Context, e Entry) (Entry, error) {
	if err := device.ValidateID("device", e.Device); err != nil {
		return Entry{}, fmt.Errorf("spool %s: %w", e.Kind, err)
	}
	b, err := json.Marshal(body{Values: e.Values, Type: e.Type, Attrs: e.Attrs})
	if err != nil {
		return Entry{}, fmt.Errorf("spool %s of %s: encode: %w", e.Kind, e.Device, err)
	}
	e.Size = int64(len(b) + len(e.Device) + EntryOverhead)
	if e.Size > s.cfg.MaxBytes {
		return Entry{}, fmt.Errorf("spool %s of %s: %d bytes do not fit a spool of %d bytes", e.Kind, e.Device, e.Size, s.cfg.MaxBytes)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.counters[e.Device]
	if c == nil {
		c = &counters{}
		s.counters[e.Device] = c
	}
	e.Boot = s.boot
	e.ID = c.id + 1
	if e.Kind == KindReading {
		e.Seq = c.readingSeq + 1
	} else {
		e.Seq = c.eventSeq + 1
	}

	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return Entry{}, fmt.Errorf("spool %s of %s: begin: %w", e.Kind, e.Device, err)
	}
	defer tx.Rollback()
	err = tx.QueryRowContext(ctx, `INSERT INTO entries (kind, device, boot, id, seq, ts, body, size) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING pos`,
		int(e.Kind), e.Device, int64(e.Boot), int64(e.ID), int64(e.Seq), e.TS, b, e.Size).Scan(&e.Pos)
	if err != nil {
		return Entry{}, fmt.Errorf("spool %s of %s: insert: %w", e.Kind, e.Device, err)
	}
	entries, readings, bytes := s.entries+1, s.readings, s.bytes+e.Size
	if e.Kind == KindReading {
		readings++
	}
	var drops []dropped
	for entries > int64(s.cfg.MaxEntries) || bytes > s.cfg.MaxBytes {
		kind := KindReading
		if readings == 0 {
			kind = KindEvent
		}
		d, err := dropOldest(ctx, tx, kind)
		if err != nil {
			return Entry{}, fmt.Errorf("spool %s of %s: drop oldest %s: %w", e.Kind, e.Device, kind, err)
		}
		drops = append(drops, d)
		entries--
		bytes -= d.size
		if kind == KindReading {
			readings--
		}
	}
	if err := tx.Commit(); err != nil {
		return Entry{}, fmt.Errorf("spool %s of %s: commit: %w", e.Kind, e.Device, err)
	}
	// Committed: the identity is used, whatever was dropped.
	c.id = e.ID
	if e.Kind == KindReading {
		c.readingSeq = e.Seq
	} else {
		c.eventSeq = e.Seq
	}
	s.entries, s.readings, s.bytes = entries, readings, bytes
	s.added.WithLabelValues(e.Kind.String()).Inc()
	for _, d := range drops {
		s.dropped.WithLabelValues(d.kind.String()).Inc()
		lvl := slog.LevelWarn
		if d.kind == KindEvent {
			lvl = slog.LevelError
		}
		s.log.Log(ctx, lvl, "spool full: dropped the oldest "+d.kind.String(), "device", d.device, "boot", d.boot, "seq", d.seq,
			"ts", time.UnixMilli(d.ts).UTC(), "max_entries", s.cfg.MaxEntries, "max_bytes", s.cfg.MaxBytes)
	}
	s.gaugesLocked()
	return e, nil
}

type dropped struct {
	kind   Kind
	device string
	boot   uint32
	seq    uint64
	ts     int64
	size   int64
}

func dropOldest(ctx context.Context, tx *sql.Tx, kind Kind) (dropped, error) {
	d := dropped{kind: kind}
	var pos, boot, seq int64
	err := tx.QueryRowContext(ctx, `SELECT pos, device, boot, seq, ts, size FROM entries WHERE kind = ? ORDER BY pos LIMIT 1`, int(kind)).
		Scan(&pos, &d.device, &boot, &seq, &d.ts, &d.size)
	if err != nil {
		return d, err
	}
	d.boot, d.seq = uint32(boot), uint64(seq)
	_, err = tx.ExecContext(ctx, `DELETE FROM entries WHERE pos = ?`, pos)
	return d, err
}

// Peek returns up to n of the oldest entries, oldest first, without removing
// them. An entry whose stored body cannot be decoded (a damaged file) is
// returned with an error naming it; nothing is skipped silently.
func (s *Spool) Peek(ctx context.Context, n int) ([]Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rows, err := s.db.QueryContext(ctx, `SELECT pos, kind, device, boot, id, seq, ts, body, size FROM entries ORDER BY pos LIMIT ?`, n)
	if err != nil {
		return nil, fmt.Errorf("read spool: %w", err)
	}
	defer rows.Close()
	var out []Entry
	for rows.Next() {
		var e Entry
		var kind int
		var boot, id, seq int64
		var b []byte
		if err := rows.Scan(&e.Pos, &kind, &e.Device, &boot, &id, &seq, &e.TS, &b, &e.Size); err != nil {
			return nil, fmt.Errorf("read spool: %w", err)
		}
		e.Kind, e.Boot, e.ID, e.Seq = Kind(kind), uint32(boot), uint64(id), uint64(seq)
		if err := DecodeBody(e.Kind, b, &e); err != nil {
			return out, fmt.Errorf("spool entry %d (%s boot %d seq %d): %w", e.Pos, e.Device, e.Boot, e.Seq, err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read spool: %w", err)
	}
	return out, nil
}

// Delete removes the entries at the given positions (after the broker
// acknowledged them). Positions no longer present (dropped meanwhile) are
// ignored.
func (s *Spool) Delete(ctx context.Context, pos ...int64) error {
	if len(pos) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("delete from spool: begin: %w", err)
	}
	defer tx.Rollback()
	var n, r, b int64
	for chunk := range chunks(pos, 500) {
		q := `DELETE FROM entries WHERE pos IN (?` + strings.Repeat(",?", len(chunk)-1) + `) RETURNING kind, size`
		args := make([]any, len(chunk))
		for i, p := range chunk {
			args[i] = p
		}
		rows, err := tx.QueryContext(ctx, q, args...)
		if err != nil {
			return fmt.Errorf("delete from spool: %w", err)
		}
		for rows.Next() {
			var kind int
			var size int64
			if err := rows.Scan(&kind, &size); err != nil {
				rows.Close()
				return fmt.Errorf("delete from spool: %w", err)
			}
			n++
			b += size
			if Kind(kind) == KindReading {
				r++
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("delete from spool: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("delete from spool: commit: %w", err)
	}
	s.entries -= n
	s.readings -= r
	s.bytes -= b
	s.gaugesLocked()
	return nil
}

func chunks(p []int64, n int) func(func([]int64) bool) {
	return func(yield func([]int64) bool) {
		for len(p) > 0 {
			k := min(n, len(p))
			if !yield(p[:k]) {
				return
			}
			p = p[k:]
		}
	}
}

func (s *Spool) gauges() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gaugesLocked()
}

func (s *Spool) gaugesLocked() {
	s.depth.Set(float64(s.entries))
	s.size.Set(float64(s.bytes))
}

// HeldAlarm is a local alarm the gateway holds for a device (a fall or SOS
// not yet acknowledged on the platform), kept in the spool file so that a
// restart or a power cut of the gateway does not silence it. Since is the
// gateway's wall time when it took the event.
type HeldAlarm struct {
	Device string
	Type   device.EventType
	Since  time.Time
}

// HoldAlarm records dev's local alarm; an alarm already held for dev is
// kept as it is (its first type and time).
func (s *Spool) HoldAlarm(ctx context.Context, dev string, typ device.EventType, since time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.db.ExecContext(ctx, `INSERT INTO local_alarms (device, type, since_ms) VALUES (?, ?, ?) ON CONFLICT (device) DO NOTHING`,
		dev, string(typ), since.UnixMilli()); err != nil {
		return fmt.Errorf("hold local alarm of %s: %w", dev, err)
	}
	return nil
}

// ClearAlarm forgets dev's local alarm (none held: no error).
func (s *Spool) ClearAlarm(ctx context.Context, dev string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.db.ExecContext(ctx, `DELETE FROM local_alarms WHERE device = ?`, dev); err != nil {
		return fmt.Errorf("clear local alarm of %s: %w", dev, err)
	}
	return nil
}

// HeldAlarms returns the local alarms held, by device id.
func (s *Spool) HeldAlarms(ctx context.Context) ([]HeldAlarm, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rows, err := s.db.QueryContext(ctx, `SELECT device, type, since_ms FROM local_alarms ORDER BY device`)
	if err != nil {
		return nil, fmt.Errorf("read local alarms: %w", err)
	}
	defer rows.Close()
	var out []HeldAlarm
	for rows.Next() {
		var a HeldAlarm
		var typ string
		var ms int64
		if err := rows.Scan(&a.Device, &typ, &ms); err != nil {
			return nil, fmt.Errorf("read local alarms: %w", err)
		}
		a.Type, a.Since = device.EventType(typ), time.UnixMilli(ms)
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read local alarms: %w", err)
	}
	return out, nil
}
