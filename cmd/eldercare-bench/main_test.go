package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestAlertingBenchRuns runs the alerting benchmark small (embedded broker,
// SQLite, webhook receiver: no external server) and checks that every fall
// it published was notified.
func TestAlertingBenchRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs a 2 s benchmark")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"alerting", "--duration", "1s", "--falls", "3", "--rate", "100", "--devices", "5"})
	if err := root.ExecuteContext(ctx); err != nil {
		t.Fatalf("alerting bench: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "falls: 3 published, 3 notified, 0 missing") {
		t.Errorf("output lacks every fall notified:\n%s", out.String())
	}
}

// TestBadFlagsRefused: a benchmark given a nonsensical size says which flag.
func TestBadFlagsRefused(t *testing.T) {
	root := newRootCmd()
	root.SetOut(&bytes.Buffer{})
	root.SetArgs([]string{"alerting", "--falls", "0"})
	err := root.ExecuteContext(context.Background())
	if err == nil || !strings.Contains(err.Error(), "--falls") {
		t.Fatalf("err = %v, want one naming --falls", err)
	}
}
