// Stage 4, notify: the outbox. Every change of an alert is written with an
// outbox row in the change's transaction (store.go); one dispatcher per
// receiver delivers the rows at least once, in order per alert, with leases
// so replicas never send one concurrently, backoff on errors, and a record
// of every attempt. The receivers are in notify.go and email.go.

package alerting

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// dispatcher delivers outbox rows to one receiver, at least once. The
// service runs one per receiver, each draining its own queue, so a slow or
// failing receiver never delays another. Per receiver, the notifications of
// one alert are delivered in order: a notification waits until the
// receiver is done (sent or failed) with every earlier one of its alert.
type dispatcher struct {
	m  *Manager
	rc Receiver
	// all names every receiver of this service; an outbox row is settled
	// (sent_ms) once each of them is done with it.
	all       []string
	now       func() time.Time
	lease     time.Duration
	maxTries  int
	onResult  func(receiver, result string)
	onPending func(n int)
}

// Delivery statuses (alert_deliveries.status).
const (
	deliveryPending  = "pending" // claimed, not yet attempted
	deliverySent     = "sent"
	deliverySkipped  = "skipped"
	deliveryFailed   = "failed"
	deliveryRetrying = "retrying"
)

type outboxRow struct {
	n       Notification
	alertID int64
}

// backoff is the wait before retry number attempts (1-based): 1 s doubling,
// at most 5 min.
func backoff(attempts int) time.Duration {
	d := time.Second << min(attempts-1, 9)
	return min(d, 5*time.Minute)
}

// dueQuery selects the notifications the receiver (parameters 1 and 4)
// lacks and may attempt now (parameters 2 and 3): not done, not backing off,
// not leased, and the oldest of their alert that the receiver lacks.
const dueQuery = `SELECT o.id, o.alert_id, o.event, o.site_id, o.payload FROM alert_outbox o
	LEFT JOIN alert_deliveries d ON d.notification_id = o.id AND d.receiver = ?
	WHERE o.sent_ms IS NULL
		AND (d.status IS NULL OR (d.status IN ('pending', 'retrying') AND d.next_ms <= ? AND (d.lease_ms IS NULL OR d.lease_ms < ?)))
		AND NOT EXISTS (SELECT 1 FROM alert_outbox p
			LEFT JOIN alert_deliveries pd ON pd.notification_id = p.id AND pd.receiver = ?
			WHERE p.alert_id = o.alert_id AND p.seq < o.seq AND p.sent_ms IS NULL
				AND (pd.status IS NULL OR pd.status IN ('pending', 'retrying')))
	ORDER BY o.created_ms, o.alert_id, o.seq LIMIT 200`

// pass makes one delivery attempt of every notification due at this
// receiver and returns how many it attempted.
func (d *dispatcher) pass(ctx context.Context) (int, error) {
	db := d.m.db
	name := d.rc.Name()
	now := d.now().UnixMilli()
	rows, err := db.QueryContext(ctx, db.Rebind(dueQuery), name, now, now, name)
	if err != nil {
		return 0, fmt.Errorf("read outbox for %s: %w", name, err)
	}
	var due []outboxRow
	for rows.Next() {
		var r outboxRow
		var body string
		if err := rows.Scan(&r.n.ID, &r.alertID, &r.n.Event, &r.n.Site, &body); err != nil {
			rows.Close()
			return 0, fmt.Errorf("read outbox for %s: %w", name, err)
		}
		r.n.Body = []byte(body)
		due = append(due, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("read outbox for %s: %w", name, err)
	}
	var n int
	for _, r := range due {
		if ctx.Err() != nil {
			break
		}
		attempted, err := d.deliver(ctx, r)
		if err != nil {
			return n, err
		}
		if attempted {
			n++
		}
	}
	return n, d.countPending(ctx)
}

func (d *dispatcher) countPending(ctx context.Context) error {
	var n int
	if err := d.m.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM alert_outbox WHERE sent_ms IS NULL`).Scan(&n); err != nil {
		return fmt.Errorf("count outbox: %w", err)
	}
	if d.onPending != nil {
		d.onPending(n)
	}
	return nil
}

// deliver claims the receiver's delivery of one notification (a lease, so
// replicas do not send it concurrently), sends it and records the result. It
// reports whether it made an attempt (false: another replica holds it, or it
// is no longer due).
func (d *dispatcher) deliver(ctx context.Context, r outboxRow) (bool, error) {
	db := d.m.db
	name := d.rc.Name()
	now := d.now()
	var attempts int
	unlock := d.m.lockWrites()
	err := db.QueryRowContext(ctx, db.Rebind(`INSERT INTO alert_deliveries (notification_id, receiver, status, attempts, last_error, updated_ms, next_ms, lease_ms)
		VALUES (?, ?, 'pending', 0, '', ?, 0, ?)
		ON CONFLICT (notification_id, receiver) DO UPDATE SET lease_ms = excluded.lease_ms
		WHERE alert_deliveries.status IN ('pending', 'retrying') AND alert_deliveries.next_ms <= ?
			AND (alert_deliveries.lease_ms IS NULL OR alert_deliveries.lease_ms < ?)
		RETURNING attempts`), r.n.ID, name, now.UnixMilli(), now.Add(d.lease).UnixMilli(), now.UnixMilli(), now.UnixMilli()).Scan(&attempts)
	unlock()
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil // another dispatcher has it, or it is done
	}
	if err != nil {
		return false, fmt.Errorf("claim notification %s for %s: %w", r.n.ID, name, err)
	}

	// A send that has started is finished and recorded even when ctx is
	// cancelled, so a clean shutdown never causes a repeat.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	attempts++
	status, errText := deliverySent, ""
	switch err := d.rc.Send(sctx, r.n); {
	case err == nil:
		d.result(name, "sent")
	case errors.Is(err, ErrSkipped):
		status = deliverySkipped
		d.result(name, "skipped")
	case IsPermanent(err) || attempts >= d.maxTries:
		status, errText = deliveryFailed, err.Error()
		d.result(name, "failed")
		d.m.log.Error("notification not delivered; giving up", "id", r.n.ID, "receiver", name, "attempts", attempts, "err", err)
	default:
		status, errText = deliveryRetrying, err.Error()
		d.result(name, "retry")
		d.m.log.Warn("notification not delivered; will retry", "id", r.n.ID, "receiver", name, "attempts", attempts, "in", backoff(attempts), "err", err)
	}
	// The result is recorded before the lease ends, retried while the
	// store fails (a lost PostgreSQL connection, SQLITE_BUSY): an attempt
	// left unrecorded would be sent again once the lease expired.
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), d.lease*3/4)
	defer rcancel()
	err = retryStore(rctx, func() error { return d.record(rctx, r, name, status, attempts, errText) })
	if err != nil {
		return true, fmt.Errorf("record notification %s for %s: %w", r.n.ID, name, err)
	}
	return true, nil
}

// retryStore runs op until it succeeds or ctx ends, with backoff from
// retryFirst doubling to retryMaxNormal; it returns op's last error.
func retryStore(ctx context.Context, op func() error) error {
	wait := retryFirst
	for {
		err := op()
		if err == nil {
			return nil
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		wait = min(2*wait, retryMaxNormal)
	}
}

// record writes the result of one delivery attempt (and settles the outbox
// row when every receiver is done with it).
func (d *dispatcher) record(sctx context.Context, r outboxRow, name, status string, attempts int, errText string) error {
	db := d.m.db
	return d.m.tx(sctx, func(tx *sql.Tx) error {
		at := d.now().UnixMilli()
		// Lock the outbox row first (on PostgreSQL), so that of two
		// receivers finishing at once the second sees the first's status
		// below and settles the row.
		if _, err := tx.ExecContext(sctx, db.Rebind(`UPDATE alert_outbox SET attempts = attempts + 1 WHERE id = ?`), r.n.ID); err != nil {
			return fmt.Errorf("lock outbox row: %w", err)
		}
		next := at
		if status == deliveryRetrying {
			next = at + backoff(attempts).Milliseconds()
		}
		if _, err := tx.ExecContext(sctx, db.Rebind(`UPDATE alert_deliveries SET status = ?, attempts = ?, last_error = ?, updated_ms = ?,
			next_ms = ?, lease_ms = NULL WHERE notification_id = ? AND receiver = ?`),
			status, attempts, errText, at, next, r.n.ID, name); err != nil {
			return fmt.Errorf("record delivery: %w", err)
		}
		if status == deliverySent {
			if err := d.m.addHistory(sctx, tx, r.alertID, at, ActorSystem, name, ActionNotified, r.n.Event+" ("+r.n.ID+")"); err != nil {
				return err
			}
		}
		if status == deliveryRetrying {
			return nil
		}
		return d.settle(sctx, tx, r.n.ID, at)
	})
}

// settle marks the outbox row sent once every receiver is done with it.
func (d *dispatcher) settle(ctx context.Context, tx *sql.Tx, id string, atMS int64) error {
	db := d.m.db
	args := []any{id}
	for _, n := range d.all {
		args = append(args, n)
	}
	var done int
	err := tx.QueryRowContext(ctx, db.Rebind(`SELECT COUNT(*) FROM alert_deliveries WHERE notification_id = ?
		AND status IN ('sent', 'failed', 'skipped') AND receiver IN (?`+strings.Repeat(", ?", len(d.all)-1)+`)`), args...).Scan(&done)
	if err != nil {
		return fmt.Errorf("check deliveries: %w", err)
	}
	if done < len(d.all) {
		return nil
	}
	_, err = tx.ExecContext(ctx, db.Rebind(`UPDATE alert_outbox SET sent_ms = ?, lease_ms = NULL WHERE id = ? AND sent_ms IS NULL`), atMS, id)
	return err
}

func (d *dispatcher) result(receiver, result string) {
	if d.onResult != nil {
		d.onResult(receiver, result)
	}
}

// dispatch runs one receiver's delivery worker: at once when a change is
// written in this process, again at once while it finds work, and every
// PollEvery for changes written by other processes and for retries.
func (s *Service) dispatch(ctx context.Context, d *dispatcher) {
	t := time.NewTicker(s.cfg.PollEvery)
	defer t.Stop()
	var every logLimit
	for {
		wake := s.m.woken()
		n, err := d.pass(ctx)
		if err != nil && ctx.Err() == nil && every.allow(time.Now()) {
			// Once a minute: a store outage is reported by durably and
			// /readyz; the deliveries resume by themselves.
			s.log.Error("alerting: dispatch notifications (logged at most once a minute)", "receiver", d.rc.Name(), "err", err)
		}
		if ctx.Err() != nil {
			return
		}
		if n > 0 && err == nil {
			continue // more may be due: the next of an alert just delivered
		}
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-t.C:
		}
	}
}

// logLimit lets one log line through per minute (not safe for concurrent
// use: one per loop).
type logLimit struct{ last time.Time }

func (l *logLimit) allow(now time.Time) bool {
	if !l.last.IsZero() && now.Sub(l.last) < time.Minute {
		return false
	}
	l.last = now
	return true
}
