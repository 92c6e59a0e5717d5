package alerting

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/internal/opsmetric"
)

// Notification results (label result of eldercare_alerting_notifications_total).
var notificationResults = []string{"sent", "skipped", "retry", "failed"}

// alertTypes and severities are the label values created at 0.
var (
	alertTypes = []string{TypeFall, TypeSOS, TypeSpO2Low, TypeHeartRate, TypeRespiration, TypeDeviceOffline}
	severities = []string{SeverityCritical, SeverityHigh, SeverityWarning}
)

// initCounters creates the series of the service's labelled counters for
// their known label values at 0, so increase() sees the first rejection
// (see package internal/opsmetric).
func (s *Service) initCounters() {
	opsmetric.Init(s.opened, alertTypes)
	opsmetric.Init(s.rejected, []string{string(device.ChanTelemetry), string(device.ChanEvent), string(device.ChanStatus)},
		append(append([]string{}, opsmetric.RejectReasons...), ReasonCardOtherSite))
}

// initNotified creates eldercare_alerting_notifications_total{receiver,
// result} at 0 for every receiver of this run and every result, so the
// first failed notification shows in increase().
func (s *Service) initNotified(receivers []string) {
	opsmetric.Init(s.notified, receivers, notificationResults)
}

// storeMetrics are the metrics a Manager reports from its store; see
// Manager.RegisterMetrics.
type storeMetrics struct {
	ackSeconds *prometheus.HistogramVec
	unrouted   prometheus.Counter // unrouted.go
}

// ackBuckets (seconds) span a bedside response (a caregiver on the floor
// answers a fall within minutes) to an hour.
var ackBuckets = []float64{10, 30, 60, 120, 180, 300, 600, 900, 1800, 3600}

// RegisterMetrics registers on reg the metrics read from this manager's
// alert store at each scrape (a query of at most 2 s; a failed query leaves
// the series out of that scrape and is logged):
//
//   - eldercare_alerting_open_alerts{severity, status}: alerts not resolved,
//     status open or acknowledged;
//   - eldercare_alerting_outbox_oldest_seconds: age of the oldest
//     notification not yet delivered to every receiver, 0 when none;
//
// and eldercare_alerting_time_to_acknowledge_seconds{severity}, a histogram
// observed by Acknowledge (from opening to acknowledgement, in seconds), and
// eldercare_alerting_unrouted_steps_total, escalation steps that resolved to
// nobody (counted by the process that fired them).
// Register it in each process that acknowledges (dashboard, alerting, up);
// the store gauges are the same from every process on one store.
func (m *Manager) RegisterMetrics(reg prometheus.Registerer) error {
	sm := &storeMetrics{ackSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "eldercare_alerting_time_to_acknowledge_seconds",
		Help:    "Time from an alert's opening to its acknowledgement, in seconds, by severity (observed by the process that acknowledged it).",
		Buckets: ackBuckets,
	}, []string{"severity"})}
	for _, sv := range severities {
		sm.ackSeconds.WithLabelValues(sv)
	}
	sm.unrouted = prometheus.NewCounter(prometheus.CounterOpts{Name: "eldercare_alerting_unrouted_steps_total",
		Help: "Escalation steps (and reminders) that resolved to nobody when they fired and paged the site's fallback receivers instead; each also raises or repeats an escalation_unrouted alert."})
	for _, c := range []prometheus.Collector{sm.ackSeconds, sm.unrouted, &storeCollector{m: m}} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	m.metrics.Store(sm)
	return nil
}

// observeAck records the time to acknowledge of a.
func (m *Manager) observeAck(a Alert) {
	sm := m.metrics.Load()
	if sm == nil || a.AcknowledgedAt == nil {
		return
	}
	sm.ackSeconds.WithLabelValues(a.Severity).Observe(max(0, a.AcknowledgedAt.Sub(a.OpenedAt).Seconds()))
}

var (
	openAlertsDesc = prometheus.NewDesc("eldercare_alerting_open_alerts",
		"Alerts not resolved in the alert store, by severity and status (open, acknowledged).", []string{"severity", "status"}, nil)
	outboxOldestDesc = prometheus.NewDesc("eldercare_alerting_outbox_oldest_seconds",
		"Age in seconds of the oldest notification in the outbox not yet delivered to every receiver (or refused for good); 0 when the outbox is empty.", nil, nil)
)

type storeCollector struct{ m *Manager }

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- openAlertsDesc
	ch <- outboxOldestDesc
}

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	m := c.m
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	counts := map[[2]string]float64{}
	rows, err := m.db.QueryContext(ctx, `SELECT severity, status, COUNT(*) FROM alerts WHERE status <> 'resolved' GROUP BY severity, status`)
	if err == nil {
		for rows.Next() {
			var sv, st string
			var n float64
			if err = rows.Scan(&sv, &st, &n); err != nil {
				break
			}
			counts[[2]string{sv, st}] = n
		}
		rows.Close()
		if err == nil {
			err = rows.Err()
		}
	}
	if err != nil {
		m.log.Warn("alerting metrics: count open alerts", "err", err)
	} else {
		for _, sv := range severities {
			for _, st := range []string{StatusOpen, StatusAcknowledged} {
				ch <- prometheus.MustNewConstMetric(openAlertsDesc, prometheus.GaugeValue, counts[[2]string{sv, st}], sv, st)
			}
		}
	}
	var oldest *int64
	if err := m.db.QueryRowContext(ctx, `SELECT MIN(created_ms) FROM alert_outbox WHERE sent_ms IS NULL`).Scan(&oldest); err != nil {
		m.log.Warn("alerting metrics: oldest outbox row", "err", err)
		return
	}
	age := 0.0
	if oldest != nil {
		age = max(0, float64(m.now().UnixMilli()-*oldest)/1000)
	}
	ch <- prometheus.MustNewConstMetric(outboxOldestDesc, prometheus.GaugeValue, age)
}

// metricsBox is the Manager field that RegisterMetrics sets.
type metricsBox = atomic.Pointer[storeMetrics]
