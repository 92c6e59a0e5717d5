package ingest

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eldercare-iot/eldercare/internal/opsmetric"
)

// metrics are the service's Prometheus metrics, all named
// eldercare_ingest_*.
type metrics struct {
	received *prometheus.CounterVec // {channel}
	// receivedTelemetry and receivedEvent are received's two channels,
	// resolved once (a label lookup per message was measurable).
	receivedTelemetry, receivedEvent prometheus.Counter
	written                          prometheus.Counter
	rejected                         *prometheus.CounterVec // {reason}
	inFlight                         prometheus.Gauge
	queued                           prometheus.Gauge
	// deadLetterQueue counts malformed messages waiting for the store.
	deadLetterQueue prometheus.Gauge
	// deadLetterFailing is 1 while storing a dead letter is being retried.
	deadLetterFailing prometheus.Gauge
	// dropped counts QoS 0 messages dropped over the window, by channel.
	dropped      *prometheus.CounterVec
	batchSeconds prometheus.Histogram
	writeErrors  prometheus.Counter
	redelivered  prometheus.Counter
	skewed       prometheus.Counter
	deadLetters  *prometheus.CounterVec // {reason}
	writeFailing prometheus.Gauge
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
			Help: "Messages received and not yet acknowledged: in a batch being filled or written, or waiting for the dead-letter store. The broker's in-flight window (Mosquitto max_inflight_messages) bounds it; keep that window at most --max-in-flight.",
		}),
		queued: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "eldercare_ingest_queued",
			Help: "Messages in sealed batches waiting for a free writer (--writers). Above zero for long, InfluxDB is slower than the broker sends, or down.",
		}),
		deadLetterFailing: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "eldercare_ingest_dead_letter_store_failing",
			Help: "Dead letters whose store is being retried (0 when healthy). Above 0, the dead-letter database is failing: refused messages and the batches holding refused points stay unacknowledged until it works again.",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eldercare_ingest_dropped_total",
			Help: "QoS 0 messages dropped because ingest already held --max-in-flight QoS 0 messages, by channel. QoS 0 has no flow control, so this is the only bound on them; devices publish at QoS 1 (docs/protocol.md).",
		}, []string{"channel"}),
		deadLetterQueue: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "eldercare_ingest_dead_letter_queued",
			Help: "Malformed messages waiting to be stored as dead letters (and then acknowledged).",
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
		redelivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eldercare_ingest_redelivered_total",
			Help: "Valid messages whose (device, boot, id) was already seen among the last DedupWindow messages, or that the broker flagged DUP: redeliveries after a crash, reconnect or outage. InfluxDB stores them once.",
		}),
		skewed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eldercare_ingest_skewed_total",
			Help: "Readings and events whose device time is further than --skew from the receive time; stored with field skewed=true.",
		}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eldercare_ingest_dead_letters_total",
			Help: "Refused messages and points stored in the dead-letter store, by reason (as rejected_total).",
		}, []string{"reason"}),
		writeFailing: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "eldercare_ingest_write_failing",
			Help: "Number of batches currently being retried because InfluxDB is unreachable or failing (0 when healthy). With in_flight it shows a backlog: messages stay unacknowledged and the broker queues the rest.",
		}),
	}
	m.receivedTelemetry = m.received.WithLabelValues("telemetry")
	m.receivedEvent = m.received.WithLabelValues("event")
	// Every known reason at 0, so increase() sees the first (internal/opsmetric).
	reasons := append(append([]string{}, opsmetric.RejectReasons...), opsmetric.IngestPointReasons...)
	opsmetric.Init(m.rejected, reasons)
	opsmetric.Init(m.deadLetters, reasons)
	if reg != nil {
		for _, c := range []prometheus.Collector{m.received, m.written, m.rejected, m.inFlight, m.queued, m.deadLetterQueue, m.deadLetterFailing, m.dropped, m.batchSeconds, m.writeErrors,
			m.redelivered, m.skewed, m.deadLetters, m.writeFailing} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register ingest metrics: %w", err)
			}
		}
	}
	return m, nil
}
