package influxd

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Credentials are the accounts of an InfluxDB 1.8 with authentication on: an admin (ALL PRIVILEGES, for creating
// databases and retention policies, backups and user management) and a service user with ALL privileges on one
// database only (writes and Flux queries of ingest and dashboard). Passwords are secrets: String never prints them.
type Credentials struct {
	AdminUser, AdminPassword string
	User, Password           string
	// Database is the database the service user may read and write; Start creates it.
	Database string
}

// AdminToken is "admin:password", the token of the v2 client and of CreateDatabaseAs for InfluxDB 1.8.
func (c Credentials) AdminToken() string { return c.AdminUser + ":" + c.AdminPassword }

// UserToken is "user:password", the token of the v2 client for the service user.
func (c Credentials) UserToken() string { return c.User + ":" + c.Password }

// String names the users and hides the passwords.
func (c Credentials) String() string {
	return fmt.Sprintf("influxd.Credentials{admin:%s user:%s database:%s passwords:***}", c.AdminUser, c.User, c.Database)
}

// The keys of a credentials file.
const (
	keyAdminUser     = "INFLUX_ADMIN_USER"
	keyAdminPassword = "INFLUX_ADMIN_PASSWORD"
	keyUser          = "INFLUX_USER"
	keyPassword      = "INFLUX_PASSWORD"
)

// LoadOrCreateCredentials reads the credentials file at path, or creates it (mode 0600, its directory 0700) with the
// admin "eldercare-admin", the service user "eldercare" and random 24-byte hex passwords. The file has shell-style
// KEY=value lines (INFLUX_ADMIN_USER, INFLUX_ADMIN_PASSWORD, INFLUX_USER, INFLUX_PASSWORD), so an operator's backup
// script can source it. database goes into the result, not the file. Errors: the file cannot be read or written, or
// it lacks a key.
func LoadOrCreateCredentials(path, database string) (Credentials, error) {
	c := Credentials{Database: database}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		c.AdminUser, c.User = "eldercare-admin", "eldercare"
		if c.AdminPassword, err = randomSecret(); err == nil {
			c.Password, err = randomSecret()
		}
		if err != nil {
			return c, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return c, fmt.Errorf("influxd credentials: %w", err)
		}
		body := fmt.Sprintf("# InfluxDB accounts of the InfluxDB that `eldercare up` manages; generated once, keep private.\n%s=%s\n%s=%s\n%s=%s\n%s=%s\n",
			keyAdminUser, c.AdminUser, keyAdminPassword, c.AdminPassword, keyUser, c.User, keyPassword, c.Password)
		// Written aside and linked into place, so a reader never sees a half-written file and two processes
		// creating it at once agree on one.
		tmp := path + ".tmp-" + c.Password[:8]
		if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
			return c, fmt.Errorf("influxd credentials: %w", err)
		}
		err := os.Link(tmp, path)
		os.Remove(tmp)
		if errors.Is(err, os.ErrExist) {
			return LoadOrCreateCredentials(path, database)
		}
		if err != nil {
			return c, fmt.Errorf("influxd credentials: %w", err)
		}
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("influxd credentials: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if !ok || strings.HasPrefix(k, "#") {
			continue
		}
		switch k {
		case keyAdminUser:
			c.AdminUser = v
		case keyAdminPassword:
			c.AdminPassword = v
		case keyUser:
			c.User = v
		case keyPassword:
			c.Password = v
		}
	}
	if err := sc.Err(); err != nil {
		return c, fmt.Errorf("influxd credentials %s: %w", path, err)
	}
	var missing []string
	for k, v := range map[string]string{keyAdminUser: c.AdminUser, keyAdminPassword: c.AdminPassword, keyUser: c.User, keyPassword: c.Password} {
		if v == "" {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return c, fmt.Errorf("influxd credentials %s: missing %s", path, strings.Join(missing, ", "))
	}
	return c, nil
}

func randomSecret() (string, error) {
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("influxd credentials: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// ensureUsers makes the accounts of c exist on the server at url with their passwords: on a new server (no users
// yet) it creates the admin without authentication, as InfluxDB 1.8 allows for the first admin only; then, as the
// admin, it creates c.Database, creates the service user or resets its password, and grants it ALL on the
// database. Errors: the admin's password does not match a server that already has users (the credentials file and
// the data directory belong to different installations), or any statement failing.
func ensureUsers(ctx context.Context, url string, c Credentials) error {
	admin := c.AdminToken()
	if err := execQL(ctx, url, admin, "", "SHOW USERS"); err != nil {
		create := fmt.Sprintf("CREATE USER %s WITH PASSWORD %s WITH ALL PRIVILEGES", QuoteIdent(c.AdminUser), quoteString(c.AdminPassword))
		if cerr := execQL(ctx, url, "", "", create); cerr != nil {
			return fmt.Errorf("influxd: admin %q cannot log in (%v) and cannot be created (%v): the credentials file does not belong to this data directory", c.AdminUser, err, redactPassword(cerr, c))
		}
	}
	stmts := []string{"CREATE DATABASE " + QuoteIdent(c.Database)}
	err := execQL(ctx, url, admin, "", fmt.Sprintf("CREATE USER %s WITH PASSWORD %s", QuoteIdent(c.User), quoteString(c.Password)))
	if err != nil && !strings.Contains(err.Error(), "user already exists") {
		return fmt.Errorf("influxd: %w", redactPassword(err, c))
	}
	stmts = append(stmts,
		fmt.Sprintf("SET PASSWORD FOR %s = %s", QuoteIdent(c.User), quoteString(c.Password)),
		fmt.Sprintf("GRANT ALL ON %s TO %s", QuoteIdent(c.Database), QuoteIdent(c.User)))
	for _, st := range stmts {
		if err := execQL(ctx, url, admin, "", st); err != nil {
			return fmt.Errorf("influxd: %s: %w", strings.SplitN(st, " WITH", 2)[0], redactPassword(err, c))
		}
	}
	return nil
}

// quoteString returns s as a single-quoted InfluxQL string literal.
func quoteString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// redactPassword hides the passwords of c in err's text (execQL quotes the statement).
func redactPassword(err error, c Credentials) error {
	msg := strings.NewReplacer(c.AdminPassword, "***", c.Password, "***").Replace(err.Error())
	return errors.New(msg)
}
