package sqldb_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/eldercare-iot/eldercare/internal/sqldb"
	"github.com/eldercare-iot/eldercare/internal/sqldb/sqldbtest"
)

func TestOpenDSN(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		dsn     string
		dialect sqldb.Dialect
		file    string // must exist after Open
		wantErr string
	}{
		{name: "sqlite scheme", dsn: "sqlite:" + filepath.Join(dir, "a", "x.db"), dialect: sqldb.SQLite, file: filepath.Join(dir, "a", "x.db")},
		{name: "sqlite url", dsn: "sqlite://" + filepath.Join(dir, "b", "c", "x.db"), dialect: sqldb.SQLite, file: filepath.Join(dir, "b", "c", "x.db")},
		{name: "bare path", dsn: filepath.Join(dir, "d", "x.db"), dialect: sqldb.SQLite, file: filepath.Join(dir, "d", "x.db")},
		{name: "memory", dsn: "sqlite::memory:", dialect: sqldb.SQLite},
		{name: "empty", dsn: "", wantErr: "empty DSN"},
		{name: "unknown scheme", dsn: "mysql://root@localhost/x", wantErr: `unsupported scheme "mysql"`},
		{name: "empty sqlite path", dsn: "sqlite:", wantErr: "empty SQLite path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, err := sqldb.Open(context.Background(), tt.dsn)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Open(%q) error = %v, want %q", tt.dsn, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open(%q): %v", tt.dsn, err)
			}
			defer db.Close()
			if db.Dialect != tt.dialect {
				t.Errorf("dialect = %q, want %q", db.Dialect, tt.dialect)
			}
			if tt.file != "" {
				if _, err := os.Stat(tt.file); err != nil {
					t.Errorf("database file: %v", err)
				}
			}
		})
	}
}

func TestSQLitePragmas(t *testing.T) {
	ctx := context.Background()
	db, err := sqldb.Open(ctx, sqldbtest.SQLiteDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tests := []struct {
		pragma string
		want   string
	}{
		{"journal_mode", "wal"},
		{"busy_timeout", "5000"},
		{"foreign_keys", "1"},
		{"synchronous", "1"}, // NORMAL
	}
	for _, tt := range tests {
		t.Run(tt.pragma, func(t *testing.T) {
			var got string
			if err := db.QueryRowContext(ctx, "PRAGMA "+tt.pragma).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("PRAGMA %s = %q, want %q", tt.pragma, got, tt.want)
			}
		})
	}
}

func TestSQLitePragmaOverride(t *testing.T) {
	ctx := context.Background()
	db, err := sqldb.Open(ctx, sqldbtest.SQLiteDSN(t)+"?_pragma=busy_timeout(100)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var got int
	if err := db.QueryRowContext(ctx, "PRAGMA busy_timeout").Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got != 100 {
		t.Errorf("busy_timeout = %d, want 100 from the DSN", got)
	}
}

func TestRebind(t *testing.T) {
	tests := []struct {
		name, in, pg string
	}{
		{"none", "SELECT 1", "SELECT 1"},
		{"several", "SELECT a FROM t WHERE b = ? AND c IN (?, ?)", "SELECT a FROM t WHERE b = $1 AND c IN ($2, $3)"},
		{"string literal", "SELECT '?' , ? FROM t", "SELECT '?' , $1 FROM t"},
		{"quoted identifier", `SELECT "a?" FROM t WHERE x = ?`, `SELECT "a?" FROM t WHERE x = $1`},
		{"comment", "SELECT ? -- why?\n, ?", "SELECT $1 -- why?\n, $2"},
		{"unterminated literal", "SELECT ?, 'x?", "SELECT $1, 'x?"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pg := &sqldb.DB{Dialect: sqldb.Postgres}
			if got := pg.Rebind(tt.in); got != tt.pg {
				t.Errorf("postgres Rebind(%q) = %q, want %q", tt.in, got, tt.pg)
			}
			lite := &sqldb.DB{Dialect: sqldb.SQLite}
			if got := lite.Rebind(tt.in); got != tt.in {
				t.Errorf("sqlite Rebind(%q) = %q, want it unchanged", tt.in, got)
			}
		})
	}
}

// TestMigrate runs two components' migrations into one database, each with
// its own version table, twice, on every dialect.
func TestMigrate(t *testing.T) {
	a := fstest.MapFS{
		"00001_a.sql": {Data: []byte("-- +goose Up\nCREATE TABLE a_items (id TEXT PRIMARY KEY, at_ms BIGINT NOT NULL);\n-- +goose Down\nDROP TABLE a_items;\n")},
		"00002_a.sql": {Data: []byte("-- +goose Up\nALTER TABLE a_items ADD COLUMN note TEXT;\n-- +goose Down\nSELECT 1;\n")},
	}
	b := fstest.MapFS{
		"00001_b.sql": {Data: []byte("-- +goose Up\nCREATE TABLE b_items (id TEXT PRIMARY KEY);\n-- +goose Down\nDROP TABLE b_items;\n")},
	}
	sqldbtest.Dialects(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		db, err := sqldb.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		for range 2 { // the second pass must be a no-op
			if err := db.Migrate(ctx, a, "a_version"); err != nil {
				t.Fatal(err)
			}
			if err := db.Migrate(ctx, b, "b_version"); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := db.ExecContext(ctx, db.Rebind("INSERT INTO a_items (id, at_ms, note) VALUES (?, ?, ?)"), "x", int64(1), "n"); err != nil {
			t.Fatal(err)
		}
		for table, want := range map[string]int64{"a_version": 2, "b_version": 1} {
			var got int64
			if err := db.QueryRowContext(ctx, "SELECT MAX(version_id) FROM "+table).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("%s version = %d, want %d", table, got, want)
			}
		}
		if err := db.Migrate(ctx, fstest.MapFS{}, "c_version"); err == nil {
			t.Error("Migrate with no migrations succeeded, want error")
		}
		if err := db.Migrate(ctx, a, ""); err == nil {
			t.Error("Migrate with empty table succeeded, want error")
		}
	})
}

// TestMigrateConcurrentPostgres checks that replicas starting together
// serialize on the advisory lock instead of failing.
func TestMigrateConcurrentPostgres(t *testing.T) {
	dsn := sqldbtest.PostgresDSN(t)
	migrations := fstest.MapFS{
		"00001_x.sql": {Data: []byte("-- +goose Up\nCREATE TABLE x_items (id TEXT PRIMARY KEY);\n-- +goose Down\nDROP TABLE x_items;\n")},
		"00002_x.sql": {Data: []byte("-- +goose Up\nCREATE INDEX x_items_id ON x_items (id);\n-- +goose Down\nDROP INDEX x_items_id;\n")},
	}
	ctx := context.Background()
	const replicas = 4
	errs := make(chan error, replicas)
	for range replicas {
		go func() {
			db, err := sqldb.Open(ctx, dsn)
			if err != nil {
				errs <- err
				return
			}
			defer db.Close()
			errs <- db.Migrate(ctx, migrations, "x_version")
		}()
	}
	for range replicas {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// TestMigrateConcurrentStarts opens six databases on one new file or schema
// at once, as six processes started together would, and migrates two
// components from each: every start must succeed (issue 15: without the
// lock 2 of 6 failed with "table ... already exists" on SQLite).
func TestMigrateConcurrentStarts(t *testing.T) {
	a := fstest.MapFS{
		"00001_a.sql": {Data: []byte("-- +goose Up\nCREATE TABLE a_items (id TEXT PRIMARY KEY);\n-- +goose Down\nDROP TABLE a_items;\n")},
		"00002_a.sql": {Data: []byte("-- +goose Up\nCREATE INDEX a_items_id ON a_items (id);\n-- +goose Down\nDROP INDEX a_items_id;\n")},
	}
	b := fstest.MapFS{
		"00001_b.sql": {Data: []byte("-- +goose Up\nCREATE TABLE b_items (id TEXT PRIMARY KEY);\n-- +goose Down\nDROP TABLE b_items;\n")},
	}
	sqldbtest.Dialects(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		const starts = 6
		errs := make(chan error, starts)
		for i := range starts {
			go func() {
				db, err := sqldb.Open(ctx, dsn)
				if err != nil {
					errs <- err
					return
				}
				defer db.Close()
				first, second := a, b
				tf, ts := "a_version", "b_version"
				if i%2 == 1 {
					first, second, tf, ts = b, a, ts, tf
				}
				if err := db.Migrate(ctx, first, tf); err != nil {
					errs <- err
					return
				}
				errs <- db.Migrate(ctx, second, ts)
			}()
		}
		for range starts {
			if err := <-errs; err != nil {
				t.Error(err)
			}
		}
		db, err := sqldb.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		for table, want := range map[string][]int64{"a_version": {1, 2}, "b_version": {1}} {
			got, ok, err := db.Applied(ctx, table)
			if err != nil || !ok {
				t.Fatalf("Applied(%s) = %v, %v, %v", table, got, ok, err)
			}
			var versions []int64
			for _, m := range got {
				versions = append(versions, m.Version)
				if m.At.IsZero() || time.Since(m.At) > time.Hour {
					t.Errorf("%s version %d applied at %v, want about now", table, m.Version, m.At)
				}
			}
			if !slices.Equal(versions, want) {
				t.Errorf("%s applied %v, want %v", table, versions, want)
			}
		}
		if got, ok, err := db.Applied(ctx, "never_version"); err != nil || ok || got != nil {
			t.Errorf("Applied(never_version) = %v, %v, %v; want nil, false, nil", got, ok, err)
		}
	})
}

// TestSQLiteFileModes checks that a new store and its WAL are private.
func TestSQLiteFileModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	path := filepath.Join(dir, "eldercare.db")
	db, err := sqldb.Open(context.Background(), "sqlite:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("CREATE TABLE t (x INTEGER)"); err != nil {
		t.Fatal(err)
	}
	if db.Path() != path {
		t.Errorf("Path() = %q, want %q", db.Path(), path)
	}
	for p, want := range map[string]os.FileMode{dir: 0o700, path: 0o600, path + "-wal": 0o600} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s mode %o, want %o", p, got, want)
		}
	}
}
