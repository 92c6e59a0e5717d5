package registry

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
)

// Credential is a device's MQTT login: the username is the device id
// (usually a gateway's) and PasswordHash is Mosquitto's "$7$" PBKDF2-SHA512
// hash (see HashPassword). In the YAML file:
//
//	credentials:
//	  - {username: gw-station, password_hash: "$7$101$...$..."}
type Credential struct {
	Username     string `json:"username" yaml:"username"`
	PasswordHash string `json:"-" yaml:"password_hash"`
}

// String never prints the hash.
func (c Credential) String() string { return "credential " + c.Username }

// Account is what the broker needs to admit a device and enforce its topic
// ACL: its credential, its site, and the devices it may publish for (itself
// and every device whose GatewayID is it), sorted.
type Account struct {
	Credential
	SiteID  string
	Devices []string
}

// Account returns the account of username, or an error wrapping ErrNotFound
// when it has no credential.
func (s *Store) Account(ctx context.Context, username string) (Account, error) {
	accs, err := s.accounts(ctx, username)
	if err != nil {
		return Account{}, err
	}
	if len(accs) == 0 {
		return Account{}, fmt.Errorf("credential of %q: %w", username, ErrNotFound)
	}
	return accs[0], nil
}

// Accounts returns every account, ordered by username.
func (s *Store) Accounts(ctx context.Context) ([]Account, error) {
	return s.accounts(ctx, "")
}

// HasCredentials reports whether any device has a credential.
func (s *Store) HasCredentials(ctx context.Context) (bool, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM device_credentials`).Scan(&n); err != nil {
		return false, fmt.Errorf("count credentials: %w", err)
	}
	return n > 0, nil
}

func (s *Store) accounts(ctx context.Context, username string) ([]Account, error) {
	q := `SELECT c.device_id, c.password_hash, d.site_id FROM device_credentials c JOIN devices d ON d.id = c.device_id`
	var args []any
	if username != "" {
		q += ` WHERE c.device_id = ?`
		args = append(args, username)
	}
	q += ` ORDER BY c.device_id`
	tx, err := s.readTx(ctx)
	if err != nil {
		return nil, fmt.Errorf("read credentials: %w", err)
	}
	defer tx.Rollback()
	accs, err := queryAll(ctx, tx, s.db.Rebind(q), func(r *sql.Rows) (a Account, err error) {
		err = r.Scan(&a.Username, &a.PasswordHash, &a.SiteID)
		return a, err
	}, args...)
	if err != nil {
		return nil, fmt.Errorf("read credentials: %w", err)
	}
	for i := range accs {
		ids, err := queryAll(ctx, tx, s.db.Rebind(`SELECT id FROM devices WHERE gateway_id = ? AND site_id = ?`),
			func(r *sql.Rows) (id string, err error) { err = r.Scan(&id); return id, err }, accs[i].Username, accs[i].SiteID)
		if err != nil {
			return nil, fmt.Errorf("read devices behind %q: %w", accs[i].Username, err)
		}
		accs[i].Devices = append(ids, accs[i].Username)
		slices.Sort(accs[i].Devices)
	}
	return accs, nil
}

// SetCredentialHash replaces the password hash of username (a well-formed
// hash, see ParsePasswordHash): the broker rehashes a "$7$" credential with
// argon2id at its next successful CONNECT. Errors: a malformed hash, an
// error wrapping ErrNotFound when username has no credential, database
// errors.
func (s *Store) SetCredentialHash(ctx context.Context, username, hash string) error {
	if err := ParsePasswordHash(hash); err != nil {
		return fmt.Errorf("credential of %q: %w", username, err)
	}
	res, err := s.db.ExecContext(ctx, s.db.Rebind(`UPDATE device_credentials SET password_hash = ? WHERE device_id = ?`), hash, username)
	if err != nil {
		return fmt.Errorf("update credential of %q: %w", username, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("credential of %q: %w", username, ErrNotFound)
	}
	return nil
}
