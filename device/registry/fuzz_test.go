package registry_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/device/registry"
)

// FuzzParseYAML checks that ParseYAML never panics and that every document it
// accepts also passes Validate.
func FuzzParseYAML(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(""))
	f.Add([]byte("sites: [{id: s, name: S, timezone: UTC}]\nbindings: [{from: 2026-01-01, to: ~}]\n"))
	f.Add([]byte("devices:\n  - &a {id: d, site: s, kind: other}\n  - {<<: *a, id: e}\n"))
	f.Add([]byte("a: &a [*a]\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		doc, err := registry.ParseYAML(bytes.NewReader(in))
		if err != nil {
			return
		}
		if err := doc.Validate(); err != nil {
			t.Fatalf("ParseYAML accepted a document that Validate rejects: %v", err)
		}
	})
}

// TestParseYAMLAliasBomb checks that a document whose aliases fan out
// exponentially is rejected quickly rather than expanded.
func TestParseYAMLAliasBomb(t *testing.T) {
	var b bytes.Buffer
	b.WriteString("residents:\n  - &r0 {id: x, name: X, site: s}\n")
	for i := 1; i <= 30; i++ {
		fmt.Fprintf(&b, "  - &r%d {<<: [", i)
		for j := range 10 {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "*r%d", i-1)
		}
		b.WriteString("]}\n")
	}
	done := make(chan error, 1)
	go func() {
		_, err := registry.ParseYAML(&b)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("ParseYAML accepted an alias bomb")
		}
		t.Log(err)
	case <-time.After(10 * time.Second):
		t.Fatal("ParseYAML did not return within 10 s")
	}
}
