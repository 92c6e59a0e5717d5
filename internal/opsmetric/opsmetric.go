// Package opsmetric holds what ingest and alerting share to make their
// labelled counters visible from the start: the known label values, and a
// helper that creates a counter's series for them.
//
// A counter with labels appears in /metrics only once a series for its
// labels exists. Until then increase() and rate() have no earlier sample, so
// the first rejection or failed notification would never show as an
// increase: Prometheus documents this ("avoid missing metrics",
// prometheus.io/docs/practices/instrumentation). Creating the series at 0
// for every known value fixes it.
package opsmetric

import "github.com/prometheus/client_golang/prometheus"

// RejectReasons are the reasons a malformed message is refused with: the
// rules of device.ValidationError (device/validate.go, device/topic.go) and
// "malformed" for an error that names no rule (device.Reason). Other values
// may still appear (a new rule); these are the ones created at 0.
var RejectReasons = []string{
	"malformed", "json", "required", "type", "range", "finite", "one_of", "name", "max_len", "charset",
	"version", "unit_ms", "too_old", "future", "increasing", "unknown_field", "topic_mismatch", "size",
	"prefix", "levels", "exclusive",
}

// IngestPointReasons are the reasons ingest refuses a point with, besides
// RejectReasons (ingest/points.go, ingest/batch.go).
var IngestPointReasons = []string{"invalid_point", "reserved_field", "influx_rejected"}

// Init creates vec's series for every combination of the label values
// given per label, in the order of vec's labels, each at 0. With one list
// per label: Init(v, []string{"a", "b"}, []string{"x"}) makes {a,x} and {b,x}.
func Init(vec *prometheus.CounterVec, values ...[]string) {
	var walk func(prefix []string, rest [][]string)
	walk = func(prefix []string, rest [][]string) {
		if len(rest) == 0 {
			vec.WithLabelValues(prefix...)
			return
		}
		for _, v := range rest[0] {
			walk(append(prefix[:len(prefix):len(prefix)], v), rest[1:])
		}
	}
	walk(nil, values)
}
