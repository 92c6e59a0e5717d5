package testenv

import (
	"testing"
	"time"
)

// pollEvery is how often Eventually asks its condition again.
const pollEvery = 20 * time.Millisecond

// Eventually asks cond every 20 ms until it returns "" and fails the test
// (t.Fatalf) with cond's last answer once timeout has passed. cond returns
// what is still missing, e.g. "3 of 5 points stored", so that the failure
// says how far it got.
func Eventually(t testing.TB, timeout time.Duration, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		msg := cond()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", timeout, msg)
			return // for a testing.TB whose Fatalf does not stop the goroutine
		}
		time.Sleep(pollEvery)
	}
}

// EventuallyTrue is Eventually for a condition without detail: it fails
// the test with "not within <timeout>: <what>" unless ok returns true in
// time.
func EventuallyTrue(t testing.TB, timeout time.Duration, what string, ok func() bool) {
	t.Helper()
	Eventually(t, timeout, func() string {
		if ok() {
			return ""
		}
		return what
	})
}
