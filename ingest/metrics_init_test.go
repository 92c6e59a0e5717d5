package ingest

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/eldercare-iot/eldercare/internal/opsmetric"
)

// nonZeroSeries counts the series of vec above 0: the known reasons exist at
// 0 from the start (internal/opsmetric), so a count of all series says
// nothing about what was rejected.
func nonZeroSeries(t *testing.T, vec *prometheus.CounterVec) int {
	t.Helper()
	ch := make(chan prometheus.Metric, 1024)
	go func() { vec.Collect(ch); close(ch) }()
	n := 0
	for m := range ch {
		var pb dto.Metric
		if err := m.Write(&pb); err != nil {
			t.Fatal(err)
		}
		if pb.GetCounter().GetValue() > 0 {
			n++
		}
	}
	return n
}

// TestCountersStartAtZero: rejected_total and dead_letters_total have a
// series at 0 for every known reason before anything is refused, so
// increase() sees the first refusal.
func TestCountersStartAtZero(t *testing.T) {
	t.Parallel()
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	for _, vec := range []*prometheus.CounterVec{m.rejected, m.deadLetters} {
		want := len(opsmetric.RejectReasons) + len(opsmetric.IngestPointReasons)
		ch := make(chan prometheus.Metric, 1024)
		go func() { vec.Collect(ch); close(ch) }()
		got := 0
		for range ch {
			got++
		}
		if got != want || nonZeroSeries(t, vec) != 0 {
			t.Errorf("%d series (%d above 0), want %d at 0", got, nonZeroSeries(t, vec), want)
		}
	}
}
