package backup_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/eldercare-iot/eldercare/internal/backup"
	"github.com/eldercare-iot/eldercare/internal/sqldb"
)

// TestSQLiteOnly backs up a SQLite store and a secret, verifies the manifest,
// detects tampering, refuses a non-empty output, and restores; the restored
// store has the rows and the secret its bytes, both mode 0600.
func TestSQLiteOnly(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	dbPath := filepath.Join(data, "eldercare.db")
	db, err := sqldb.Open(ctx, "sqlite:"+dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1), (2), (3)"); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(data, "api-token"), []byte("secret-token\n"), 0o600)
	out := filepath.Join(t.TempDir(), "b")
	m, err := backup.Create(ctx, backup.Options{Out: out, SQLite: dbPath, Secrets: []string{filepath.Join(data, "api-token"), filepath.Join(data, "missing")}, Version: "1.2.3"})
	if err != nil {
		t.Fatal(err)
	}
	if m.SQLite != "eldercare.db" || m.InfluxDB != "" || len(m.Secrets) != 1 || len(m.Files) != 2 || m.Version != "1.2.3" {
		t.Errorf("manifest %+v", m)
	}
	if _, err := backup.Create(ctx, backup.Options{Out: out, SQLite: dbPath}); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("backup into a non-empty directory: %v", err)
	}
	if _, err := backup.Verify(out); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(out, "stray"), []byte("x"), 0o600)
	if _, err := backup.Verify(out); err == nil || !strings.Contains(err.Error(), "stray: not in the manifest") {
		t.Errorf("verify with a stray file: %v", err)
	}
	os.Remove(filepath.Join(out, "stray"))

	// A held data directory is refused.
	target := filepath.Join(t.TempDir(), "restored")
	unlock, err := backup.LockDataDir(target)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := backup.Restore(ctx, backup.RestoreOptions{From: out, DataDir: target}); !errors.Is(err, backup.ErrInUse) {
		t.Errorf("restore into a locked directory: %v, want ErrInUse", err)
	}
	unlock()
	if _, err := backup.Restore(ctx, backup.RestoreOptions{From: out, DataDir: target}); err != nil {
		t.Fatal(err)
	}
	rdb, err := sqldb.Open(ctx, "sqlite:"+filepath.Join(target, "eldercare.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	var n int
	if err := rdb.QueryRow("SELECT COUNT(*) FROM t").Scan(&n); err != nil || n != 3 {
		t.Errorf("restored rows %d, %v; want 3", n, err)
	}
	for _, name := range []string{"eldercare.db", "api-token"} {
		fi, err := os.Stat(filepath.Join(target, name))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want mode 600", name, fi.Mode().Perm(), err)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(target, "api-token")); string(b) != "secret-token\n" {
		t.Errorf("restored token %q", b)
	}
	// Again without --force: refused; with it: the old data moves aside.
	if _, err := backup.Restore(ctx, backup.RestoreOptions{From: out, DataDir: target}); err == nil || !strings.Contains(err.Error(), "already holds data") {
		t.Errorf("restore over data: %v", err)
	}
	if _, err := backup.Restore(ctx, backup.RestoreOptions{From: out, DataDir: target, Force: true}); err != nil {
		t.Errorf("restore --force: %v", err)
	}
	if aside, _ := filepath.Glob(filepath.Join(target, "replaced-*", "eldercare.db")); len(aside) != 1 {
		t.Errorf("moved aside: %v", aside)
	}
}
