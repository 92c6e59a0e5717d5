package main

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestAPIClientsCLI(t *testing.T) {
	t.Parallel()
	db := "sqlite:" + filepath.Join(t.TempDir(), "e.db")
	out, err := runCLI(t, "", "api-clients", "add", "--db", db, "--name", "nurse-call", "--sites", "demo-station")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`token: ec_[A-Za-z0-9_-]{43}\n`).MatchString(out) {
		t.Fatalf("add printed %q", out)
	}
	if _, err := runCLI(t, "", "api-clients", "add", "--db", db, "--name", "nurse-call"); err == nil {
		t.Error("a second client of the same name was added")
	}
	if _, err := runCLI(t, "", "api-clients", "revoke", "--db", db, "--name", "nurse-call"); err != nil {
		t.Fatal(err)
	}
	out, err = runCLI(t, "", "api-clients", "list", "--db", db)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "nurse-call") || !strings.Contains(out, "demo-station") || !strings.Contains(out, "revoked") || strings.Contains(out, "ec_") {
		t.Fatalf("list printed %q", out)
	}
}
