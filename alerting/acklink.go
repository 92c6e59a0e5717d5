// Stage 4, notify: one-tap acknowledge links. Each notification to a person carries a link that
// acknowledges that alert as that person, through that channel, once, before it expires.

package alerting

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// AckLinkTTL is how long an acknowledge link works: 24 h, longer than any
// escalation of an alert that is still open.
const AckLinkTTL = 24 * time.Hour

// AckPath is the dashboard path of an acknowledge link; the token follows.
const AckPath = "/ack/"

// Errors of [Manager.AcknowledgeLink] (wrapped).
var (
	ErrLinkInvalid = errors.New("acknowledge link is invalid")
	ErrLinkExpired = errors.New("acknowledge link has expired")
	ErrLinkUsed    = errors.New("acknowledge link was already used")
)

// AckLink is what a link grants: acknowledging Alert as Recipient through
// Channel (e.g. email, wecom, dingtalk, webhook) until Expires.
type AckLink struct {
	Alert     int64
	Recipient string
	Channel   string
	Expires   time.Time
	nonce     string
}

type ackKey struct {
	mu  sync.Mutex
	key []byte
}

// ackLinkKey returns the store's link key, creating it on first use.
func (m *Manager) ackLinkKey(ctx context.Context) ([]byte, error) {
	m.ackKey.mu.Lock()
	defer m.ackKey.mu.Unlock()
	if m.ackKey.key != nil {
		return m.ackKey.key, nil
	}
	var s string
	err := m.db.QueryRowContext(ctx, `SELECT secret FROM ack_link_keys WHERE id = 1`).Scan(&s)
	if errors.Is(err, sql.ErrNoRows) {
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		if _, err := m.db.ExecContext(ctx, m.db.Rebind(`INSERT INTO ack_link_keys (id, secret, created_ms) VALUES (1, ?, ?) ON CONFLICT (id) DO NOTHING`),
			hex.EncodeToString(b), m.now().UnixMilli()); err != nil {
			return nil, fmt.Errorf("create acknowledge link key: %w", err)
		}
		err = m.db.QueryRowContext(ctx, `SELECT secret FROM ack_link_keys WHERE id = 1`).Scan(&s)
	}
	if err != nil {
		return nil, fmt.Errorf("read acknowledge link key: %w", err)
	}
	key, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("acknowledge link key: %w", err)
	}
	m.ackKey.key = key
	return key, nil
}

// AckToken returns a signed token that acknowledges alert as recipient
// through channel, valid for AckLinkTTL from now and once:
// base64url("<alert>|<recipient>|<channel>|<expiry unix s>|<nonce>") "."
// base64url(HMAC-SHA256(key, payload)).
func (m *Manager) AckToken(ctx context.Context, alert int64, recipient, channel string) (string, error) {
	key, err := m.ackLinkKey(ctx)
	if err != nil {
		return "", err
	}
	n := make([]byte, 12)
	if _, err := rand.Read(n); err != nil {
		return "", err
	}
	payload := strings.Join([]string{strconv.FormatInt(alert, 10), recipient, channel,
		strconv.FormatInt(m.now().Add(AckLinkTTL).Unix(), 10), base64.RawURLEncoding.EncodeToString(n)}, "|")
	return signToken(key, payload), nil
}

func signToken(key []byte, payload string) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(payload))
	return base64.RawURLEncoding.EncodeToString([]byte(payload)) + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// CheckAckToken verifies token's signature, expiry and that it was not
// used, and returns what it grants (without using it). Errors wrap
// ErrLinkInvalid, ErrLinkExpired or ErrLinkUsed.
func (m *Manager) CheckAckToken(ctx context.Context, token string) (AckLink, error) {
	key, err := m.ackLinkKey(ctx)
	if err != nil {
		return AckLink{}, err
	}
	p64, s64, ok := strings.Cut(token, ".")
	payload, err1 := base64.RawURLEncoding.DecodeString(p64)
	sig, err2 := base64.RawURLEncoding.DecodeString(s64)
	if !ok || err1 != nil || err2 != nil {
		return AckLink{}, ErrLinkInvalid
	}
	mac := hmac.New(sha256.New, key)
	mac.Write(payload)
	if !hmac.Equal(sig, mac.Sum(nil)) {
		return AckLink{}, ErrLinkInvalid
	}
	f := strings.Split(string(payload), "|")
	if len(f) != 5 {
		return AckLink{}, ErrLinkInvalid
	}
	id, err1 := strconv.ParseInt(f[0], 10, 64)
	exp, err2 := strconv.ParseInt(f[3], 10, 64)
	if err1 != nil || err2 != nil {
		return AckLink{}, ErrLinkInvalid
	}
	l := AckLink{Alert: id, Recipient: f[1], Channel: f[2], Expires: time.Unix(exp, 0).UTC(), nonce: f[4]}
	if !m.now().Before(l.Expires) {
		return l, ErrLinkExpired
	}
	var n int
	if err := m.db.QueryRowContext(ctx, m.db.Rebind(`SELECT COUNT(*) FROM ack_links_used WHERE nonce = ?`), l.nonce).Scan(&n); err != nil {
		return l, fmt.Errorf("check acknowledge link: %w", err)
	}
	if n > 0 {
		return l, ErrLinkUsed
	}
	return l, nil
}

// AcknowledgeLink acknowledges the alert a link grants, as its recipient
// and channel ("<channel> link" in the history), and marks the link used,
// in one transaction. Errors wrap ErrLinkInvalid, ErrLinkExpired,
// ErrLinkUsed, or ErrConflict when the alert is no longer open (someone
// else acknowledged or resolved it; the link stays unused then).
func (m *Manager) AcknowledgeLink(ctx context.Context, token string) (Alert, AckLink, error) {
	l, err := m.CheckAckToken(ctx, token)
	if err != nil {
		return Alert{}, l, err
	}
	var out Alert
	channel := l.Channel + " link"
	err = m.tx(ctx, func(tx *sql.Tx) error {
		now := m.now().UnixMilli()
		var n int
		if err := tx.QueryRowContext(ctx, m.db.Rebind(`SELECT COUNT(*) FROM ack_links_used WHERE nonce = ?`), l.nonce).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return ErrLinkUsed
		}
		res, err := tx.ExecContext(ctx, m.db.Rebind(`UPDATE alerts SET status = 'acknowledged', acknowledged_ms = ?, acknowledged_by = ?
			WHERE id = ? AND status = 'open'`), now, l.Recipient, l.Alert)
		if err != nil {
			return err
		}
		if err := m.checkChanged(ctx, tx, res, l.Alert, "acknowledge", StatusOpen); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, m.db.Rebind(`INSERT INTO ack_links_used (nonce, alert_id, recipient, channel, used_ms) VALUES (?, ?, ?, ?, ?)`),
			l.nonce, l.Alert, l.Recipient, l.Channel, now); err != nil {
			return fmt.Errorf("mark link used: %w", err)
		}
		if err := m.addHistory(ctx, tx, l.Alert, now, l.Recipient, channel, ActionAcknowledged, ""); err != nil {
			return err
		}
		if err := m.stopEscalation(ctx, tx, l.Alert); err != nil {
			return err
		}
		out, err = m.enqueue(ctx, tx, l.Alert, EventAcknowledged, now)
		return err
	})
	if err != nil {
		return Alert{}, l, fmt.Errorf("acknowledge alert %d by link: %w", l.Alert, err)
	}
	m.signal()
	return out, l, nil
}
