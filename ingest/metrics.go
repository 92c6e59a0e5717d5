package ingest

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the service's Prometheus metrics, all named
// eldercare_ingest_*.
type metrics struct {
	received     *prometheus.CounterVec // {channel}
	written      prometheus.Counter
	rejected     *prometheus.CounterVec // {reason}
	inFlight     prometheus.Gauge
	batchSeconds prometheus.Histogram
	writeErrors  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eldercare_ingest_received_total",
			Help: "MQTT messages received, by channel (telemetry, event), malformed ones included.",
		}, []string{"channel"}),
		written: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eldercare_ingest_written_total",
			Help: "Points written to InfluxDB (a redelivered message counts again).",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eldercare_ingest_rejected_total",
			Help: "Messages rejected as malformed (reason = the protocol rule broken, see device.Reason), and points InfluxDB refused (reason influx_rejected) or ingest refused (invalid_point, reserved_field). Rejected input is acknowledged and logged.",
		}, []string{"reason"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "eldercare_ingest_in_flight",
			Help: "Valid messages received and not yet acknowledged (waiting for their batch to be written).",
		}),
		batchSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "eldercare_ingest_batch_seconds",
			Help:    "Time to write one batch to InfluxDB, retries and splits included, in seconds.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10), // 1 ms .. ~262 s
		}),
		writeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eldercare_ingest_write_errors_total",
			Help: "Failed write requests to InfluxDB (each retry and each split that failed counts).",
		}),
	}
	for _, ch := range []string{"telemetry", "event"} {
		m.received.WithLabelValues(ch)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.received, m.written, m.rejected, m.inFlight, m.batchSeconds, m.writeErrors} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register ingest metrics: %w", err)
			}
		}
	}
	return m, nil
}
