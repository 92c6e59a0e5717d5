package registry_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/eldercare-iot/eldercare/device/registry"
)

// TestGatewayArgon2id: new gateway hashes are argon2id with a minimum
// length; old "$7$" hashes still verify and report NeedsRehash.
func TestGatewayArgon2id(t *testing.T) {
	if _, err := registry.HashPasswordArgon2id("short-pw"); !errors.Is(err, registry.ErrShortPassword) {
		t.Errorf("short password: %v, want ErrShortPassword", err)
	}
	h, err := registry.HashPasswordArgon2id("gateway-secret-0123")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Errorf("hash %q: want argon2id with OWASP parameters", h)
	}
	if err := registry.ParsePasswordHash(h); err != nil {
		t.Errorf("ParsePasswordHash(argon2id): %v", err)
	}
	if !registry.CheckPassword(h, "gateway-secret-0123") || registry.CheckPassword(h, "gateway-secret-0124") {
		t.Error("argon2id CheckPassword: right refused or wrong accepted")
	}
	if registry.NeedsRehash(h) {
		t.Error("a fresh argon2id hash needs a rehash")
	}
	old, err := registry.HashPassword("gateway-secret-0123")
	if err != nil {
		t.Fatal(err)
	}
	if !registry.NeedsRehash(old) || !registry.CheckPassword(old, "gateway-secret-0123") {
		t.Errorf("old $7$ hash: NeedsRehash %v, verifies %v; want true, true", registry.NeedsRehash(old), registry.CheckPassword(old, "gateway-secret-0123"))
	}
	weak := strings.Replace(h, "m=19456,t=2", "m=64,t=1", 1)
	if !registry.NeedsRehash(weak) {
		t.Error("weaker argon2id parameters do not need a rehash")
	}
	for _, bad := range []string{"$argon2id$v=19$m=0,t=2,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"$argon2id$v=18$m=19456,t=2,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "$argon2id$v=19$m=19456,t=2,p=1$!!$AAAA"} {
		if registry.ParsePasswordHash(bad) == nil || registry.CheckPassword(bad, "x") {
			t.Errorf("malformed hash %q accepted", bad)
		}
	}
}
