package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/device/registry"
	"github.com/eldercare-iot/eldercare/internal/broker"
	"github.com/eldercare-iot/eldercare/internal/sqldb"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

func TestExportMosquittoCmd(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	h, err := registry.HashPassword("gw-secret")
	if err != nil {
		t.Fatal(err)
	}
	reg := filepath.Join(dir, "reg.yaml")
	os.WriteFile(reg, []byte(`
sites:
  - {id: s1, name: Site 1, timezone: Asia/Shanghai}
devices:
  - {id: gw-1, site: s1, kind: gateway}
  - {id: bed-1, site: s1, kind: bed_sensor, gateway: gw-1}
credentials:
  - {username: gw-1, password_hash: "`+h+`"}
`), 0o600)
	out := filepath.Join(dir, "out")
	var stdout bytes.Buffer
	root := newRootCmd()
	root.SetOut(&stdout)
	root.SetArgs([]string{"export-mosquitto", "--format", "files", "--db", "sqlite:" + filepath.Join(dir, "r.db"), "--registry", reg, "--out", out, "--internal-user", ""})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	pw, _ := os.ReadFile(filepath.Join(out, "passwd"))
	acl, _ := os.ReadFile(filepath.Join(out, "acl"))
	if string(pw) != "gw-1:"+h+"\n" {
		t.Errorf("passwd = %q", pw)
	}
	if !strings.Contains(string(acl), "user gw-1\ntopic write eldercare/v1/s1/bed-1/telemetry\n") {
		t.Errorf("acl = %s", acl)
	}
	// --internal-user without its hash is an error, not a silent omission.
	root = newRootCmd()
	root.SetArgs([]string{"export-mosquitto", "--db", "sqlite:" + filepath.Join(dir, "r.db"), "--out", out})
	if err := root.Execute(); err == nil || !strings.Contains(err.Error(), "internal-password-hash") {
		t.Errorf("export without the internal hash = %v", err)
	}
}

func TestUpBrokerAuth(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := sqldb.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "r.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	store, err := registry.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		mode string
		on   bool
	}{{"off", false}, {"registry", false}, {"on", true}} {
		a, err := upBrokerAuth(ctx, c.mode, "", store)
		if err != nil || (a != nil) != c.on {
			t.Errorf("mode %s without credentials: auth %v, err %v; want on=%v", c.mode, a != nil, err, c.on)
		}
	}
	if _, err := upBrokerAuth(ctx, "maybe", "", store); err == nil {
		t.Error("mode maybe accepted")
	}
	h, _ := registry.HashPassword("pw")
	doc, err := registry.ParseYAML(strings.NewReader("sites:\n  - {id: s1, name: S, timezone: UTC}\ndevices:\n  - {id: gw-1, site: s1, kind: gateway}\ncredentials:\n  - {username: gw-1, password_hash: \"" + h + "\"}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Import(ctx, doc); err != nil {
		t.Fatal(err)
	}
	a, err := upBrokerAuth(ctx, "registry", "", store)
	if err != nil || a == nil {
		t.Fatalf("mode registry with credentials: auth %v, err %v; want on", a, err)
	}
	acc, err := a.Lookup(ctx, "gw-1")
	if err != nil || acc.Site != "s1" || !registry.CheckPassword(acc.PasswordHash, "pw") {
		t.Errorf("Lookup(gw-1) = %+v, %v", acc, err)
	}
	if _, err := a.Lookup(ctx, "nobody"); err == nil || !strings.Contains(err.Error(), broker.ErrUnknownUser.Error()) {
		t.Errorf("Lookup(nobody) = %v, want ErrUnknownUser", err)
	}
	if len(a.InternalPassword) < 32 {
		t.Errorf("internal password has %d characters", len(a.InternalPassword))
	}
}

// TestExportMosquittoDynsecCmd: the default export is the dynamic security
// plugin's configuration; a real Mosquitto started with the exported lines
// admits gw-1 only with its own client id.
func TestExportMosquittoDynsecCmd(t *testing.T) {
	t.Parallel()
	plugin, dir := dynsecExportDir(t, "eldercare-export-dynsec-")
	h, _ := registry.HashPassword("gw-secret")
	ih, _ := registry.HashPassword("internal-secret-0123456789")
	reg := filepath.Join(dir, "reg.yaml")
	os.WriteFile(reg, []byte("sites:\n  - {id: s1, name: Site 1, timezone: Asia/Shanghai}\ndevices:\n  - {id: gw-1, site: s1, kind: gateway}\ncredentials:\n  - {username: gw-1, password_hash: \""+h+"\"}\n"), 0o600)
	out := filepath.Join(dir, "out")
	root := newRootCmd()
	root.SetOut(io.Discard)
	root.SetArgs([]string{"export-mosquitto", "--db", "sqlite:" + filepath.Join(dir, "r.db"), "--registry", reg, "--out", out,
		"--internal-user", "eldercare", "--internal-password-hash", ih, "--dynsec-plugin", plugin})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	openToMosquitto(t, out)
	conf, err := os.ReadFile(filepath.Join(out, "mosquitto-eldercare.conf"))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(string(conf), "\n") {
		// The test broker's own readiness probe connects anonymously.
		if l != "" && !strings.HasPrefix(l, "#") && !strings.HasPrefix(l, "allow_anonymous") {
			lines = append(lines, l)
		}
	}
	if !strings.Contains(string(conf), "allow_anonymous false") || len(lines) != 2 {
		t.Fatalf("mosquitto-eldercare.conf:\n%s", conf)
	}
	b := testenv.StartMosquitto(t, lines...)
	for _, c := range []struct {
		user, pass, id string
		ok             bool
	}{
		{"gw-1", "gw-secret", "gw-1", true},
		{"gw-1", "gw-secret", "eldercare-up-alerting", false},
		{"gw-1", "gw-secret", "eldercare-ingest", false},
		{"gw-1", "wrong", "gw-1", false},
		{"eldercare", "internal-secret-0123456789", "eldercare-ingest", true},
	} {
		checkAdmission(t, b.Addr(), c.user, c.pass, c.id, c.ok)
	}
}

// checkAdmission connects to the broker at addr as user with client id id
// and checks that the broker's CONNACK admits it (ok) or refuses it; a
// connection that gets no CONNACK at all fails the test either way.
func checkAdmission(t *testing.T, addr, user, pass, id string, ok bool) {
	t.Helper()
	err := testenv.ConnectAs(addr, id, user, pass, 10*time.Second)
	var refused *testenv.ConnackError
	switch {
	case ok && err != nil:
		t.Errorf("%s as client id %s: %v, want admitted", user, id, err)
	case !ok && !errors.As(err, &refused):
		t.Errorf("%s as client id %s: %v, want a CONNACK refusing it", user, id, err)
	}
}

// dynsecPlugin is where Debian's mosquitto package installs the dynamic
// security plugin.
const dynsecPlugin = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"

// dynsecExportDir returns the dynamic security plugin (skipping the test
// without it, failing it under CI) and a new directory for an export that a
// real Mosquitto reads, removed when the test ends. The directory is not
// t.TempDir(): Mosquitto started as root reads it as the user mosquitto,
// so it and its parents must be open to everyone.
func dynsecExportDir(t *testing.T, prefix string) (plugin, dir string) {
	t.Helper()
	if _, err := os.Stat(dynsecPlugin); err != nil {
		testenv.Unavailable(t, "%v", err)
	}
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	return dynsecPlugin, dir
}

// openToMosquitto opens the export directory out and its
// dynamic-security.json to everyone: Mosquitto started as root reads (and
// saves) the file as the user mosquitto, without the test's group.
func openToMosquitto(t *testing.T, out string) {
	t.Helper()
	if err := errors.Join(os.Chmod(out, 0o777), os.Chmod(filepath.Join(out, "dynamic-security.json"), 0o666)); err != nil {
		t.Fatal(err)
	}
}
