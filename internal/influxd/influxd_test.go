package influxd_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/internal/testenv"

	influxdb2 "github.com/influxdata/influxdb-client-go/v2"

	"github.com/eldercare-iot/eldercare/internal/influxd"
)

// binary returns the influxd binary, skipping the test when it is missing (failing under CI, which must have it).
func binary(t *testing.T) string {
	t.Helper()
	testenv.NeedsServer(t, "InfluxDB (influxd)")
	bin, err := influxd.Find()
	testenv.RequireOrSkip(t, err, "influxd")
	return bin
}

func start(t *testing.T, opt influxd.Options) *influxd.Server {
	t.Helper()
	if opt.Bin == "" {
		opt.Bin = binary(t)
	}
	if opt.DataDir == "" {
		opt.DataDir = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	srv, err := influxd.Start(ctx, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Error(err)
		}
	})
	return srv
}

func TestWriteAndFluxQuery(t *testing.T) {
	srv := start(t, influxd.Options{})
	ctx := t.Context()
	if err := influxd.CreateDatabase(ctx, srv.URL(), "db"); err != nil {
		t.Fatal(err)
	}

	client := influxdb2.NewClient(srv.URL(), "")
	defer client.Close()
	ts := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	p := influxdb2.NewPoint("vitals", map[string]string{"device": "bed-1"}, map[string]any{"heart_rate_bpm": 72.0}, ts)
	if err := client.WriteAPIBlocking("", "db/autogen").WritePoint(ctx, p); err != nil {
		t.Fatalf("write: %v", err)
	}

	res, err := client.QueryAPI("").Query(ctx, `from(bucket: "db/autogen")
  |> range(start: -1h)
  |> filter(fn: (r) => r._measurement == "vitals" and r._field == "heart_rate_bpm")`)
	if err != nil {
		t.Fatalf("flux query: %v", err)
	}
	var n int
	for res.Next() {
		r := res.Record()
		n++
		if got := r.Value(); got != 72.0 {
			t.Errorf("value = %v, want 72", got)
		}
		if got := r.ValueByKey("device"); got != "bed-1" {
			t.Errorf("device tag = %v, want bed-1", got)
		}
		if !r.Time().Equal(ts) {
			t.Errorf("time = %v, want %v", r.Time(), ts)
		}
	}
	if err := res.Err(); err != nil {
		t.Fatalf("flux result: %v", err)
	}
	if n != 1 {
		t.Fatalf("got %d records, want 1", n)
	}

	// A write into a missing database answers 404 (see DESIGN.md).
	err = client.WriteAPIBlocking("", "missing/autogen").WritePoint(ctx, p)
	if err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("write into missing database: err = %v, want a not-found error", err)
	}

	u, _ := url.Parse(srv.URL())
	if err := srv.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatalf("second stop: %v", err)
	}
	if err := srv.Wait(); err != nil {
		t.Fatalf("wait after stop: %v", err)
	}
	if c, err := net.DialTimeout("tcp", u.Host, time.Second); err == nil {
		c.Close()
		t.Fatalf("port %s still accepts connections after Stop", u.Host)
	}
	if _, err := net.DialTimeout("tcp", srv.RPCAddr(), time.Second); err == nil {
		t.Fatalf("rpc port %s still accepts connections after Stop", srv.RPCAddr())
	}
}

func TestCreateDatabaseRetentionPolicies(t *testing.T) {
	srv := start(t, influxd.Options{})
	ctx := t.Context()
	const db = `care "home" 1` // InfluxDB rejects / and \ in names
	rps := []influxd.RetentionPolicy{
		{Name: "raw", Duration: 7 * 24 * time.Hour, Default: true},
		{Name: "forever"},
	}
	for range 2 { // idempotent
		if err := influxd.CreateDatabase(ctx, srv.URL(), db, rps...); err != nil {
			t.Fatal(err)
		}
	}
	// A changed duration is altered, not rejected.
	rps[0].Duration = 30 * 24 * time.Hour
	if err := influxd.CreateDatabase(ctx, srv.URL(), db, rps...); err != nil {
		t.Fatal(err)
	}

	// The default policy is "raw": a write into bucket "db" (no policy) is readable from "db/raw".
	client := influxdb2.NewClient(srv.URL(), "")
	defer client.Close()
	if err := client.WriteAPIBlocking("", db).WriteRecord(ctx, "occupancy,bed=1 in_bed=true"); err != nil {
		t.Fatalf("write: %v", err)
	}
	res, err := client.QueryAPI("").Query(ctx, `from(bucket: "`+strings.ReplaceAll(strings.ReplaceAll(db, `\`, `\\`), `"`, `\"`)+`/raw") |> range(start: -1h)`)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for res.Next() {
		n++
	}
	if res.Err() != nil || n != 1 {
		t.Fatalf("records in raw policy = %d (err %v), want 1", n, res.Err())
	}
}

func TestCreateDatabaseInvalid(t *testing.T) {
	tests := []struct {
		name string
		db   string
		rp   influxd.RetentionPolicy
	}{
		{"empty db", "", influxd.RetentionPolicy{Name: "x"}},
		{"empty rp", "db", influxd.RetentionPolicy{}},
		{"negative", "db", influxd.RetentionPolicy{Name: "x", Duration: -time.Hour}},
		{"below 1h", "db", influxd.RetentionPolicy{Name: "x", Duration: time.Minute}},
		{"fraction", "db", influxd.RetentionPolicy{Name: "x", Duration: time.Hour + time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// No server: validation must fail before any request.
			if err := influxd.CreateDatabase(t.Context(), "http://127.0.0.1:1", tt.db, tt.rp); err == nil {
				t.Fatal("want error")
			}
		})
	}
}

func TestQuoteIdent(t *testing.T) {
	tests := map[string]string{
		`db`:      `"db"`,
		`my "db"`: `"my \"db\""`,
		`a\b`:     `"a\\b"`,
		"a\nb":    `"a\nb"`,
	}
	for in, want := range tests {
		if got := influxd.QuoteIdent(in); got != want {
			t.Errorf("QuoteIdent(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestStartPortTaken(t *testing.T) {
	bin := binary(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	srv, err := influxd.Start(ctx, influxd.Options{Bin: bin, DataDir: t.TempDir(), HTTPAddr: l.Addr().String()})
	if err == nil {
		srv.Stop()
		t.Fatal("Start on a taken port succeeded")
	}
	if !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("error does not carry the log tail: %v", err)
	}
}

// TestStartRefusesAnotherInfluxDB: a fixed port on which another InfluxDB
// already answers /ping is refused before anything starts; before the fix
// Start took the foreign server for its own child and created accounts in it.
func TestStartRefusesAnotherInfluxDB(t *testing.T) {
	bin := binary(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	foreign := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })}
	go foreign.Serve(l)
	defer foreign.Close()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	srv, err := influxd.Start(ctx, influxd.Options{Bin: bin, DataDir: t.TempDir(), HTTPAddr: l.Addr().String()})
	if err == nil {
		srv.Stop()
		t.Fatal("Start took the InfluxDB already on its port for its own")
	}
	if !strings.Contains(err.Error(), "in use") {
		t.Fatalf("error = %v, want one saying the address is in use", err)
	}
}

func TestStartRestartKeepsData(t *testing.T) {
	bin := binary(t)
	dir := t.TempDir()
	srv := start(t, influxd.Options{Bin: bin, DataDir: dir})
	if err := influxd.CreateDatabase(t.Context(), srv.URL(), "keep"); err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	srv = start(t, influxd.Options{Bin: bin, DataDir: dir})
	client := influxdb2.NewClient(srv.URL(), "")
	defer client.Close()
	if err := client.WriteAPIBlocking("", "keep/autogen").WriteRecord(t.Context(), "m f=1"); err != nil {
		t.Fatalf("database lost across restart: %v", err)
	}
}

func TestFind(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, "influxd")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Run("env", func(t *testing.T) {
		t.Setenv(influxd.EnvBinary, fake)
		got, err := influxd.Find()
		if err != nil || got != fake {
			t.Fatalf("Find() = %q, %v; want %q", got, err, fake)
		}
	})
	t.Run("env missing", func(t *testing.T) {
		t.Setenv(influxd.EnvBinary, filepath.Join(dir, "nope"))
		_, err := influxd.Find()
		if !errors.Is(err, influxd.ErrNotFound) || !strings.Contains(err.Error(), influxd.InstallCommand) {
			t.Fatalf("err = %v; want ErrNotFound naming the install command", err)
		}
	})
	t.Run("gopath", func(t *testing.T) {
		gp := t.TempDir()
		if err := os.MkdirAll(filepath.Join(gp, "bin"), 0o755); err != nil {
			t.Fatal(err)
		}
		want := filepath.Join(gp, "bin", "influxd")
		if err := os.WriteFile(want, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		t.Setenv(influxd.EnvBinary, "")
		t.Setenv("PATH", t.TempDir())
		t.Setenv("GOBIN", "")
		t.Setenv("GOPATH", gp)
		got, err := influxd.Find()
		if err != nil || got != want {
			t.Fatalf("Find() = %q, %v; want %q", got, err, want)
		}
	})
	t.Run("none", func(t *testing.T) {
		t.Setenv(influxd.EnvBinary, "")
		t.Setenv("PATH", t.TempDir())
		t.Setenv("GOBIN", "")
		t.Setenv("GOPATH", t.TempDir())
		t.Chdir(t.TempDir())
		_, err := influxd.Find()
		if !errors.Is(err, influxd.ErrNotFound) || !strings.Contains(err.Error(), influxd.InstallCommand) {
			t.Fatalf("err = %v; want ErrNotFound naming the install command", err)
		}
	})
}

// TestAuth starts an InfluxDB with authentication on: an unauthenticated query is refused, the service user writes
// and reads its database through the v2 client with the token "user:password", it may not create databases, a
// restart on the same data directory keeps the accounts, and the files are private.
func TestAuth(t *testing.T) {
	dir := t.TempDir()
	creds, err := influxd.LoadOrCreateCredentials(filepath.Join(dir, "influxdb-credentials"), "vitals")
	if err != nil {
		t.Fatal(err)
	}
	again, err := influxd.LoadOrCreateCredentials(filepath.Join(dir, "influxdb-credentials"), "vitals")
	if err != nil || again != creds {
		t.Fatalf("reloaded credentials differ: %v, %v", again, err)
	}
	if strings.Contains(creds.String(), creds.Password) || strings.Contains(creds.String(), creds.AdminPassword) {
		t.Errorf("String() shows a password: %s", creds)
	}
	dataDir := filepath.Join(dir, "influxdb")
	srv := start(t, influxd.Options{DataDir: dataDir, Auth: &creds})
	ctx := t.Context()

	// No credentials: refused.
	resp, err := http.Get(srv.URL() + "/query?q=" + url.QueryEscape("SHOW DATABASES"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("unauthenticated SHOW DATABASES: HTTP %d, want 401", resp.StatusCode)
	}
	if err := influxd.CreateDatabase(ctx, srv.URL(), "other"); err == nil {
		t.Error("unauthenticated CREATE DATABASE succeeded")
	}
	// The service user: writes and Flux reads on its database, no admin statements.
	client := influxdb2.NewClient(srv.URL(), creds.UserToken())
	defer client.Close()
	p := influxdb2.NewPoint("vitals", map[string]string{"device": "bed-1"}, map[string]any{"heart_rate_bpm": 64.0}, time.Now().Add(-time.Minute))
	if err := client.WriteAPIBlocking("", "vitals/autogen").WritePoint(ctx, p); err != nil {
		t.Fatalf("write as service user: %v", err)
	}
	res, err := client.QueryAPI("").Query(ctx, `from(bucket: "vitals/autogen") |> range(start: -1h)`)
	if err != nil {
		t.Fatalf("flux as service user: %v", err)
	}
	n := 0
	for res.Next() {
		n++
	}
	if n != 1 {
		t.Errorf("flux as service user: %d rows, want 1 (%v)", n, res.Err())
	}
	if err := influxd.CreateDatabaseAs(ctx, srv.URL(), creds.UserToken(), "other"); err == nil {
		t.Error("service user created a database")
	}
	// The admin, in the token or in the URL's user info.
	if err := influxd.CreateDatabaseAs(ctx, srv.URL(), creds.AdminToken(), "vitals", influxd.RetentionPolicy{Name: "week", Duration: 168 * time.Hour}); err != nil {
		t.Errorf("admin token: %v", err)
	}
	u, _ := url.Parse(srv.URL())
	u.User = url.UserPassword(creds.AdminUser, creds.AdminPassword)
	if err := influxd.CreateDatabase(ctx, u.String(), "vitals"); err != nil {
		t.Errorf("admin in URL: %v", err)
	}
	wrong := influxdb2.NewClient(srv.URL(), creds.User+":wrong")
	defer wrong.Close()
	if err := wrong.WriteAPIBlocking("", "vitals/autogen").WritePoint(ctx, p); err == nil {
		t.Error("write with a wrong password succeeded")
	}

	// A restart keeps the accounts (the admin exists now; ensureUsers logs in).
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	srv2 := start(t, influxd.Options{DataDir: dataDir, Auth: &creds})
	c2 := influxdb2.NewClient(srv2.URL(), creds.UserToken())
	defer c2.Close()
	if err := c2.WriteAPIBlocking("", "vitals/autogen").WritePoint(ctx, p); err != nil {
		t.Errorf("write after restart: %v", err)
	}
	// Another installation's credentials do not take over this one.
	other := creds
	other.AdminPassword = "not-the-admin-password"
	if err := srv2.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := influxd.Start(ctx, influxd.Options{Bin: binary(t), DataDir: dataDir, Auth: &other}); err == nil || !strings.Contains(err.Error(), "does not belong") {
		t.Errorf("start with a wrong admin password: %v, want an error naming the mismatch", err)
	}
	for p, want := range map[string]os.FileMode{
		filepath.Join(dir, "influxdb-credentials"): 0o600, filepath.Join(dataDir, "influxd.conf"): 0o600,
		dataDir: 0o700, filepath.Join(dataDir, "data"): 0o700, filepath.Join(dataDir, "meta"): 0o700, filepath.Join(dataDir, "wal"): 0o700,
	} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %o, want %o", p, fi.Mode().Perm(), want)
		}
	}
}
