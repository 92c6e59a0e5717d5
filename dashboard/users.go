package dashboard

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"database/sql"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/internal/sqldb"
)

// The account roles.
const (
	RoleAdmin     = "admin"
	RoleManager   = "manager"
	RoleNurseLead = "nurse_lead"
	RoleCaregiver = "caregiver"
	RoleFamily    = "family"
)

// Roles lists every role, most privileged first.
var Roles = []string{RoleAdmin, RoleManager, RoleNurseLead, RoleCaregiver, RoleFamily}

// Languages are the user interface languages a user may choose.
var Languages = []string{"en", "zh-CN"}

// Limits of account fields.
const (
	MaxUsernameLen = 64
	MaxNameLen     = 64
	// MinPasswordLen and MaxPasswordLen bound a password, in bytes
	// (NIST SP 800-63B §5.1.1.2: at least 8, allow at least 64).
	MinPasswordLen = 10
	MaxPasswordLen = 256
)

// Errors of the account store.
var (
	// ErrUserNotFound: no user with that id or username.
	ErrUserNotFound = errors.New("user not found")
	// ErrUserExists: the username is taken.
	ErrUserExists = errors.New("username already exists")
	// ErrBadLogin: unknown username or wrong password (deliberately the
	// same error for both).
	ErrBadLogin = errors.New("wrong username or password")
)

// User is a dashboard account. Sites are the registry site ids a staff
// member sees (ignored for admin, who sees all); Residents are the resident
// ids a family member is linked to. Lang is "en" or "zh-CN".
type User struct {
	ID                         int64
	Username, Name, Role, Lang string
	Sites, Residents           []string
	Created, Updated           time.Time
	// Disabled accounts cannot log in and have no sessions.
	Disabled bool
}

// Display returns the name shown in the alert history: Name, else Username.
func (u *User) Display() string {
	if u.Name != "" {
		return u.Name
	}
	return u.Username
}

// Validate reports every problem of the user's fields (not the password).
func (u User) Validate() error {
	var errs []error
	if u.Username == "" {
		errs = append(errs, errors.New("username: required"))
	} else if len(u.Username) > MaxUsernameLen {
		errs = append(errs, fmt.Errorf("username: %d characters, at most %d", len(u.Username), MaxUsernameLen))
	} else {
		for _, r := range u.Username {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-' || r == '@') {
				errs = append(errs, fmt.Errorf("username %q: only lower-case letters a-z, digits and . _ - @", truncate(u.Username, 32)))
				break
			}
		}
	}
	if err := checkText("name", u.Name, MaxNameLen, false); err != nil {
		errs = append(errs, err)
	}
	if !slices.Contains(Roles, u.Role) {
		errs = append(errs, fmt.Errorf("role %q: want one of %s", truncate(u.Role, 32), strings.Join(Roles, ", ")))
	}
	if !slices.Contains(Languages, u.Lang) {
		errs = append(errs, fmt.Errorf("language %q: want one of %s", truncate(u.Lang, 16), strings.Join(Languages, ", ")))
	}
	for _, s := range u.Sites {
		if err := device.ValidateID("site", s); err != nil {
			errs = append(errs, err)
		}
	}
	for _, r := range u.Residents {
		if err := device.ValidateID("resident", r); err != nil {
			errs = append(errs, err)
		}
	}
	switch {
	case u.Role == RoleFamily && len(u.Residents) == 0:
		errs = append(errs, errors.New("residents: a family account needs at least one linked resident"))
	case u.Role != RoleFamily && len(u.Residents) > 0:
		errs = append(errs, errors.New("residents: only family accounts are linked to residents"))
	case u.Role != RoleFamily && u.Role != RoleAdmin && len(u.Sites) == 0:
		errs = append(errs, fmt.Errorf("sites: a %s account needs at least one site", u.Role))
	}
	return errors.Join(errs...)
}

//go:embed common_passwords.txt
var commonPasswordsText string

// commonPasswords is common_passwords.txt as a set (lower case).
var commonPasswords = func() map[string]bool {
	m := map[string]bool{}
	for _, line := range strings.Split(commonPasswordsText, "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			m[strings.ToLower(line)] = true
		}
	}
	return m
}()

// ErrCommonPassword: the password is on the list of common passwords
// (common_passwords.txt).
var ErrCommonPassword = errors.New("password: too common (it is on a list of passwords attackers try first); choose another")

// IsCommonPassword reports whether pw (case-insensitive) is on the list of
// common passwords, or is one character repeated.
func IsCommonPassword(pw string) bool {
	l := strings.ToLower(pw)
	if commonPasswords[l] {
		return true
	}
	if l != "" && strings.Count(l, l[:1]) == len(l) {
		return true
	}
	return false
}

// CheckPassword rejects a password shorter than MinPasswordLen or longer
// than MaxPasswordLen bytes, not UTF-8, or common (ErrCommonPassword).
func CheckPassword(pw string) error {
	switch {
	case !utf8.ValidString(pw):
		return errors.New("password: not valid UTF-8")
	case len(pw) < MinPasswordLen:
		return fmt.Errorf("password: %d characters, at least %d", len(pw), MinPasswordLen)
	case len(pw) > MaxPasswordLen:
		return fmt.Errorf("password: %d bytes, at most %d", len(pw), MaxPasswordLen)
	case IsCommonPassword(pw):
		return ErrCommonPassword
	}
	return nil
}

// GeneratePassword returns a random password of 20 characters from an
// alphabet without look-alikes (about 112 bits).
func GeneratePassword() string {
	const alphabet = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	b := make([]byte, 20)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand: " + err.Error())
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)] // 256 % 56 bias: < 0.5 bit over 20 chars
	}
	return string(b)
}

// argonParams are the argon2id cost parameters of new hashes: RFC 9106
// §4 "second recommended option" (t=3, 64 MiB, 4 lanes). Stored in each
// hash, so changing them does not invalidate old hashes. Tests lower them.
var argonParams = struct {
	time, memoryKiB uint32
	threads         uint8
}{time: 3, memoryKiB: 64 * 1024, threads: 4}

const argonKeyLen, argonSaltLen = 32, 16

// HashPassword returns the argon2id hash of pw in the PHC string format
// "$argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<key>" (base64 without
// padding), as the reference implementation (RFC 9106) writes it.
func HashPassword(pw string) (string, error) {
	if err := CheckPassword(pw); err != nil {
		return "", err
	}
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	p := argonParams
	key := argon2.IDKey([]byte(pw), salt, p.time, p.memoryKiB, p.threads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.memoryKiB, p.time, p.threads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

// VerifyPassword reports whether pw matches hash (constant-time compare).
// A malformed hash is an error.
func VerifyPassword(hash, pw string) (bool, error) {
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" || parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return false, errors.New(`password hash: want "$argon2id$v=19$m=..,t=..,p=..$salt$key"`)
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || m < 8 || m > 4<<20 || t < 1 || t > 100 || p < 1 {
		return false, fmt.Errorf("password hash: bad parameters %q", parts[3])
	}
	salt, err := base64.RawStdEncoding.DecodeString(parts[4])
	if err != nil || len(salt) < 8 {
		return false, errors.New("password hash: salt is not base64")
	}
	key, err := base64.RawStdEncoding.DecodeString(parts[5])
	if err != nil || len(key) < 16 {
		return false, errors.New("password hash: key is not base64")
	}
	got := argon2.IDKey([]byte(pw), salt, t, m, p, uint32(len(key)))
	return subtle.ConstantTimeCompare(got, key) == 1, nil
}

//go:embed migrations/*.sql
var migrationsFS embed.FS

// VersionTable is the goose version table of the dashboard's migrations.
const VersionTable = "dashboard_version"

// Accounts stores the dashboard's users and audit log in the shared SQL
// database (SQLite or PostgreSQL through internal/sqldb). Safe for
// concurrent use.
type Accounts struct {
	db        *sqldb.DB
	now       func() time.Time
	dummyHash string // verified for unknown usernames, so timing does not tell
	// hashing bounds concurrent argon2id computations (64 MiB each) so a
	// burst of logins cannot exhaust memory: GOMAXPROCS slots, at least 2.
	hashing chan struct{}
}

// hashSlot waits for a free hashing slot; release it with the returned
// func. Errors: ctx ended first.
func (a *Accounts) hashSlot(ctx context.Context) (func(), error) {
	select {
	case a.hashing <- struct{}{}:
		return func() { <-a.hashing }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for a password hashing slot: %w", ctx.Err())
	}
}

// dummyHash is the hash a login of an unknown user is checked against,
// so that it takes as long as a wrong password: of a random password no
// one knows, made once per process (an argon2id hash costs about a second
// of CPU under the race detector, and every OpenAccounts paid it).
var dummyHash = sync.OnceValues(func() (string, error) { return HashPassword(GeneratePassword()) })

// OpenAccounts migrates the dashboard schema (version table
// dashboard_version) and returns the store. now nil = time.Now.
func OpenAccounts(ctx context.Context, db *sqldb.DB, now func() time.Time) (*Accounts, error) {
	sub, err := fs.Sub(migrationsFS, "migrations")
	if err != nil {
		return nil, err
	}
	if err := db.Migrate(ctx, sub, VersionTable); err != nil {
		return nil, fmt.Errorf("dashboard accounts: %w", err)
	}
	if now == nil {
		now = time.Now
	}
	dummy, err := dummyHash()
	if err != nil {
		return nil, err
	}
	return &Accounts{db: db, now: now, dummyHash: dummy, hashing: make(chan struct{}, max(2, runtime.GOMAXPROCS(0)))}, nil
}

func joinIDs(ids []string) string { return strings.Join(ids, " ") }
func splitIDs(s string) []string  { return strings.Fields(s) }

// nextID allocates the next value of counter name inside tx.
func (a *Accounts) nextID(ctx context.Context, tx *sql.Tx, name string) (int64, error) {
	if _, err := tx.ExecContext(ctx, a.db.Rebind("UPDATE dashboard_counters SET value = value + 1 WHERE name = ?"), name); err != nil {
		return 0, err
	}
	var id int64
	err := tx.QueryRowContext(ctx, a.db.Rebind("SELECT value FROM dashboard_counters WHERE name = ?"), name).Scan(&id)
	return id, err
}

// Add creates a user with password (hashed with argon2id) and returns it
// with ID and times set. Errors: invalid fields or password (every problem
// joined), ErrUserExists, database errors.
func (a *Accounts) Add(ctx context.Context, u User, password string) (User, error) {
	if u.Lang == "" {
		u.Lang = "en"
	}
	if u.Role == RoleAdmin {
		u.Sites = nil
	}
	if err := errors.Join(u.Validate(), CheckPassword(password)); err != nil {
		return User{}, fmt.Errorf("add user: %w", err)
	}
	release, err := a.hashSlot(ctx)
	if err != nil {
		return User{}, err
	}
	hash, err := HashPassword(password)
	release()
	if err != nil {
		return User{}, err
	}
	tx, err := a.db.BeginTx(ctx, nil)
	if err != nil {
		return User{}, fmt.Errorf("add user %s: %w", u.Username, err)
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRowContext(ctx, a.db.Rebind("SELECT COUNT(*) FROM dashboard_users WHERE username = ?"), u.Username).Scan(&n); err != nil {
		return User{}, fmt.Errorf("add user %s: %w", u.Username, err)
	}
	if n > 0 {
		return User{}, fmt.Errorf("add user %s: %w", u.Username, ErrUserExists)
	}
	if u.ID, err = a.nextID(ctx, tx, "user"); err != nil {
		return User{}, fmt.Errorf("add user %s: %w", u.Username, err)
	}
	now := a.now().UTC().Truncate(time.Millisecond)
	u.Created, u.Updated = now, now
	if _, err := tx.ExecContext(ctx, a.db.Rebind(`INSERT INTO dashboard_users
		(id, username, name, role, password_hash, lang, sites, residents, created_ms, updated_ms)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		u.ID, u.Username, u.Name, u.Role, hash, u.Lang, joinIDs(u.Sites), joinIDs(u.Residents), now.UnixMilli(), now.UnixMilli()); err != nil {
		return User{}, fmt.Errorf("add user %s: %w", u.Username, err)
	}
	if err := tx.Commit(); err != nil {
		return User{}, fmt.Errorf("add user %s: %w", u.Username, err)
	}
	return u, nil
}

const userColumns = "id, username, name, role, lang, sites, residents, created_ms, updated_ms, disabled"

func scanUser(sc interface{ Scan(...any) error }, extra ...any) (User, error) {
	var u User
	var sites, residents string
	var created, updated, disabled int64
	dest := append([]any{&u.ID, &u.Username, &u.Name, &u.Role, &u.Lang, &sites, &residents, &created, &updated, &disabled}, extra...)
	if err := sc.Scan(dest...); err != nil {
		return User{}, err
	}
	u.Sites, u.Residents = splitIDs(sites), splitIDs(residents)
	u.Created, u.Updated = time.UnixMilli(created).UTC(), time.UnixMilli(updated).UTC()
	u.Disabled = disabled != 0
	return u, nil
}

// Get returns the user with id, or ErrUserNotFound.
func (a *Accounts) Get(ctx context.Context, id int64) (User, error) {
	u, err := scanUser(a.db.QueryRowContext(ctx, a.db.Rebind("SELECT "+userColumns+" FROM dashboard_users WHERE id = ?"), id))
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, fmt.Errorf("user %d: %w", id, ErrUserNotFound)
	}
	if err != nil {
		return User{}, fmt.Errorf("read user %d: %w", id, err)
	}
	return u, nil
}

// List returns every user ordered by username.
func (a *Accounts) List(ctx context.Context) ([]User, error) {
	rows, err := a.db.QueryContext(ctx, "SELECT "+userColumns+" FROM dashboard_users ORDER BY username")
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	defer rows.Close()
	var out []User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("list users: %w", err)
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	return out, nil
}

// Count returns the number of users.
func (a *Accounts) Count(ctx context.Context) (int, error) {
	var n int
	if err := a.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM dashboard_users").Scan(&n); err != nil {
		return 0, fmt.Errorf("count users: %w", err)
	}
	return n, nil
}

// Authenticate returns the user when password matches; ErrBadLogin for an
// unknown username or a wrong password. It costs one argon2id hash either
// way.
func (a *Accounts) Authenticate(ctx context.Context, username, password string) (User, error) {
	release, err := a.hashSlot(ctx)
	if err != nil {
		return User{}, err
	}
	defer release()
	var hash string
	u, err := scanUser(a.db.QueryRowContext(ctx, a.db.Rebind("SELECT "+userColumns+", password_hash FROM dashboard_users WHERE username = ?"), username), &hash)
	if errors.Is(err, sql.ErrNoRows) {
		VerifyPassword(a.dummyHash, password) //nolint:errcheck // equal timing only
		return User{}, ErrBadLogin
	}
	if err != nil {
		return User{}, fmt.Errorf("read user %s: %w", truncate(username, 32), err)
	}
	ok, err := VerifyPassword(hash, password)
	if err != nil {
		return User{}, fmt.Errorf("user %s: %w", u.Username, err)
	}
	if !ok || u.Disabled {
		return User{}, ErrBadLogin
	}
	return u, nil
}

// SetDisabled disables (true) or enables the account username. The
// caller ends its sessions. Errors: ErrUserNotFound, database errors.
func (a *Accounts) SetDisabled(ctx context.Context, username string, disabled bool) error {
	v := 0
	if disabled {
		v = 1
	}
	return a.update(ctx, username, "disabled = ?", v)
}

// ByUsername returns the user username, or ErrUserNotFound.
func (a *Accounts) ByUsername(ctx context.Context, username string) (User, error) {
	u, err := scanUser(a.db.QueryRowContext(ctx, a.db.Rebind("SELECT "+userColumns+" FROM dashboard_users WHERE username = ?"), username))
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, fmt.Errorf("user %s: %w", truncate(username, 32), ErrUserNotFound)
	}
	if err != nil {
		return User{}, fmt.Errorf("read user %s: %w", truncate(username, 32), err)
	}
	return u, nil
}

// SetPassword replaces the password of username. Errors: a password
// CheckPassword rejects, ErrUserNotFound, database errors.
func (a *Accounts) SetPassword(ctx context.Context, username, password string) error {
	release, err := a.hashSlot(ctx)
	if err != nil {
		return err
	}
	hash, err := HashPassword(password)
	release()
	if err != nil {
		return err
	}
	return a.update(ctx, username, "password_hash = ?", hash)
}

// SetLang sets the interface language ("en" or "zh-CN") of username.
func (a *Accounts) SetLang(ctx context.Context, username, lang string) error {
	if !slices.Contains(Languages, lang) {
		return fmt.Errorf("language %q: want one of %s", truncate(lang, 16), strings.Join(Languages, ", "))
	}
	return a.update(ctx, username, "lang = ?", lang)
}

func (a *Accounts) update(ctx context.Context, username, set string, v any) error {
	res, err := a.db.ExecContext(ctx, a.db.Rebind("UPDATE dashboard_users SET "+set+", updated_ms = ? WHERE username = ?"), v, a.now().UnixMilli(), username)
	if err != nil {
		return fmt.Errorf("update user %s: %w", username, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("user %s: %w", username, ErrUserNotFound)
	}
	return nil
}

// Update replaces the name, role, language, sites and residents of the
// user u.Username (not the password). Errors: invalid fields (every
// problem joined), ErrUserNotFound, database errors. Sessions of the user
// see the change at their next request.
func (a *Accounts) Update(ctx context.Context, u User) error {
	if u.Lang == "" {
		u.Lang = "en"
	}
	if u.Role == RoleAdmin {
		u.Sites = nil
	}
	if err := u.Validate(); err != nil {
		return fmt.Errorf("update user: %w", err)
	}
	res, err := a.db.ExecContext(ctx, a.db.Rebind(`UPDATE dashboard_users SET name = ?, role = ?, lang = ?, sites = ?, residents = ?, updated_ms = ?
		WHERE username = ?`), u.Name, u.Role, u.Lang, joinIDs(u.Sites), joinIDs(u.Residents), a.now().UnixMilli(), u.Username)
	if err != nil {
		return fmt.Errorf("update user %s: %w", u.Username, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("user %s: %w", u.Username, ErrUserNotFound)
	}
	return nil
}
