package modbus_test

import (
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func replaceOnce(s, old, new string) string { return strings.Replace(s, old, new, 1) }
func writeFile(path string, b []byte) error { return os.WriteFile(path, b, 0o644) }
func contains(s, sub string) bool           { return strings.Contains(s, sub) }

// mustCounter finds the counter of family name with exactly labels.
func mustCounter(t testing.TB, g prometheus.Gatherer, name string, labels map[string]string) prometheus.Collector {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if match(m, labels) {
				return constCounter(m.GetCounter().GetValue())
			}
		}
	}
	return constCounter(0)
}

func match(m *dto.Metric, labels map[string]string) bool {
	n := 0
	for _, lp := range m.GetLabel() {
		if v, ok := labels[lp.GetName()]; ok {
			if v != lp.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(labels)
}

func constCounter(v float64) prometheus.Collector {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "c", Help: "c"})
	c.Add(v)
	return c
}
