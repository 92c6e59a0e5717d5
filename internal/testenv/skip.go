package testenv

import (
	"os"
	"strconv"
	"testing"
)

// InCI reports whether $CI is set to a true value (any non-empty value that
// does not parse as false), where every external server and recording must
// be present.
func InCI() bool {
	v := os.Getenv("CI")
	if v == "" {
		return false
	}
	b, err := strconv.ParseBool(v)
	return err != nil || b
}

// Unavailable is the one idiom for a missing external part (server,
// binary, plug-in, recording): it skips the test, or fails it when InCI.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if InCI() {
		t.Fatalf("testenv (CI is set, so this is fatal): "+format, args...)
	}
	t.Skipf("testenv: "+format, args...)
}

// RequireOrSkip calls Unavailable with what and err when err is not nil.
func RequireOrSkip(t testing.TB, err error, what string) {
	t.Helper()
	if err != nil {
		Unavailable(t, "%s: %v", what, err)
	}
}

// NeedsServer skips the test under `go test -short` (make test-short: no
// external servers, no browser), naming what it needs (e.g. "Mosquitto").
// The helpers that start or reach a server call it first.
func NeedsServer(t testing.TB, what string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("-short: needs %s", what)
	}
}
