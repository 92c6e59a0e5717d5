package dashboard

import (
	"context"
	"fmt"
	"time"

	"github.com/eldercare-iot/eldercare/internal/sqldb"
)

// Login limits with growing delays (OWASP Authentication Cheat Sheet,
// "Protect against automated attacks"; NIST SP 800-63B §5.2.2 "rate
// limiting"), kept in the store (table dashboard_login_limits) so that
// every dashboard replica and a restart see the same counts.
//
// Failures are counted per username and client address together
// ("pair") and per client address alone ("ip"). After LoginFreePerPair
// failures of one username from one address, each further attempt from
// that address must wait LoginBaseDelay, doubling with every failure up to
// LoginMaxDelay; after LoginFreePerIP failures from one address (any
// usernames), the same for the whole address. A username is never locked
// from every address: wrong passwords sent from one address do not stop
// the right user logging in from another, so nobody can lock out the
// night nurse. A success clears the pair's count; an administrator can
// clear every count of a username (Admin → user → Unlock). Counts are
// forgotten after LoginForget without a failure.
const (
	LoginFreePerPair = 3
	LoginFreePerIP   = 20
	LoginBaseDelay   = time.Second
	LoginMaxDelay    = 15 * time.Minute
	LoginForget      = 24 * time.Hour
)

// loginDelay is the wait after the fails-th failure with free failures
// allowed: 0 before free, then LoginBaseDelay·2^(fails-free), at most
// LoginMaxDelay.
func loginDelay(fails, free int) time.Duration {
	if fails < free {
		return 0
	}
	n := fails - free
	if n > 20 {
		return LoginMaxDelay
	}
	return min(LoginMaxDelay, LoginBaseDelay<<n)
}

// loginLimiter keeps the counts in the store.
type loginLimiter struct {
	db  *sqldb.DB
	now func() time.Time
}

func newLoginLimiter(acc *Accounts, now func() time.Time) *loginLimiter {
	return &loginLimiter{db: acc.db, now: now}
}

type limitKey struct {
	key, username string
	free          int
}

func limitKeys(username, ip string) []limitKey {
	return []limitKey{
		{key: "pair:" + ip + "|" + username, username: username, free: LoginFreePerPair},
		{key: "ip:" + ip, free: LoginFreePerIP},
	}
}

// attempt checks the limits of username from ip and, when none holds the
// attempt back, counts it as a failure at once (check and count in one
// transaction, so attempts sent in parallel, to one replica or several,
// cannot all pass while their slow password checks run); succeeded takes
// a successful attempt back. It returns how long until the attempt may be
// made (0: go ahead) and whether the address as a whole is held back
// (byIP) rather than the username from this address.
func (l *loginLimiter) attempt(ctx context.Context, username, ip string) (wait time.Duration, byIP bool, err error) {
	db := l.db
	keys := limitKeys(username, ip)
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return 0, false, fmt.Errorf("login limit: %w", err)
	}
	defer tx.Rollback()
	now := l.now()
	fails := make([]int, len(keys))
	for i, k := range keys {
		if _, err := tx.ExecContext(ctx, db.Rebind(`INSERT INTO dashboard_login_limits (lkey, username, fails, last_ms, until_ms)
			VALUES (?, ?, 0, 0, 0) ON CONFLICT (lkey) DO NOTHING`), k.key, k.username); err != nil {
			return 0, false, fmt.Errorf("login limit: %w", err)
		}
		q := "SELECT fails, last_ms, until_ms FROM dashboard_login_limits WHERE lkey = ?"
		if db.Dialect == sqldb.Postgres {
			q += " FOR UPDATE" // SQLite: the transaction holds the write lock (_txlock=immediate)
		}
		var last, until int64
		if err := tx.QueryRowContext(ctx, db.Rebind(q), k.key).Scan(&fails[i], &last, &until); err != nil {
			return 0, false, fmt.Errorf("login limit: %w", err)
		}
		if now.Sub(time.UnixMilli(last)) > LoginForget {
			fails[i] = 0
			until = 0
		}
		if w := time.UnixMilli(until).Sub(now); w > wait {
			wait, byIP = w, k.username == ""
		}
	}
	if wait > 0 {
		return wait, byIP, nil
	}
	for i, k := range keys {
		n := fails[i] + 1
		if _, err := tx.ExecContext(ctx, db.Rebind("UPDATE dashboard_login_limits SET fails = ?, last_ms = ?, until_ms = ? WHERE lkey = ?"),
			n, now.UnixMilli(), now.Add(loginDelay(n, k.free)).UnixMilli(), k.key); err != nil {
			return 0, false, fmt.Errorf("login limit: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, false, fmt.Errorf("login limit: %w", err)
	}
	return 0, false, nil
}

// succeeded forgets the failures of username from ip and takes back the
// address's count of this attempt.
func (l *loginLimiter) succeeded(ctx context.Context, username, ip string) error {
	keys := limitKeys(username, ip)
	db := l.db
	if _, err := db.ExecContext(ctx, db.Rebind("DELETE FROM dashboard_login_limits WHERE lkey = ?"), keys[0].key); err != nil {
		return fmt.Errorf("login limit: %w", err)
	}
	if _, err := db.ExecContext(ctx, db.Rebind("UPDATE dashboard_login_limits SET fails = fails - 1 WHERE lkey = ? AND fails > 0"), keys[1].key); err != nil {
		return fmt.Errorf("login limit: %w", err)
	}
	return nil
}

// unlock forgets every failed login of username (from every address).
func (l *loginLimiter) unlock(ctx context.Context, username string) error {
	if _, err := l.db.ExecContext(ctx, l.db.Rebind("DELETE FROM dashboard_login_limits WHERE username = ?"), username); err != nil {
		return fmt.Errorf("unlock %s: %w", username, err)
	}
	return nil
}

// status returns the failed logins of username counted now (summed over
// addresses) and the latest time until which an address is held back
// (zero: none).
func (l *loginLimiter) status(ctx context.Context, username string) (fails int, until time.Time, err error) {
	var u int64
	err = l.db.QueryRowContext(ctx, l.db.Rebind("SELECT COALESCE(SUM(fails), 0), COALESCE(MAX(until_ms), 0) FROM dashboard_login_limits WHERE username = ? AND last_ms >= ?"),
		username, l.now().Add(-LoginForget).UnixMilli()).Scan(&fails, &u)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("login limit of %s: %w", username, err)
	}
	if t := time.UnixMilli(u); t.After(l.now()) {
		until = t
	}
	return fails, until, nil
}
