package registry_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/eldercare-iot/eldercare/device/registry"
)

func TestPasswordHash(t *testing.T) {
	h, err := registry.HashPassword("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$7$101$") {
		t.Errorf("hash %q is not in mosquitto's $7$ format", h)
	}
	for _, c := range []struct {
		name, hash, pw string
		want           bool
	}{
		{"right", h, "s3cret", true},
		{"wrong", h, "s3cret!", false},
		{"empty", h, "", false},
		{"malformed", "$6$abc", "s3cret", false},
		{"short key", "$7$101$AAAAAAAAAAAAAAAA$AAAA", "s3cret", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := registry.CheckPassword(c.hash, c.pw); got != c.want {
				t.Errorf("CheckPassword = %v, want %v", got, c.want)
			}
		})
	}
	if _, err := registry.HashPassword(""); err == nil {
		t.Error("HashPassword(\"\") succeeded")
	}
}

// TestPasswordHashMosquittoPasswd checks the format against the real
// mosquitto_passwd: a hash it writes verifies with CheckPassword.
func TestPasswordHashMosquittoPasswd(t *testing.T) {
	bin, err := exec.LookPath("mosquitto_passwd")
	if err != nil {
		t.Skip("mosquitto_passwd not installed")
	}
	f := filepath.Join(t.TempDir(), "pw")
	if out, err := exec.Command(bin, "-c", "-b", f, "gw-1", "open sesame").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd: %v: %s", err, out)
	}
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	_, hash, ok := strings.Cut(strings.TrimSpace(string(b)), ":")
	if !ok {
		t.Fatalf("password file %q", b)
	}
	if !registry.CheckPassword(hash, "open sesame") {
		t.Errorf("mosquitto_passwd hash %q does not verify", hash)
	}
	if registry.CheckPassword(hash, "open sesame ") {
		t.Errorf("a wrong password verifies")
	}
}

const credDoc = `
sites:
  - {id: s1, name: Site 1, timezone: Asia/Shanghai}
  - {id: s2, name: Site 2, timezone: Asia/Shanghai}
devices:
  - {id: gw-1, site: s1, kind: gateway}
  - {id: bed-1, site: s1, kind: bed_sensor, gateway: gw-1}
  - {id: sos-1, site: s1, kind: sos_button, gateway: gw-1}
  - {id: fd-1, site: s1, kind: fall_detector}
  - {id: gw-2, site: s2, kind: gateway}
credentials:
  - {username: gw-1, password_hash: "HASH1"}
  - {username: gw-2, password_hash: "HASH2"}
`

func TestCredentialsStore(t *testing.T) {
	h1, _ := registry.HashPassword("one")
	h2, _ := registry.HashPassword("two")
	doc, err := registry.ParseYAML(strings.NewReader(strings.NewReplacer("HASH1", h1, "HASH2", h2).Replace(credDoc)))
	if err != nil {
		t.Fatal(err)
	}
	forEachStore(t, func(t *testing.T, s *registry.Store) {
		ctx := context.Background()
		if has, err := s.HasCredentials(ctx); err != nil || has {
			t.Fatalf("HasCredentials before import = %v, %v", has, err)
		}
		if err := s.Import(ctx, doc); err != nil {
			t.Fatal(err)
		}
		if has, err := s.HasCredentials(ctx); err != nil || !has {
			t.Fatalf("HasCredentials = %v, %v", has, err)
		}
		acc, err := s.Account(ctx, "gw-1")
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"bed-1", "gw-1", "sos-1"}; acc.SiteID != "s1" || !reflect.DeepEqual(acc.Devices, want) {
			t.Errorf("Account(gw-1) = site %q devices %v, want s1 %v", acc.SiteID, acc.Devices, want)
		}
		if !registry.CheckPassword(acc.PasswordHash, "one") {
			t.Error("stored hash of gw-1 does not verify")
		}
		if _, err := s.Account(ctx, "fd-1"); !errors.Is(err, registry.ErrNotFound) {
			t.Errorf("Account(fd-1) = %v, want ErrNotFound", err)
		}
		all, err := s.Accounts(ctx)
		if err != nil || len(all) != 2 || all[1].Username != "gw-2" || !reflect.DeepEqual(all[1].Devices, []string{"gw-2"}) {
			t.Errorf("Accounts = %+v, %v", all, err)
		}
		// Importing again with a new hash replaces it.
		h3, _ := registry.HashPassword("three")
		doc2 := *doc
		doc2.Credentials = []registry.Credential{{Username: "gw-1", PasswordHash: h3}}
		if err := s.Import(ctx, &doc2); err != nil {
			t.Fatal(err)
		}
		if acc, _ := s.Account(ctx, "gw-1"); !registry.CheckPassword(acc.PasswordHash, "three") {
			t.Error("re-import did not replace the hash")
		}
	})
}

func TestCredentialsValidate(t *testing.T) {
	h, _ := registry.HashPassword("x")
	bad := strings.NewReplacer("HASH1", "plaintext", "HASH2", h, "username: gw-2", "username: nobody").Replace(credDoc) +
		"  - {username: gw-1, password_hash: \"" + h + "\"}\n"
	_, err := registry.ParseYAML(strings.NewReader(bad))
	for _, want := range []string{"credentials[0].password_hash", "credentials[1].username: unknown device \"nobody\"", "credentials[2].username: duplicate"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseYAML = %v, want %q", err, want)
		}
	}
	if c := (registry.Credential{Username: "gw-1", PasswordHash: h}); strings.Contains(c.String(), "$7$") {
		t.Error("Credential.String prints the hash")
	}
}
