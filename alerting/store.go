// Stage 3, store: the Manager, the alert lifecycle (open, repeat, acknowledge, resolve, comment) with a
// history entry and an outbox row written in each change's transaction.

package alerting

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/eldercare-iot/eldercare/internal/sqldb"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// VersionTable is the goose version table of the alert store.
const VersionTable = "alerting_version"

// ErrNotFound is returned, wrapped, when an alert does not exist.
var ErrNotFound = errors.New("alert not found")

// ErrConflict is returned, wrapped, when a change does not fit the alert's
// status, e.g. resolving a resolved alert or acknowledging an acknowledged
// one.
var ErrConflict = errors.New("alert status conflict")

// Manager is the alert store and its public operations. It is safe for
// concurrent use, and several processes (dashboards, alerting replicas) may
// open the same database: every change is written together with its history
// entry and outbox row in one transaction, and uniqueness of open alerts is
// enforced by the database.
type Manager struct {
	db  *sqldb.DB
	log *slog.Logger
	now func() time.Time

	// wake is closed (and replaced) after an outbox row was written, so
	// every in-process delivery worker delivers it at once.
	wakeMu sync.Mutex
	wake   chan struct{}

	// settings caches the live settings (see settings.go).
	settings settingsCache
	// ackKey caches the acknowledge link key (acklink.go).
	ackKey ackKey

	// writeMu serializes this process's write transactions on SQLite,
	// which has one writer at a time: goroutines queue here in order
	// instead of in SQLite's busy handler, which sleeps up to 100 ms
	// between retries (a fall's transaction waiting behind delivery
	// bookkeeping). Unused on PostgreSQL.
	writeMu sync.Mutex

	metrics metricsBox // set by RegisterMetrics (metrics.go)

	// commitHooks holds, per transaction of tx, what runs once it
	// committed (onCommit): a rolled-back attempt, retried by durably,
	// must not count twice.
	commitHooks sync.Map // *sql.Tx -> *[]func()
}

// lockWrites takes the SQLite write mutex (see writeMu) and returns its
// release; a no-op on PostgreSQL.
func (m *Manager) lockWrites() func() {
	if m.db.Dialect != sqldb.SQLite {
		return func() {}
	}
	m.writeMu.Lock()
	return m.writeMu.Unlock
}

// OpenManager runs the alert store's migrations (version table
// alerting_version) on db and returns the manager. db may be shared with
// other components.
func OpenManager(ctx context.Context, db *sqldb.DB, log *slog.Logger) (*Manager, error) {
	if log == nil {
		log = slog.Default()
	}
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return nil, fmt.Errorf("alert store migrations: %w", err)
	}
	if err := db.Migrate(ctx, sub, VersionTable); err != nil {
		return nil, fmt.Errorf("alert store: %w", err)
	}
	return &Manager{db: db, log: log, now: time.Now, wake: make(chan struct{})}, nil
}

// Filter selects alerts for [Manager.List]. Zero fields select everything.
type Filter struct {
	// Status is a set of statuses (open, acknowledged, resolved).
	Status   []string
	Site     string
	Resident string
	// Limit caps the result; 0 means 100. The most severe alerts come
	// first (see [Manager.List]), so the limit never hides a critical alert
	// behind less severe ones.
	Limit int
}

// severityRank orders alerts most severe first in SQL (unknown severities,
// which the schema forbids, last).
const severityRank = `CASE severity WHEN 'critical' THEN 0 WHEN 'high' THEN 1 WHEN 'warning' THEN 2 ELSE 3 END`

const alertColumns = `id, site_id, resident_id, device_id, type, severity, status, opened_ms,
	acknowledged_ms, acknowledged_by, resolved_ms, resolved_by, outcome, note, detail, value_num, repeat_count, last_occurred_ms`

type scanner interface{ Scan(dest ...any) error }

func scanAlert(s scanner) (Alert, error) {
	var (
		a               Alert
		resident        sql.NullString
		opened          int64
		acked, resolved sql.NullInt64
		value           sql.NullFloat64
		last            sql.NullInt64
	)
	err := s.Scan(&a.ID, &a.Site, &resident, &a.Device, &a.Type, &a.Severity, &a.Status, &opened,
		&acked, &a.AcknowledgedBy, &resolved, &a.ResolvedBy, &a.Outcome, &a.Note, &a.Detail, &value, &a.Repeats, &last)
	if err != nil {
		return Alert{}, err
	}
	if resident.Valid {
		r := resident.String
		a.Resident = &r
	}
	a.Unassigned = a.Resident == nil
	a.OpenedAt = time.UnixMilli(opened).UTC()
	if acked.Valid {
		t := time.UnixMilli(acked.Int64).UTC()
		a.AcknowledgedAt = &t
	}
	if resolved.Valid {
		t := time.UnixMilli(resolved.Int64).UTC()
		a.ResolvedAt = &t
	}
	if value.Valid {
		v := value.Float64
		a.Value = &v
	}
	if last.Valid {
		t := time.UnixMilli(last.Int64).UTC()
		a.LastOccurredAt = &t
	}
	return a, nil
}

// List returns the alerts that match f, most severe first (critical, high,
// warning), and within a severity newest first (opened time, then id). The
// order is applied in SQL before f.Limit, so a limit cuts the least severe,
// oldest alerts: with more than Limit alerts, no critical alert is left out
// while a high or warning one is listed.
func (m *Manager) List(ctx context.Context, f Filter) ([]Alert, error) {
	var (
		where []string
		args  []any
	)
	if len(f.Status) > 0 {
		where = append(where, "status IN (?"+strings.Repeat(", ?", len(f.Status)-1)+")")
		for _, s := range f.Status {
			args = append(args, s)
		}
	}
	if f.Site != "" {
		where = append(where, "site_id = ?")
		args = append(args, f.Site)
	}
	if f.Resident != "" {
		where = append(where, "resident_id = ?")
		args = append(args, f.Resident)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	q := "SELECT " + alertColumns + " FROM alerts"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += fmt.Sprintf(" ORDER BY %s, opened_ms DESC, id DESC LIMIT %d", severityRank, limit)
	rows, err := m.db.QueryContext(ctx, m.db.Rebind(q), args...)
	if err != nil {
		return nil, fmt.Errorf("list alerts: %w", err)
	}
	defer rows.Close()
	var out []Alert
	for rows.Next() {
		a, err := scanAlert(rows)
		if err != nil {
			return nil, fmt.Errorf("list alerts: %w", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list alerts: %w", err)
	}
	return out, nil
}

// Get returns one alert, or an error wrapping ErrNotFound.
func (m *Manager) Get(ctx context.Context, id int64) (Alert, error) {
	return getAlert(ctx, m.db, m.db, id)
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func getAlert(ctx context.Context, db *sqldb.DB, q querier, id int64) (Alert, error) {
	a, err := scanAlert(q.QueryRowContext(ctx, db.Rebind("SELECT "+alertColumns+" FROM alerts WHERE id = ?"), id))
	if errors.Is(err, sql.ErrNoRows) {
		return Alert{}, fmt.Errorf("alert %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return Alert{}, fmt.Errorf("get alert %d: %w", id, err)
	}
	return a, nil
}

// History returns every change of an alert, oldest first, or an error
// wrapping ErrNotFound.
func (m *Manager) History(ctx context.Context, id int64) ([]HistoryEntry, error) {
	if _, err := m.Get(ctx, id); err != nil {
		return nil, err
	}
	rows, err := m.db.QueryContext(ctx, m.db.Rebind(`SELECT alert_id, seq, at_ms, actor, channel, action, detail
		FROM alert_history WHERE alert_id = ? ORDER BY seq`), id)
	if err != nil {
		return nil, fmt.Errorf("history of alert %d: %w", id, err)
	}
	defer rows.Close()
	var out []HistoryEntry
	for rows.Next() {
		var h HistoryEntry
		var at int64
		if err := rows.Scan(&h.AlertID, &h.Seq, &at, &h.Actor, &h.Channel, &h.Action, &h.Detail); err != nil {
			return nil, fmt.Errorf("history of alert %d: %w", id, err)
		}
		h.At = time.UnixMilli(at).UTC()
		out = append(out, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("history of alert %d: %w", id, err)
	}
	return out, nil
}

// Acknowledge marks an open alert acknowledged by actor through channel
// (dashboard, api, ...). It returns the alert after the change; an error
// wrapping ErrNotFound, or ErrConflict when the alert is not open.
func (m *Manager) Acknowledge(ctx context.Context, id int64, actor, channel string) (Alert, error) {
	if actor == "" || channel == "" {
		return Alert{}, errors.New("acknowledge: actor and channel are required")
	}
	var out Alert
	err := m.tx(ctx, func(tx *sql.Tx) error {
		now := m.now().UnixMilli()
		res, err := tx.ExecContext(ctx, m.db.Rebind(`UPDATE alerts SET status = 'acknowledged', acknowledged_ms = ?, acknowledged_by = ?
			WHERE id = ? AND status = 'open'`), now, actor, id)
		if err != nil {
			return err
		}
		if err := m.checkChanged(ctx, tx, res, id, "acknowledge", StatusOpen); err != nil {
			return err
		}
		if err := m.addHistory(ctx, tx, id, now, actor, channel, ActionAcknowledged, ""); err != nil {
			return err
		}
		if err := m.stopEscalation(ctx, tx, id); err != nil {
			return err
		}
		out, err = m.enqueue(ctx, tx, id, EventAcknowledged, now)
		return err
	})
	if err != nil {
		return Alert{}, fmt.Errorf("acknowledge alert %d: %w", id, err)
	}
	m.signal()
	m.observeAck(out) // metrics.go
	return out, nil
}

// Resolve closes an open or acknowledged alert with an outcome (injury,
// no_injury, false_alarm or other) and a free-text note. It returns the
// alert after the change; an error wrapping ErrNotFound, or ErrConflict
// when the alert is already resolved.
func (m *Manager) Resolve(ctx context.Context, id int64, actor, channel, outcome, note string) (Alert, error) {
	if actor == "" || channel == "" {
		return Alert{}, errors.New("resolve: actor and channel are required")
	}
	if !slices.Contains(Outcomes, outcome) {
		return Alert{}, fmt.Errorf("resolve alert %d: outcome %q is not one of %s", id, outcome, strings.Join(Outcomes, ", "))
	}
	var out Alert
	err := m.tx(ctx, func(tx *sql.Tx) error {
		now := m.now().UnixMilli()
		res, err := tx.ExecContext(ctx, m.db.Rebind(`UPDATE alerts SET status = 'resolved', resolved_ms = ?, resolved_by = ?, outcome = ?, note = ?
			WHERE id = ? AND status <> 'resolved'`), now, actor, outcome, note, id)
		if err != nil {
			return err
		}
		if err := m.checkChanged(ctx, tx, res, id, "resolve", "open or acknowledged"); err != nil {
			return err
		}
		detail := "outcome " + outcome
		if note != "" {
			detail += ": " + note
		}
		if err := m.addHistory(ctx, tx, id, now, actor, channel, ActionResolved, detail); err != nil {
			return err
		}
		if err := m.stopEscalation(ctx, tx, id); err != nil {
			return err
		}
		out, err = m.enqueue(ctx, tx, id, EventResolved, now)
		return err
	})
	if err != nil {
		return Alert{}, fmt.Errorf("resolve alert %d: %w", id, err)
	}
	m.signal()
	return out, nil
}

// Comment adds a comment to an alert's history.
func (m *Manager) Comment(ctx context.Context, id int64, actor, channel, text string) error {
	err := m.tx(ctx, func(tx *sql.Tx) error {
		if _, err := getAlert(ctx, m.db, tx, id); err != nil {
			return err
		}
		return m.addHistory(ctx, tx, id, m.now().UnixMilli(), actor, channel, ActionComment, text)
	})
	if err != nil {
		return fmt.Errorf("comment on alert %d: %w", id, err)
	}
	return nil
}

// checkChanged turns an UPDATE that matched nothing into ErrNotFound or
// ErrConflict.
func (m *Manager) checkChanged(ctx context.Context, tx *sql.Tx, res sql.Result, id int64, op, want string) error {
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 1 {
		return nil
	}
	a, err := getAlert(ctx, m.db, tx, id)
	if err != nil {
		return err
	}
	return fmt.Errorf("%s: alert is %s, want %s: %w", op, a.Status, want, ErrConflict)
}

// tx runs fn in a transaction and commits it when fn returns nil; then it
// runs what fn registered with onCommit.
func (m *Manager) tx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	unlock := m.lockWrites()
	tx, err := m.db.BeginTx(ctx, nil)
	if err != nil {
		unlock()
		return err
	}
	defer m.commitHooks.Delete(tx)
	if err := fn(tx); err != nil {
		tx.Rollback()
		unlock()
		return err
	}
	err = tx.Commit()
	unlock()
	if err != nil {
		return err
	}
	if v, ok := m.commitHooks.Load(tx); ok {
		for _, f := range *v.(*[]func()) {
			f()
		}
	}
	return nil
}

// onCommit runs f after tx (a transaction of Manager.tx) committed; never
// when it rolls back.
func (m *Manager) onCommit(tx *sql.Tx, f func()) {
	v, _ := m.commitHooks.LoadOrStore(tx, &[]func(){})
	p := v.(*[]func())
	*p = append(*p, f)
}

// addHistory appends a history entry, numbering it from the alert's
// history_seq (the UPDATE also locks the alert row on PostgreSQL).
func (m *Manager) addHistory(ctx context.Context, tx *sql.Tx, id int64, atMS int64, actor, channel, action, detail string) error {
	var seq int64
	err := tx.QueryRowContext(ctx, m.db.Rebind(`UPDATE alerts SET history_seq = history_seq + 1 WHERE id = ? RETURNING history_seq`), id).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("alert %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("number history entry: %w", err)
	}
	_, err = tx.ExecContext(ctx, m.db.Rebind(`INSERT INTO alert_history (alert_id, seq, at_ms, actor, channel, action, detail)
		VALUES (?, ?, ?, ?, ?, ?, ?)`), id, seq, atMS, actor, channel, action, detail)
	if err != nil {
		return fmt.Errorf("insert history entry: %w", err)
	}
	return nil
}

// enqueue writes the outbox row announcing event for alert id, as the alert
// is now inside tx, and returns that alert.
func (m *Manager) enqueue(ctx context.Context, tx *sql.Tx, id int64, event string, nowMS int64) (Alert, error) {
	return m.enqueueWith(ctx, tx, id, event, nowMS, nil)
}

// enqueueWith is enqueue with the escalation member of the body (nil:
// none).
func (m *Manager) enqueueWith(ctx context.Context, tx *sql.Tx, id int64, event string, nowMS int64, esc *Escalation) (Alert, error) {
	var seq int64
	if err := tx.QueryRowContext(ctx, m.db.Rebind(`UPDATE alerts SET notify_seq = notify_seq + 1 WHERE id = ? RETURNING notify_seq`), id).Scan(&seq); err != nil {
		return Alert{}, fmt.Errorf("number notification: %w", err)
	}
	a, err := getAlert(ctx, m.db, tx, id)
	if err != nil {
		return Alert{}, err
	}
	c := Change{ID: fmt.Sprintf("alert-%d-%d", id, seq), Event: event, Alert: a, At: time.UnixMilli(nowMS).UTC()}
	body, err := json.Marshal(Notice{Change: c, Escalation: esc})
	if err != nil {
		return Alert{}, fmt.Errorf("encode notification: %w", err)
	}
	_, err = tx.ExecContext(ctx, m.db.Rebind(`INSERT INTO alert_outbox (id, alert_id, seq, event, site_id, payload, created_ms, next_ms)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`), c.ID, id, seq, event, a.Site, string(body), nowMS, nowMS)
	if err != nil {
		return Alert{}, fmt.Errorf("insert outbox row: %w", err)
	}
	return a, nil
}

// signal wakes every in-process delivery worker without blocking.
func (m *Manager) signal() {
	m.wakeMu.Lock()
	close(m.wake)
	m.wake = make(chan struct{})
	m.wakeMu.Unlock()
}

// woken returns a channel closed at the next signal. Take it before looking
// for work, so a change written meanwhile is not missed.
func (m *Manager) woken() <-chan struct{} {
	m.wakeMu.Lock()
	defer m.wakeMu.Unlock()
	return m.wake
}

// openSpec describes an alert a rule wants open.
type openSpec struct {
	Key      string
	Site     string
	Resident *string
	Device   string
	Type     string
	Severity string
	At       time.Time // when the condition was met (device or wall time)
	Detail   string
	Value    *float64
	// NotifyRepeat: when the alert is already open, the repeat is also
	// announced to every receiver (event "repeated"), not only recorded in
	// the history. Set for each new distinct fall or SOS event.
	NotifyRepeat bool
	// EventKey, if set, identifies the device event (device, boot, seq):
	// it is recorded in the same transaction, and an event already
	// recorded (by this or another replica, before or after a restart)
	// changes nothing and returns errDuplicateEvent.
	EventKey string
}

// RepeatNoticeEvery is the shortest time between two "repeated"
// notifications of one alert (new falls or SOS presses) with no other
// notice between them. More events within it are recorded in the alert's
// history only, so a faulty detector cannot flood every receiver; the first
// new event after the opening, an acknowledgement or an escalation step is
// always announced.
const RepeatNoticeEvery = 30 * time.Second

// errDuplicateEvent: the event of an openSpec was raised already.
var errDuplicateEvent = errors.New("event already raised")

// dedupKey is the key of at most one open alert: per resident and type, or
// per device and type when unassigned or for device_offline.
func dedupKey(resident *string, deviceID, typ string) string {
	if resident != nil && typ != TypeDeviceOffline {
		return "resident:" + *resident + ":" + typ
	}
	return "device:" + deviceID + ":" + typ
}

// open opens an alert for spec, or, when one with the same key is open,
// adds a "repeated" history entry to it (and, with s.NotifyRepeat, queues a
// "repeated" notification). created reports which.
func (m *Manager) open(ctx context.Context, s openSpec) (a Alert, created bool, err error) {
	var notified bool
	// The settings decide the escalation; without them the alert would
	// open unescalated, so a read error is the caller's to retry.
	settings, err := m.currentSettings(ctx)
	if err != nil {
		return Alert{}, false, fmt.Errorf("open %s alert for %s: settings: %w", s.Type, s.Key, err)
	}
	err = m.tx(ctx, func(tx *sql.Tx) error {
		now := m.now().UnixMilli()
		if s.EventKey != "" {
			var k string
			err := tx.QueryRowContext(ctx, m.db.Rebind(`INSERT INTO alert_event_keys (event_key, at_ms) VALUES (?, ?)
				ON CONFLICT (event_key) DO NOTHING RETURNING event_key`), s.EventKey, now).Scan(&k)
			if errors.Is(err, sql.ErrNoRows) {
				return errDuplicateEvent
			}
			if err != nil {
				return fmt.Errorf("record event %s: %w", s.EventKey, err)
			}
		}
		id, found, err := m.openByKey(ctx, tx, s.Key)
		if err != nil {
			return err
		}
		if !found {
			if err := tx.QueryRowContext(ctx, m.db.Rebind(`UPDATE alerting_counters SET value = value + 1 WHERE name = 'alert' RETURNING value`)).Scan(&id); err != nil {
				return fmt.Errorf("allocate alert id: %w", err)
			}
			var inserted int64
			err := tx.QueryRowContext(ctx, m.db.Rebind(`INSERT INTO alerts (id, dedup_key, site_id, resident_id, device_id, type, severity, status, opened_ms, detail, value_num, last_occurred_ms)
				VALUES (?, ?, ?, ?, ?, ?, ?, 'open', ?, ?, ?, ?)
				ON CONFLICT (dedup_key) WHERE status <> 'resolved' DO NOTHING
				RETURNING id`), id, s.Key, s.Site, s.Resident, s.Device, s.Type, s.Severity, now, s.Detail, s.Value, occurred(s, now)).Scan(&inserted)
			switch {
			case err == nil:
				created = true
				event, esc, note, err := m.onOpened(ctx, tx, id, time.UnixMilli(now), s, settings)
				if err != nil {
					return err
				}
				if err := m.addHistory(ctx, tx, id, now, ActorSystem, ChannelRule, ActionOpened, s.Detail+note); err != nil {
					return err
				}
				if event == "" { // flapping: recorded, not notified
					a, err = getAlert(ctx, m.db, tx, id)
					return err
				}
				a, err = m.enqueueWith(ctx, tx, id, event, now, esc)
				return err
			case errors.Is(err, sql.ErrNoRows):
				// Another writer opened it first (seen only on PostgreSQL,
				// where the insert waited for that writer to commit).
				if id, found, err = m.openByKey(ctx, tx, s.Key); err != nil {
					return err
				}
				if !found {
					return fmt.Errorf("open alert %s: conflict on a key that is not open", s.Key)
				}
			default:
				return fmt.Errorf("insert alert: %w", err)
			}
		}
		if _, err := tx.ExecContext(ctx, m.db.Rebind(`UPDATE alerts SET repeat_count = repeat_count + 1,
			last_occurred_ms = CASE WHEN last_occurred_ms IS NULL OR last_occurred_ms < ? THEN ? ELSE last_occurred_ms END WHERE id = ?`),
			occurred(s, now), occurred(s, now), id); err != nil {
			return fmt.Errorf("count repeat: %w", err)
		}
		if err := m.addHistory(ctx, tx, id, now, ActorSystem, ChannelRule, ActionRepeated, s.Detail); err != nil {
			return err
		}
		if s.NotifyRepeat {
			// A detector that fires many times a second must not page
			// staff many times a second: at most one "repeated" per
			// RepeatNoticeEvery per alert; the history keeps every one.
			var lastEvent string
			var lastMS int64
			q := m.db.Rebind(`SELECT event, created_ms FROM alert_outbox WHERE alert_id = ? ORDER BY seq DESC LIMIT 1`)
			err := tx.QueryRowContext(ctx, q, id).Scan(&lastEvent, &lastMS)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("last notice of alert %d: %w", id, err)
			}
			if lastEvent != EventRepeated || now-lastMS >= RepeatNoticeEvery.Milliseconds() {
				notified = true
				cur, err := getAlert(ctx, m.db, tx, id)
				if err != nil {
					return err
				}
				esc, err := m.handlers(ctx, tx, cur, settings, time.UnixMilli(now))
				if err != nil {
					return err
				}
				a, err = m.enqueueWith(ctx, tx, id, EventRepeated, now, esc)
				return err
			}
		}
		a, err = getAlert(ctx, m.db, tx, id)
		return err
	})
	if errors.Is(err, errDuplicateEvent) {
		return Alert{}, false, err
	}
	if err != nil {
		return Alert{}, false, fmt.Errorf("open %s alert for %s: %w", s.Type, s.Key, err)
	}
	if created || notified {
		m.signal()
	}
	return a, created, nil
}

// occurred returns when spec's condition occurred (unix ms): spec.At, or
// nowMS when it is unset.
func occurred(s openSpec, nowMS int64) int64 {
	if s.At.IsZero() {
		return nowMS
	}
	return s.At.UnixMilli()
}

// openByKey finds the open alert with key.
func (m *Manager) openByKey(ctx context.Context, tx *sql.Tx, key string) (int64, bool, error) {
	var id int64
	err := tx.QueryRowContext(ctx, m.db.Rebind(`SELECT id FROM alerts WHERE dedup_key = ? AND status <> 'resolved'`), key).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("find open alert %s: %w", key, err)
	}
	return id, true, nil
}

// commentByKey adds a system comment to the open alert with key, if any.
func (m *Manager) commentByKey(ctx context.Context, key, channel, text string) (bool, error) {
	var found bool
	err := m.tx(ctx, func(tx *sql.Tx) error {
		id, ok, err := m.openByKey(ctx, tx, key)
		if err != nil || !ok {
			return err
		}
		found = true
		return m.addHistory(ctx, tx, id, m.now().UnixMilli(), ActorSystem, channel, ActionComment, text)
	})
	if err != nil {
		return false, fmt.Errorf("comment on open alert %s: %w", key, err)
	}
	return found, nil
}

// lastOpened returns when the newest alert with key was opened (zero if
// none).
func (m *Manager) lastOpened(ctx context.Context, key string) (time.Time, error) {
	var ms sql.NullInt64
	err := m.db.QueryRowContext(ctx, m.db.Rebind(`SELECT MAX(opened_ms) FROM alerts WHERE dedup_key = ?`), key).Scan(&ms)
	if err != nil {
		return time.Time{}, fmt.Errorf("last alert %s: %w", key, err)
	}
	if !ms.Valid {
		return time.Time{}, nil
	}
	return time.UnixMilli(ms.Int64), nil
}

// openKeys returns the dedup keys of every open alert.
func (m *Manager) openKeys(ctx context.Context) (map[string]int64, error) {
	rows, err := m.db.QueryContext(ctx, `SELECT dedup_key, id FROM alerts WHERE status <> 'resolved'`)
	if err != nil {
		return nil, fmt.Errorf("load open alerts: %w", err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var k string
		var id int64
		if err := rows.Scan(&k, &id); err != nil {
			return nil, fmt.Errorf("load open alerts: %w", err)
		}
		out[k] = id
	}
	return out, rows.Err()
}
