package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestBenchMovedOut: the benchmarks are not in the product binary; the old
// command only says where they went.
func TestBenchMovedOut(t *testing.T) {
	t.Parallel()
	root := newRootCmd()
	root.SetOut(&bytes.Buffer{})
	root.SetArgs([]string{"bench", "ingest", "--messages", "10"})
	err := root.ExecuteContext(context.Background())
	if err == nil || !strings.Contains(err.Error(), "eldercare-bench") {
		t.Fatalf("err = %v, want the pointer to eldercare-bench", err)
	}
}
