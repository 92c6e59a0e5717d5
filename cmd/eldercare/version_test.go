package main

import (
	"runtime"
	"strings"
	"testing"
)

// TestVersionAndBuildInfo: the stamps set by -ldflags reach `eldercare
// version` and the eldercare_build_info gauge of every role's registry.
func TestVersionAndBuildInfo(t *testing.T) {
	// Not parallel: it sets the package's version stamps, which every
	// role's registry reads.
	v, c, d := Version, Commit, Date
	t.Cleanup(func() { Version, Commit, Date = v, c, d })
	Version, Commit, Date = "1.4.2", "0123456789ab", "2026-12-01T10:00:00Z"

	out, err := runCLI(t, "", "version")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"eldercare 1.4.2", "commit 0123456789ab", "built 2026-12-01T10:00:00Z", runtime.Version(), "protocol v1"} {
		if !strings.Contains(out, want) {
			t.Errorf("version output %q lacks %q", out, want)
		}
	}
	mfs, err := newMetrics().Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		if mf.GetName() != "eldercare_build_info" {
			continue
		}
		found = true
		m := mf.GetMetric()[0]
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["version"] != "1.4.2" || labels["commit"] != "0123456789ab" || labels["go_version"] != runtime.Version() || m.GetGauge().GetValue() != 1 {
			t.Errorf("eldercare_build_info %v = %v", labels, m.GetGauge().GetValue())
		}
	}
	if !found {
		t.Error("no eldercare_build_info in the roles' registry")
	}
}
