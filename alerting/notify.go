package alerting

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/eldercare-iot/eldercare/internal/mqttconn"
)

// Notification is one outbox row handed to a receiver.
type Notification struct {
	// ID is stable across retries and restarts ("alert-<id>-<seq>").
	ID string
	// Event is opened, acknowledged or resolved.
	Event string
	Site  string
	// Body is the JSON encoding of the [Change], fixed when the change was
	// written; receivers send it verbatim.
	Body []byte
}

// Receiver delivers notifications somewhere. Send returns nil once the
// receiver has the notification, an error marked with [Permanent] when
// retrying cannot help, or any other error to be retried with backoff.
type Receiver interface {
	Name() string
	Send(ctx context.Context, n Notification) error
}

// permanentError marks an error that retrying cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as not worth retrying.
func Permanent(err error) error { return &permanentError{err} }

// IsPermanent reports whether err was marked with [Permanent].
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// Webhook headers.
const (
	HeaderSignature      = "X-Eldercare-Signature"
	HeaderNotificationID = "X-Eldercare-Notification-Id"
	HeaderTimestamp      = "X-Eldercare-Timestamp"
)

// Sign returns the X-Eldercare-Signature value for body:
// "sha256=" + hex(HMAC-SHA256(secret, body)).
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// VerifySignature reports whether header is the valid signature of body.
func VerifySignature(secret, body []byte, header string) bool {
	return hmac.Equal([]byte(Sign(secret, body)), []byte(header))
}

// Webhook POSTs each notification's JSON to URL with a signature header.
// A 2xx answer is success, 4xx (other than 408 and 429) is permanent, and
// 5xx, 408, 429 and network errors are retried by the dispatcher.
type Webhook struct {
	URL    string
	Secret Secret
	Client *http.Client // nil: a client with a 10 s timeout
	Now    func() time.Time
}

// Name implements Receiver.
func (w *Webhook) Name() string { return "webhook" }

// Send implements Receiver.
func (w *Webhook) Send(ctx context.Context, n Notification) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(n.Body))
	if err != nil {
		return Permanent(fmt.Errorf("webhook request: %w", err))
	}
	now := time.Now
	if w.Now != nil {
		now = w.Now
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "eldercare-alerting")
	req.Header.Set(HeaderNotificationID, n.ID)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(now().Unix(), 10))
	if w.Secret != "" {
		req.Header.Set(HeaderSignature, Sign([]byte(w.Secret), n.Body))
	}
	c := w.Client
	if c == nil {
		c = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("webhook POST: %w", err)
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return fmt.Errorf("webhook POST: %s: %s", resp.Status, bytes.TrimSpace(snippet))
	default:
		return Permanent(fmt.Errorf("webhook POST: %s: %s", resp.Status, bytes.TrimSpace(snippet)))
	}
}

// Secret is a string that never prints.
type Secret string

// String implements fmt.Stringer without revealing the secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// MarshalText implements encoding.TextMarshaler without revealing the secret.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// mqttReceiver publishes each change on AlertTopic(root, site), QoS 1, not
// retained.
type mqttReceiver struct {
	client paho.Client
	root   string
}

func (r *mqttReceiver) Name() string { return "mqtt" }

func (r *mqttReceiver) Send(ctx context.Context, n Notification) error {
	return mqttconn.Wait(ctx, r.client.Publish(AlertTopic(r.root, n.Site), 1, false, n.Body), 10*time.Second, "publish alert change")
}

// localReceiver fans changes out to in-process subscribers; it never fails.
type localReceiver struct{ h *hub }

func (r *localReceiver) Name() string { return "local" }

func (r *localReceiver) Send(_ context.Context, n Notification) error {
	var c Change
	if err := json.Unmarshal(n.Body, &c); err != nil {
		return Permanent(fmt.Errorf("decode change: %w", err))
	}
	r.h.publish(c)
	return nil
}

// dispatcher delivers outbox rows to every receiver, at least once.
type dispatcher struct {
	m         *Manager
	receivers []Receiver
	now       func() time.Time
	lease     time.Duration
	maxTries  int
	onResult  func(receiver, result string)
	onPending func(n int)
}

// Delivery statuses.
const (
	deliverySent     = "sent"
	deliveryFailed   = "failed"
	deliveryRetrying = "retrying"
)

type outboxRow struct {
	n        Notification
	alertID  int64
	attempts int
}

// backoff is the wait before retry number attempts (1-based): 1 s doubling,
// at most 5 min.
func backoff(attempts int) time.Duration {
	d := time.Second << min(attempts-1, 9)
	return min(d, 5*time.Minute)
}

// pass delivers every due outbox row once and returns how many remain
// pending.
func (d *dispatcher) pass(ctx context.Context) error {
	db := d.m.db
	now := d.now().UnixMilli()
	rows, err := db.QueryContext(ctx, db.Rebind(`SELECT id, alert_id, event, site_id, payload, attempts FROM alert_outbox
		WHERE sent_ms IS NULL AND next_ms <= ? AND (lease_ms IS NULL OR lease_ms < ?)
		ORDER BY created_ms, alert_id, seq LIMIT 200`), now, now)
	if err != nil {
		return fmt.Errorf("read outbox: %w", err)
	}
	var due []outboxRow
	for rows.Next() {
		var r outboxRow
		var body string
		if err := rows.Scan(&r.n.ID, &r.alertID, &r.n.Event, &r.n.Site, &body, &r.attempts); err != nil {
			rows.Close()
			return fmt.Errorf("read outbox: %w", err)
		}
		r.n.Body = []byte(body)
		due = append(due, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read outbox: %w", err)
	}
	blocked := map[int64]bool{} // alerts with an earlier notification still pending
	for _, r := range due {
		if ctx.Err() != nil {
			break
		}
		if blocked[r.alertID] {
			continue
		}
		done, err := d.deliver(ctx, r)
		if err != nil {
			return err
		}
		if !done {
			blocked[r.alertID] = true
		}
	}
	return d.countPending(ctx)
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

// deliver claims one row, sends it to each receiver that lacks it and
// records the result. It reports whether the row is settled.
func (d *dispatcher) deliver(ctx context.Context, r outboxRow) (bool, error) {
	db := d.m.db
	now := d.now()
	res, err := db.ExecContext(ctx, db.Rebind(`UPDATE alert_outbox SET lease_ms = ?
		WHERE id = ? AND sent_ms IS NULL AND (lease_ms IS NULL OR lease_ms < ?)`), now.Add(d.lease).UnixMilli(), r.n.ID, now.UnixMilli())
	if err != nil {
		return false, fmt.Errorf("claim notification %s: %w", r.n.ID, err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return false, nil // another dispatcher has it
	}
	have := map[string]string{}
	drows, err := db.QueryContext(ctx, db.Rebind(`SELECT receiver, status FROM alert_deliveries WHERE notification_id = ?`), r.n.ID)
	if err != nil {
		return false, fmt.Errorf("read deliveries of %s: %w", r.n.ID, err)
	}
	for drows.Next() {
		var rc, st string
		if err := drows.Scan(&rc, &st); err != nil {
			drows.Close()
			return false, fmt.Errorf("read deliveries of %s: %w", r.n.ID, err)
		}
		have[rc] = st
	}
	drows.Close()

	// A send that has started is finished and recorded even when ctx is
	// cancelled, so a clean shutdown never causes a repeat.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	attempts := r.attempts + 1
	settled := true
	type result struct{ receiver, status, errText string }
	var results []result
	for _, rc := range d.receivers {
		if st := have[rc.Name()]; st == deliverySent || st == deliveryFailed {
			continue
		}
		err := rc.Send(sctx, r.n)
		switch {
		case err == nil:
			results = append(results, result{rc.Name(), deliverySent, ""})
			d.result(rc.Name(), "sent")
		case IsPermanent(err) || attempts >= d.maxTries:
			results = append(results, result{rc.Name(), deliveryFailed, err.Error()})
			d.result(rc.Name(), "failed")
			d.m.log.Error("notification not delivered; giving up", "id", r.n.ID, "receiver", rc.Name(), "attempts", attempts, "err", err)
		default:
			settled = false
			results = append(results, result{rc.Name(), deliveryRetrying, err.Error()})
			d.result(rc.Name(), "retry")
			d.m.log.Warn("notification not delivered; will retry", "id", r.n.ID, "receiver", rc.Name(), "attempts", attempts, "in", backoff(attempts), "err", err)
		}
	}
	err = d.m.tx(sctx, func(tx *sql.Tx) error {
		at := d.now().UnixMilli()
		for _, x := range results {
			if _, err := tx.ExecContext(sctx, db.Rebind(`INSERT INTO alert_deliveries (notification_id, receiver, status, attempts, last_error, updated_ms)
				VALUES (?, ?, ?, 1, ?, ?)
				ON CONFLICT (notification_id, receiver) DO UPDATE SET status = excluded.status,
					attempts = alert_deliveries.attempts + 1, last_error = excluded.last_error, updated_ms = excluded.updated_ms`),
				r.n.ID, x.receiver, x.status, x.errText, at); err != nil {
				return fmt.Errorf("record delivery: %w", err)
			}
			if x.status == deliverySent && x.receiver != "local" {
				if err := d.m.addHistory(sctx, tx, r.alertID, at, ActorSystem, x.receiver, ActionNotified, r.n.Event+" ("+r.n.ID+")"); err != nil {
					return err
				}
			}
		}
		if settled {
			_, err := tx.ExecContext(sctx, db.Rebind(`UPDATE alert_outbox SET sent_ms = ?, lease_ms = NULL, attempts = ? WHERE id = ?`), at, attempts, r.n.ID)
			return err
		}
		_, err := tx.ExecContext(sctx, db.Rebind(`UPDATE alert_outbox SET next_ms = ?, lease_ms = NULL, attempts = ? WHERE id = ?`),
			at+backoff(attempts).Milliseconds(), attempts, r.n.ID)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("record notification %s: %w", r.n.ID, err)
	}
	return settled, nil
}

func (d *dispatcher) result(receiver, result string) {
	if d.onResult != nil {
		d.onResult(receiver, result)
	}
}
