package main

import (
	"github.com/spf13/pflag"

	"github.com/eldercare-iot/eldercare/ingest"
)

// addIngestFlags adds the flags of ingest's pipeline (batching, in-flight
// window, deduplication, retention policies, dead letters), shared by the
// ingest role and up: one list, one description each.
func addIngestFlags(f *pflag.FlagSet) {
	f.Int("batch-size", ingest.DefaultBatchSize, "points per InfluxDB write; a batch is written when it reaches this size")
	f.Duration("flush-interval", ingest.DefaultFlushInterval, "longest time a point waits before its batch is written (e.g. 200ms)")
	f.Int("max-in-flight", ingest.DefaultMaxInFlight, "MQTT messages ingest expects to hold received and not yet acknowledged (written); set the broker's in-flight window (Mosquitto max_inflight_messages) to at most this: the broker holds back the rest, and ingest warns when it holds more (1-65535)")
	f.Int("writers", ingest.DefaultWriters, "batches written to InfluxDB in parallel (1-64)")
	f.Duration("skew", ingest.DefaultSkew, "a reading whose device time is further than this from its receive time is stored with field skewed=true (readings more than 5m ahead are rejected by the protocol)")
	f.Int("dedup-window", ingest.DefaultDedupWindow, "recent (device, boot, id) keys remembered to count redelivered messages")
	f.String("rp-vitals", "", `retention policy of vitals readings (every reading not from an env_sensor) (default: --influx-rp)`)
	f.Duration("retention-vitals", 0, "how long the vitals policy keeps data; 0 = forever (INF), else at least 1h (default 0)")
	f.String("rp-environment", ingest.DefaultEnvironmentPolicy, "retention policy of env_sensor readings")
	f.Duration("retention-environment", ingest.DefaultEnvironmentRetention, "how long the environment policy keeps data; 0 = forever (2160h = 90 days)")
	f.String("rp-events", "", `retention policy of events (default: --influx-rp)`)
	f.Duration("retention-events", 0, "how long the events policy keeps data; 0 = forever (INF), else at least 1h (default 0)")
	f.StringSlice("plain", nil, "speed tricks switched back to the plain library path, comma-separated: puback (paho's connection and per-message acknowledgement), json (encoding/json), line-protocol (the line-protocol library's encoder), or all; same results, more CPU per reading (docs/speed.md) (default none)")
	f.Bool("dead-letters", true, "store refused messages and points in the --db database (table ingest_dead_letters; list them with 'eldercare ingest dead-letters')")
}

// ingestPipeline sets the fields of cfg that addIngestFlags' flags name.
func ingestPipeline(s *settings, cfg *ingest.Config) {
	cfg.BatchSize = s.Int("batch-size")
	cfg.FlushInterval = s.Duration("flush-interval")
	cfg.MaxInFlight = s.Int("max-in-flight")
	cfg.Writers = s.Int("writers")
	cfg.Skew = s.Duration("skew")
	cfg.DedupWindow = s.Int("dedup-window")
	cfg.Plain = s.v.GetStringSlice("plain")
	cfg.Retention = map[ingest.Group]ingest.Retention{
		ingest.GroupVitals:      {Policy: s.String("rp-vitals"), Duration: s.Duration("retention-vitals")},
		ingest.GroupEnvironment: {Policy: s.String("rp-environment"), Duration: s.Duration("retention-environment")},
		ingest.GroupEvents:      {Policy: s.String("rp-events"), Duration: s.Duration("retention-events")},
	}
}
