package dashboard

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Browser sessions in the store (table dashboard_sessions, migration
// 00020): a restart logs nobody out, and dashboard replicas on one
// database share them. The cookie holds a random 256-bit id; the store
// keeps only its SHA-256, so a copy of the database holds no live session.
//
// A session ends at its absolute expiry (Config.SessionTTL), after
// Config.SessionIdle without a request (an open live stream counts as use:
// a board on the wall or a phone waiting for alarms stays logged in), at
// logout, when the user changes the password (other sessions), or when an
// administrator disables the account or ends its sessions. Live streams
// of an ended session close at once on the replica that ended it
// (watch) and within Config.SessionCheck on the others.

// session is one logged-in browser.
type session struct {
	csrf    string
	userID  int64
	actor   string // the user's display name, for the alert history
	expires time.Time
}

// sessions is the session store.
type sessions struct {
	acc       *Accounts
	ttl, idle time.Duration
	now       func() time.Time

	mu       sync.Mutex
	watchers map[string]*sessionWatch // by id hash
}

type sessionWatch struct {
	userID int64
	chans  map[chan struct{}]struct{}
}

func newSessions(acc *Accounts, ttl, idle time.Duration, now func() time.Time) *sessions {
	return &sessions{acc: acc, ttl: ttl, idle: idle, now: now, watchers: map[string]*sessionWatch{}}
}

// hashID is the stored form of a session id: hex SHA-256.
func hashID(id string) string {
	h := sha256.Sum256([]byte(id))
	return hex.EncodeToString(h[:])
}

// touchEvery is how stale seen_ms may get before a request rewrites it:
// one write per session per minute at most, not one per request.
func (s *sessions) touchEvery() time.Duration { return min(time.Minute, s.idle/10) }

// create starts a session for u and returns its new id. Expired and idle
// sessions of every user are pruned on the way.
func (s *sessions) create(ctx context.Context, u *User) (string, session, error) {
	id := randomToken()
	now := s.now()
	sess := session{csrf: randomToken(), userID: u.ID, actor: u.Display(), expires: now.Add(s.ttl)}
	db := s.acc.db
	if _, err := db.ExecContext(ctx, db.Rebind("DELETE FROM dashboard_sessions WHERE expires_ms < ? OR seen_ms < ?"),
		now.UnixMilli(), now.Add(-s.idle).UnixMilli()); err != nil {
		return "", session{}, fmt.Errorf("prune sessions: %w", err)
	}
	if _, err := db.ExecContext(ctx, db.Rebind(`INSERT INTO dashboard_sessions (id_hash, user_id, csrf, created_ms, seen_ms, expires_ms)
		VALUES (?, ?, ?, ?, ?, ?)`), hashID(id), u.ID, sess.csrf, now.UnixMilli(), now.UnixMilli(), sess.expires.UnixMilli()); err != nil {
		return "", session{}, fmt.Errorf("create session: %w", err)
	}
	return id, sess, nil
}

// get returns the live session id and marks it used. ok is false for an
// unknown, expired or idle session (which it deletes). Errors: database
// errors only.
func (s *sessions) get(ctx context.Context, id string) (session, bool, error) {
	if id == "" || len(id) > 128 {
		return session{}, false, nil
	}
	db := s.acc.db
	h := hashID(id)
	var sess session
	var seen, expires int64
	err := db.QueryRowContext(ctx, db.Rebind("SELECT user_id, csrf, seen_ms, expires_ms FROM dashboard_sessions WHERE id_hash = ?"), h).
		Scan(&sess.userID, &sess.csrf, &seen, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return session{}, false, nil
	}
	if err != nil {
		return session{}, false, fmt.Errorf("read session: %w", err)
	}
	now := s.now()
	sess.expires = time.UnixMilli(expires)
	if now.After(sess.expires) || now.Sub(time.UnixMilli(seen)) > s.idle {
		return session{}, false, s.delete(ctx, id)
	}
	if now.Sub(time.UnixMilli(seen)) >= s.touchEvery() {
		if _, err := db.ExecContext(ctx, db.Rebind("UPDATE dashboard_sessions SET seen_ms = ? WHERE id_hash = ?"), now.UnixMilli(), h); err != nil {
			return session{}, false, fmt.Errorf("touch session: %w", err)
		}
	}
	return sess, true, nil
}

// delete ends the session id (no error when it is unknown) and closes its
// live streams on this replica.
func (s *sessions) delete(ctx context.Context, id string) error {
	if id == "" {
		return nil
	}
	h := hashID(id)
	db := s.acc.db
	if _, err := db.ExecContext(ctx, db.Rebind("DELETE FROM dashboard_sessions WHERE id_hash = ?"), h); err != nil {
		return fmt.Errorf("end session: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if w := s.watchers[h]; w != nil {
		for ch := range w.chans {
			close(ch)
		}
		delete(s.watchers, h)
	}
	return nil
}

// deleteUser ends every session of userID except keep ("" = all) and
// closes their live streams on this replica.
func (s *sessions) deleteUser(ctx context.Context, userID int64, keep string) error {
	db := s.acc.db
	kh := ""
	if keep != "" {
		kh = hashID(keep)
	}
	if _, err := db.ExecContext(ctx, db.Rebind("DELETE FROM dashboard_sessions WHERE user_id = ? AND id_hash <> ?"), userID, kh); err != nil {
		return fmt.Errorf("end sessions of user %d: %w", userID, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for h, w := range s.watchers {
		if w.userID == userID && h != kh {
			for ch := range w.chans {
				close(ch)
			}
			delete(s.watchers, h)
		}
	}
	return nil
}

// countUser is the number of live sessions of userID.
func (s *sessions) countUser(ctx context.Context, userID int64) (int, error) {
	db := s.acc.db
	now := s.now()
	var n int
	err := db.QueryRowContext(ctx, db.Rebind("SELECT COUNT(*) FROM dashboard_sessions WHERE user_id = ? AND expires_ms >= ? AND seen_ms >= ?"),
		userID, now.UnixMilli(), now.Add(-s.idle).UnixMilli()).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count sessions of user %d: %w", userID, err)
	}
	return n, nil
}

// watch returns a channel closed when this replica ends the session id
// (logout, password change, disable, end sessions); stop releases it.
func (s *sessions) watch(id string, userID int64) (ended <-chan struct{}, stop func()) {
	h := hashID(id)
	ch := make(chan struct{})
	s.mu.Lock()
	w := s.watchers[h]
	if w == nil {
		w = &sessionWatch{userID: userID, chans: map[chan struct{}]struct{}{}}
		s.watchers[h] = w
	}
	w.chans[ch] = struct{}{}
	s.mu.Unlock()
	return ch, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if w := s.watchers[h]; w != nil {
			if _, ok := w.chans[ch]; ok {
				delete(w.chans, ch)
				if len(w.chans) == 0 {
					delete(s.watchers, h)
				}
			}
		}
	}
}
