// Package sqldbtest gives store tests a fresh database per test on every
// supported dialect: SQLite in t.TempDir() and the machine's PostgreSQL in a
// schema of its own, so test packages that run in parallel never collide.
package sqldbtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/internal/testenv"

	_ "github.com/jackc/pgx/v5/stdlib" // registers driver "pgx"
)

// DefaultPostgresURL is the server used when ELDERCARE_TEST_POSTGRES is unset:
// the machine's PostgreSQL with trust authentication.
const DefaultPostgresURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// PostgresURL returns the base URL of the test server: the environment
// variable ELDERCARE_TEST_POSTGRES, or DefaultPostgresURL.
func PostgresURL() string {
	if u := os.Getenv("ELDERCARE_TEST_POSTGRES"); u != "" {
		return u
	}
	return DefaultPostgresURL
}

// SQLiteDSN returns the DSN of a new SQLite file in t.TempDir(), in a
// subdirectory that does not exist yet (Open must create it).
func SQLiteDSN(t testing.TB) string {
	t.Helper()
	return "sqlite:" + filepath.Join(t.TempDir(), "db", "eldercare.db")
}

// PostgresDSN creates a schema named t_<random hex> on the test server and
// returns a DSN whose search_path selects it. The schema is dropped with
// CASCADE when the test ends. If the server cannot be reached the test is
// skipped, unless the environment variable CI is set, in which case it fails;
// under -short it is skipped without trying.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	testenv.NeedsServer(t, "PostgreSQL")
	base := PostgresURL()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	admin, err := sql.Open("pgx", base)
	if err == nil {
		err = admin.PingContext(ctx)
	}
	if err != nil {
		if admin != nil {
			admin.Close()
		}
		testenv.Unavailable(t, "PostgreSQL at %s unreachable: %v", redact(base), err)
	}
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	schema := "t_" + hex.EncodeToString(b[:])
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		admin.Close()
		t.Fatalf("create schema %s: %v", schema, err)
	}
	t.Cleanup(func() {
		defer admin.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP SCHEMA IF EXISTS "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("parse %s: %v", redact(base), err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// Dialects runs fn once per dialect as a subtest named "sqlite" and
// "postgres", each with a fresh database DSN.
func Dialects(t *testing.T, fn func(t *testing.T, dsn string)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) { fn(t, SQLiteDSN(t)) })
	t.Run("postgres", func(t *testing.T) { fn(t, PostgresDSN(t)) })
}

// redact hides a password in a URL for log output.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<invalid URL>"
	}
	return u.Redacted()
}
