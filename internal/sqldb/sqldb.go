// Package sqldb opens the SQL database shared by the registry and the alert
// store from one URL, and runs each component's goose migrations with its own
// version table.
//
// Two dialects are supported: SQLite (modernc.org/sqlite, pure Go, the default
// for a single-site "up") and PostgreSQL (jackc/pgx stdlib driver, for
// deployments with several replicas). Callers write queries once with `?`
// placeholders and pass them through [DB.Rebind].
package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers driver "pgx"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	_ "modernc.org/sqlite" // registers driver "sqlite"
)

// Dialect names the SQL dialect of a [DB].
type Dialect string

// The supported dialects.
const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
)

// DB is a *sql.DB together with its dialect. It is safe for concurrent use.
type DB struct {
	*sql.DB
	// Dialect is SQLite or Postgres.
	Dialect Dialect
	// path is the SQLite file ("" for PostgreSQL and in-memory databases).
	path string
}

// Path returns the SQLite database file, or "" for PostgreSQL and for an
// in-memory database.
func (db *DB) Path() string { return db.path }

// sqlitePragmas are applied to every SQLite connection unless the DSN already
// sets the same pragma. busy_timeout is in ms: with _txlock=immediate every
// write transaction takes the write lock at BEGIN and waits up to 5 s for it,
// so writers serialize instead of failing with SQLITE_BUSY.
var sqlitePragmas = []string{
	"busy_timeout(5000)",
	"journal_mode(WAL)",
	"foreign_keys(1)",
	"synchronous(NORMAL)",
}

// Open connects to the database named by dsn and pings it.
//
// Accepted forms:
//   - postgres://... or postgresql://... : PostgreSQL through the pgx stdlib
//     driver; every pgx connection-string parameter is honoured (for example
//     search_path, sslmode).
//   - sqlite:PATH, sqlite://PATH or a bare file path: SQLite. The parent
//     directory of PATH is created (mode 0700), and the file itself (mode
//     0600) before SQLite opens it, so its -wal and -shm files, which SQLite
//     creates with the database file's mode, are 0600 too: the store holds
//     health data and password hashes. Query parameters after `?` are
//     passed to modernc.org/sqlite; the pragmas journal_mode=WAL,
//     busy_timeout=5000, foreign_keys=ON and synchronous=NORMAL and
//     _txlock=immediate are added unless the DSN sets them. ":memory:" gives a
//     private in-memory database on a single connection.
//
// Open returns an error for an empty DSN, an unknown URL scheme, or a database
// that cannot be reached.
func Open(ctx context.Context, dsn string) (*DB, error) {
	dialect, driver, source, err := parseDSN(dsn)
	if err != nil {
		return nil, err
	}
	var path string
	if dialect == SQLite && !isMemory(source) {
		path, _, _ = strings.Cut(strings.TrimPrefix(source, "file:"), "?")
		if err := prepareFile(path); err != nil {
			return nil, err
		}
	}
	sqldb, err := sql.Open(driver, source)
	if err != nil {
		return nil, fmt.Errorf("open %s database: %w", dialect, err)
	}
	switch {
	case dialect == SQLite && isMemory(source):
		// Every connection to ":memory:" is a separate database.
		sqldb.SetMaxOpenConns(1)
	case dialect == SQLite:
		// WAL lets many readers run beside one writer; writers queue on
		// the write lock for up to busy_timeout.
		n := max(4, runtime.GOMAXPROCS(0))
		sqldb.SetMaxOpenConns(n)
		sqldb.SetMaxIdleConns(n)
	default:
		sqldb.SetMaxOpenConns(32)
		sqldb.SetMaxIdleConns(8)
		sqldb.SetConnMaxIdleTime(5 * time.Minute)
	}
	if err := ping(ctx, sqldb, dialect); err != nil {
		sqldb.Close()
		return nil, fmt.Errorf("connect to %s database: %w", dialect, err)
	}
	return &DB{DB: sqldb, Dialect: dialect, path: path}, nil
}

// ping opens the first connection. On SQLite that connection applies the
// pragmas, and switching a new file to WAL needs an exclusive lock: when
// several processes open one new file together, SQLite may answer
// SQLITE_BUSY at once, without waiting busy_timeout. Open then retries for
// up to 15 s (every 50-500 ms) before it gives up.
func ping(ctx context.Context, db *sql.DB, dialect Dialect) error {
	const budget = 15 * time.Second
	deadline := time.Now().Add(budget)
	wait := 50 * time.Millisecond
	for {
		err := db.PingContext(ctx)
		if err == nil || dialect != SQLite || !isBusy(err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, 500*time.Millisecond)
	}
}

// isBusy reports whether err is SQLite's SQLITE_BUSY or SQLITE_LOCKED.
func isBusy(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "SQLITE_BUSY") || strings.Contains(msg, "database is locked") || strings.Contains(msg, "SQLITE_LOCKED")
}

// parseDSN maps a DSN onto a dialect, a database/sql driver name and the
// driver's data source name.
func parseDSN(dsn string) (Dialect, string, string, error) {
	dsn = strings.TrimSpace(dsn)
	switch {
	case dsn == "":
		return "", "", "", errors.New("open database: empty DSN")
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		return Postgres, "pgx", dsn, nil
	case strings.HasPrefix(dsn, "sqlite://"):
		dsn = strings.TrimPrefix(dsn, "sqlite://")
	case strings.HasPrefix(dsn, "sqlite:"):
		dsn = strings.TrimPrefix(dsn, "sqlite:")
	case strings.HasPrefix(dsn, "file:"):
		dsn = strings.TrimPrefix(dsn, "file:")
	default:
		if i := strings.Index(dsn, "://"); i > 0 {
			return "", "", "", fmt.Errorf("open database: unsupported scheme %q (want postgres://, postgresql://, sqlite: or a file path)", dsn[:i])
		}
	}
	path, rawQuery, _ := strings.Cut(dsn, "?")
	if path == "" {
		return "", "", "", errors.New("open database: empty SQLite path")
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return "", "", "", fmt.Errorf("open database: SQLite DSN parameters: %w", err)
	}
	have := map[string]bool{}
	for _, p := range q["_pragma"] {
		name, _, _ := strings.Cut(p, "(")
		name, _, _ = strings.Cut(name, "=")
		have[strings.ToLower(strings.TrimSpace(name))] = true
	}
	for _, p := range sqlitePragmas {
		name, _, _ := strings.Cut(p, "(")
		if !have[name] {
			q.Add("_pragma", p)
		}
	}
	if q.Get("_txlock") == "" {
		q.Set("_txlock", "immediate")
	}
	return SQLite, "sqlite", "file:" + path + "?" + q.Encode(), nil
}

// isMemory reports whether a modernc data source names an in-memory database.
func isMemory(source string) bool {
	path, rawQuery, _ := strings.Cut(strings.TrimPrefix(source, "file:"), "?")
	q, _ := url.ParseQuery(rawQuery)
	return path == ":memory:" || q.Get("mode") == "memory"
}

// prepareFile creates the directory that will hold the SQLite file path
// (mode 0700) and the file itself (empty, mode 0600) when it is missing.
// An existing file keeps its mode.
func prepareFile(path string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create SQLite directory %s: %w", dir, err)
	}
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("create SQLite file %s: %w", path, err)
	}
	return f.Close()
}

// Migrate applies every pending goose migration found at the root of fsys
// (files named like 00001_create.sql, see github.com/pressly/goose/v3) and
// records them in the version table named table, so each component keeps its
// own migration history in the shared database. Migration SQL must be valid on
// both SQLite and PostgreSQL.
//
// Migrations never race: on PostgreSQL, concurrent replicas serialize on a
// session advisory lock (pg_advisory_lock) derived from the current schema and
// table, waiting up to 5 minutes; on SQLite, processes serialize on an
// exclusive flock(2) of the file PATH-migrate.lock beside the database
// (the kernel drops it when a process dies), waiting up to 5 minutes. So
// roles started together on a new database all succeed.
func (db *DB) Migrate(ctx context.Context, fsys fs.FS, table string) error {
	if table == "" {
		return errors.New("migrate: empty version table name")
	}
	if db.Dialect == SQLite && db.path != "" {
		unlock, err := lockFile(ctx, db.path+"-migrate.lock", 5*time.Minute)
		if err != nil {
			return fmt.Errorf("migrate %s: %w", table, err)
		}
		defer unlock()
	}
	var dialect goose.Dialect
	opts := []goose.ProviderOption{
		goose.WithTableName(table),
		goose.WithDisableGlobalRegistry(true),
	}
	switch db.Dialect {
	case SQLite:
		dialect = goose.DialectSQLite3
	case Postgres:
		dialect = goose.DialectPostgres
		var schema string
		if err := db.QueryRowContext(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
			return fmt.Errorf("migrate %s: current schema: %w", table, err)
		}
		locker, err := lock.NewPostgresSessionLocker(
			lock.WithLockID(lockID(schema, table)),
			lock.WithLockTimeout(1, 300),
		)
		if err != nil {
			return fmt.Errorf("migrate %s: %w", table, err)
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	default:
		return fmt.Errorf("migrate %s: unsupported dialect %q", table, db.Dialect)
	}
	p, err := goose.NewProvider(dialect, db.DB, fsys, opts...)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", table, err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate %s: %w", table, err)
	}
	return nil
}

// lockID derives a PostgreSQL advisory lock id for one version table.
func lockID(schema, table string) int64 {
	h := fnv.New64a()
	h.Write([]byte("eldercare/goose\x00" + schema + "\x00" + table))
	return int64(h.Sum64() & (1<<63 - 1))
}

// Rebind rewrites `?` placeholders into `$1`, `$2`, ... for PostgreSQL and
// returns query unchanged for SQLite. Question marks inside single-quoted
// string literals, double-quoted identifiers and comments are left alone.
func (db *DB) Rebind(query string) string {
	if db.Dialect != Postgres {
		return query
	}
	return rebindDollar(query)
}

// rebindDollar does the work of Rebind for PostgreSQL.
func rebindDollar(query string) string {
	if !strings.Contains(query, "?") {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 8)
	n := 0
	for i := 0; i < len(query); i++ {
		c := query[i]
		switch {
		case c == '\'' || c == '"':
			j := strings.IndexByte(query[i+1:], c)
			if j < 0 {
				b.WriteString(query[i:])
				return b.String()
			}
			b.WriteString(query[i : i+j+2])
			i += j + 1
		case c == '-' && i+1 < len(query) && query[i+1] == '-':
			j := strings.IndexByte(query[i:], '\n')
			if j < 0 {
				b.WriteString(query[i:])
				return b.String()
			}
			b.WriteString(query[i : i+j+1])
			i += j
		case c == '?':
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
