package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/eldercare-iot/eldercare/device/registry"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// hashPassword runs "eldercare hash-password args..." with pw on stdin.
func hashPassword(t *testing.T, pw string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	root := newRootCmd()
	root.SetOut(&out)
	root.SetErr(io.Discard)
	root.SetIn(strings.NewReader(pw + "\n"))
	root.SetArgs(append([]string{"hash-password"}, args...))
	err := root.Execute()
	return strings.TrimSpace(out.String()), err
}

// hash-password writes "$7$" with 210000 iterations by default (never
// mosquitto_passwd 2.0's 101), argon2id on request, and refuses a short
// password.
func TestHashPasswordModern(t *testing.T) {
	t.Parallel()
	h, err := hashPassword(t, "gateway-secret-01")
	if err != nil || !strings.HasPrefix(h, "$7$210000$") || !registry.CheckPassword(h, "gateway-secret-01") || registry.CheckPassword(h, "gateway-secret-02") {
		t.Fatalf("default hash %q, %v", h, err)
	}
	a, err := hashPassword(t, "gateway-secret-01", "--format", "argon2id")
	if err != nil || !strings.HasPrefix(a, "$argon2id$") || !registry.CheckPassword(a, "gateway-secret-01") {
		t.Fatalf("argon2id hash %q, %v", a, err)
	}
	if _, err := hashPassword(t, "short"); err == nil || !strings.Contains(err.Error(), "at least 12") {
		t.Fatalf("short password: %v", err)
	}
	if _, err := hashPassword(t, "gateway-secret-01", "--format", "md5"); err == nil {
		t.Fatal("--format md5 accepted")
	}
}

// export-mosquitto refuses a gateway whose hash the embedded broker
// rehashed to argon2id, with the reason and the way out, writing nothing;
// it warns about a 101-iteration hash.
func TestExportMosquittoArgon2id(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a, err := registry.HashPasswordArgon2id("gateway-secret-01")
	if err != nil {
		t.Fatal(err)
	}
	weak, _ := registry.HashPassword("gateway-secret-02") // 101 iterations
	for _, format := range []string{"dynsec", "files"} {
		reg := filepath.Join(dir, format+".yaml")
		os.WriteFile(reg, []byte("sites:\n  - {id: s1, name: S, timezone: UTC}\ndevices:\n  - {id: gw-1, site: s1, kind: gateway}\n  - {id: gw-2, site: s1, kind: gateway}\n"+
			"credentials:\n  - {username: gw-1, password_hash: \""+a+"\"}\n  - {username: gw-2, password_hash: \""+weak+"\"}\n"), 0o600)
		out := filepath.Join(dir, "out-"+format)
		root := newRootCmd()
		root.SetOut(io.Discard)
		root.SetErr(io.Discard)
		root.SetArgs([]string{"export-mosquitto", "--format", format, "--db", "sqlite:" + filepath.Join(dir, format+".db"), "--registry", reg, "--out", out, "--internal-user", ""})
		err := root.Execute()
		if err == nil || !strings.Contains(err.Error(), `"gw-1"`) || !strings.Contains(err.Error(), "argon2id") || !strings.Contains(err.Error(), "hash-password --format mosquitto") {
			t.Fatalf("%s export with an argon2id hash: %v", format, err)
		}
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Errorf("%s: refused export wrote %s (%v)", format, out, err)
		}
	}
	// Only the weak one: exported, with a warning.
	reg := filepath.Join(dir, "weak.yaml")
	os.WriteFile(reg, []byte("sites:\n  - {id: s1, name: S, timezone: UTC}\ndevices:\n  - {id: gw-2, site: s1, kind: gateway}\ncredentials:\n  - {username: gw-2, password_hash: \""+weak+"\"}\n"), 0o600)
	var stderr bytes.Buffer
	root := newRootCmd()
	root.SetOut(io.Discard)
	root.SetErr(&stderr)
	root.SetArgs([]string{"export-mosquitto", "--format", "files", "--db", "sqlite:" + filepath.Join(dir, "weak.db"), "--registry", reg, "--out", filepath.Join(dir, "out-weak"), "--internal-user", ""})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr.String(), "gw-2 has a \"$7$\" hash of 101 PBKDF2 iterations") {
		t.Errorf("stderr %q: want a warning about gw-2's 101 iterations", stderr.String())
	}
}

// A hash from hash-password (210000 iterations) exported to a real
// Mosquitto's dynamic-security plugin lets the gateway in with its password.
func TestExportMosquittoModernHashRealBroker(t *testing.T) {
	t.Parallel()
	plugin, dir := dynsecExportDir(t, "eldercare-export-modern-")
	h, err := hashPassword(t, "gateway-secret-01")
	if err != nil {
		t.Fatal(err)
	}
	reg := filepath.Join(dir, "reg.yaml")
	os.WriteFile(reg, []byte("sites:\n  - {id: s1, name: S, timezone: UTC}\ndevices:\n  - {id: gw-1, site: s1, kind: gateway}\ncredentials:\n  - {username: gw-1, password_hash: \""+h+"\"}\n"), 0o600)
	out := filepath.Join(dir, "out")
	root := newRootCmd()
	root.SetOut(io.Discard)
	root.SetArgs([]string{"export-mosquitto", "--db", "sqlite:" + filepath.Join(dir, "r.db"), "--registry", reg, "--out", out, "--internal-user", "", "--dynsec-plugin", plugin})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	js, _ := os.ReadFile(filepath.Join(out, "dynamic-security.json"))
	if !strings.Contains(string(js), `"iterations": 210000`) {
		t.Fatalf("dynamic-security.json has no 210000 iterations:\n%s", js)
	}
	openToMosquitto(t, out)
	b := testenv.StartMosquitto(t, "plugin "+plugin, "plugin_opt_config_file "+filepath.Join(out, "dynamic-security.json"))
	checkAdmission(t, b.Addr(), "gw-1", "gateway-secret-01", "gw-1", true)
	checkAdmission(t, b.Addr(), "gw-1", "gateway-secret-02", "gw-1", false)
}
