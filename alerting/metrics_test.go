package alerting

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/eldercare-iot/eldercare/internal/sqldb/sqldbtest"
)

// TestStoreMetrics: the open-alert gauge counts by severity and status from
// the store, the outbox age is that of the oldest undelivered notification,
// and acknowledging observes the time from opening in the histogram.
func TestStoreMetrics(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	m, clk := escManager(t, sqldbtest.SQLiteDSN(t), start)
	reg := prometheus.NewPedanticRegistry()
	if err := m.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	fall := openAt(t, m, "res-1", TypeFall, SeverityCritical)
	openAt(t, m, "res-2", TypeSpO2Low, SeverityHigh)
	clk.Set(start.Add(95 * time.Second))
	if _, err := m.Acknowledge(context.Background(), fall.ID, "carer", "dashboard"); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP eldercare_alerting_open_alerts Alerts not resolved in the alert store, by severity and status (open, acknowledged).
# TYPE eldercare_alerting_open_alerts gauge
eldercare_alerting_open_alerts{severity="critical",status="acknowledged"} 1
eldercare_alerting_open_alerts{severity="critical",status="open"} 0
eldercare_alerting_open_alerts{severity="high",status="acknowledged"} 0
eldercare_alerting_open_alerts{severity="high",status="open"} 1
eldercare_alerting_open_alerts{severity="warning",status="acknowledged"} 0
eldercare_alerting_open_alerts{severity="warning",status="open"} 0
# HELP eldercare_alerting_outbox_oldest_seconds Age in seconds of the oldest notification in the outbox not yet delivered to every receiver (or refused for good); 0 when the outbox is empty.
# TYPE eldercare_alerting_outbox_oldest_seconds gauge
eldercare_alerting_outbox_oldest_seconds 95
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "eldercare_alerting_open_alerts", "eldercare_alerting_outbox_oldest_seconds"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(m.metrics.Load().ackSeconds); n != 3 {
		t.Errorf("time-to-acknowledge series = %d, want 3 (one per severity, from the start)", n)
	}
	var sum, count float64
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "eldercare_alerting_time_to_acknowledge_seconds" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			if mt.GetLabel()[0].GetValue() == SeverityCritical {
				sum, count = mt.GetHistogram().GetSampleSum(), float64(mt.GetHistogram().GetSampleCount())
			}
		}
	}
	if count != 1 || sum != 95 {
		t.Errorf("time to acknowledge of critical: count %v sum %v s, want 1 and 95", count, sum)
	}

	// Delivered: the outbox age falls to 0.
	if _, err := m.db.ExecContext(context.Background(), `UPDATE alert_outbox SET sent_ms = 1`); err != nil {
		t.Fatal(err)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP eldercare_alerting_outbox_oldest_seconds Age in seconds of the oldest notification in the outbox not yet delivered to every receiver (or refused for good); 0 when the outbox is empty.
# TYPE eldercare_alerting_outbox_oldest_seconds gauge
eldercare_alerting_outbox_oldest_seconds 0
`), "eldercare_alerting_outbox_oldest_seconds"); err != nil {
		t.Error(err)
	}
}
