package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/internal/sqldb"
	"github.com/eldercare-iot/eldercare/internal/sqldb/sqldbtest"
)

// TestMigrateConcurrentRoles starts six processes at once on a new SQLite
// file and on a new PostgreSQL schema, three migrating as the alerting role
// does (registry, alerting) and three as the dashboard role does (registry,
// dashboard, alerting): all must succeed, and `migrate status` then lists
// every component's versions.
func TestMigrateConcurrentRoles(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, dsn string) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		roles := []string{"registry,alerting", "registry,dashboard,alerting"}
		type result struct {
			out []byte
			err error
		}
		res := make(chan result, 6)
		for i := range 6 {
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestMigrateChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), "ELDERCARE_TEST_MIGRATE_DB="+dsn, "ELDERCARE_TEST_MIGRATE_COMPONENTS="+roles[i%2])
			go func() {
				out, err := cmd.CombinedOutput()
				res <- result{out, err}
			}()
		}
		for range 6 {
			r := <-res
			if r.err != nil || !strings.Contains(string(r.out), "alerting: up to date") {
				t.Errorf("start failed: %v\n%s", r.err, r.out)
			}
		}
		out, err := runCLI(t, "", "migrate", "status", "--db", dsn)
		if err != nil {
			t.Fatalf("migrate status: %v\n%s", err, out)
		}
		db, err := sqldb.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		for _, c := range components {
			applied, ok, err := db.Applied(ctx, c.table)
			if err != nil {
				t.Fatal(err)
			}
			line := lineOf(out, c.name+" ")
			if c.name == "ingest" {
				if ok && len(applied) > 0 || !strings.Contains(line, "none") {
					t.Errorf("ingest was never migrated, status line %q", line)
				}
				continue
			}
			if len(applied) == 0 {
				t.Errorf("%s: no migrations applied", c.name)
				continue
			}
			if want := fmt.Sprint(applied[len(applied)-1].Version); !strings.Contains(line, "\t"+want) && !strings.Contains(line, " "+want+" ") {
				t.Errorf("status line %q does not show latest version %s", line, want)
			}
		}
	})
}

// TestMigrateChild is the child process of TestMigrateConcurrentRoles.
func TestMigrateChild(t *testing.T) {
	dsn := os.Getenv("ELDERCARE_TEST_MIGRATE_DB")
	if dsn == "" {
		t.Skip("child process of TestMigrateConcurrentRoles")
	}
	out, err := runCLI(t, "", "migrate", "up", "--db", dsn, "--components", os.Getenv("ELDERCARE_TEST_MIGRATE_COMPONENTS"))
	fmt.Print(out)
	if err != nil {
		t.Fatal(err)
	}
}

func lineOf(text, prefix string) string {
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}
