package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/ingest"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
	"github.com/eldercare-iot/eldercare/internal/sqldb"
)

func newIngestCmd() *cobra.Command {
	var cfg ingestConfig
	cmd := &cobra.Command{
		Use:   "ingest",
		Short: "Run ingest: MQTT telemetry and events -> validate -> batched writes to InfluxDB",
		Long: `ingest takes every device's telemetry and events under the topic root
through an MQTT shared subscription ($share/<group>/...), validates them
(protocol v1), tags them with site, device, device kind and the resident bound
at the reading's device time (from the registry), and writes them in batches
to InfluxDB (measurements "readings" and "events", see docs/schema.md).

A message is acknowledged only after its batch was written, so with a
persistent session nothing is lost while InfluxDB is down; run several
replicas with the same --group and distinct --client-id to share the load.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runIngest(cmd, &cfg) },
	}
	cfg.bind(cmd.Flags())
	cmd.AddCommand(newDeadLettersCmd())
	return cmd
}

// ingestConfig is the ingest role's configuration, one field per flag of
// `eldercare ingest` (bind); cliconfig.Load fills it from the command
// line, the environment and the config file. up takes the same flags,
// except upOwnedFlags, whose fields it sets itself.
type ingestConfig struct {
	// Where: broker, InfluxDB, registry database and ops listener
	// (up-owned).
	MQTT, Root, ClientID                    string
	Influx, InfluxToken, InfluxDB, InfluxRP string
	DB, Registry, HTTP                      string
	// GCPercent is the ingest process's GOGC (setGCPercent); up leaves
	// the Go runtime alone.
	GCPercent int

	Group              string
	LeaveGroupOnStop   bool
	SharedSubscription bool
	ReadDelay          time.Duration
	BatchSize          int
	FlushInterval      time.Duration
	MaxInFlight        int
	Writers            int
	Skew               time.Duration
	DedupWindow        int
	Plain              []string
	DeadLetters        bool
	// Retention policies and durations per group of measurements.
	RPVitals, RPEnvironment, RPEvents                      string
	RetentionVitals, RetentionEnvironment, RetentionEvents time.Duration
}

// bind registers the ingest role's flags on f, bound to c's fields.
func (c *ingestConfig) bind(f *pflag.FlagSet) {
	f.StringVar(&c.MQTT, "mqtt", "tcp://127.0.0.1:1883", "MQTT broker URL (tcp://, ssl:// or ws://; user:password@ allowed)")
	f.StringVar(&c.Root, "root", device.DefaultRoot, "MQTT topic root under which devices publish")
	f.StringVar(&c.ClientID, "client-id", "", `MQTT client id; the session is persistent, so keep it stable and unique per replica (default "eldercare-ingest-<hostname>")`)
	f.StringVar(&c.Group, "group", ingest.DefaultGroup, "MQTT shared-subscription group; replicas in one group share the messages")
	f.BoolVar(&c.LeaveGroupOnStop, "leave-group-on-stop", true, "on SIGTERM, unsubscribe from the shared subscription before writing what is held and disconnecting, so the broker sends this replica's share to the other replicas; set false for a single replica, whose readings would otherwise be dropped by the broker while it restarts (docs/operations.md)")
	f.DurationVar(&c.ReadDelay, "mqtt-read-delay", ingest.DefaultReadDelay, "while messages flow, read from the broker once 32 KiB are queued or this long after the last read, to take many messages per system call and wake-up (on Linux a socket low-water mark, elsewhere a sleep; batches wait --flush-interval anyway); the first message after a quiet spell is read at once; a negative value reads every message at once (docs/speed.md)")
	f.BoolVar(&c.SharedSubscription, "shared-subscription", true, "subscribe through the shared subscription $share/<group>/... so replicas share the messages; false subscribes to the plain filters, for a single replica only (every replica would store every message), and keeps what is published while it restarts in its session (docs/operations.md)")
	f.StringVar(&c.Influx, "influx", "http://127.0.0.1:8086", "InfluxDB base URL (1.8 with the v2 write API, or 2.x)")
	f.StringVar(&c.InfluxToken, "influx-token", "", `InfluxDB token, "user:password" for InfluxDB 1.8 with auth; prefer env ELDERCARE_INFLUX_TOKEN (never printed; default none)`)
	f.StringVar(&c.InfluxDB, "influx-db", ingest.DefaultDatabase, "InfluxDB database, created at start if missing")
	f.StringVar(&c.InfluxRP, "influx-rp", ingest.DefaultRetentionPolicy, `InfluxDB retention policy written into (bucket "<influx-db>/<influx-rp>")`)
	f.IntVar(&c.GCPercent, "gc-percent", 200, "Go garbage-collector target of this process, as GOGC (which it replaces): 200 lets the heap grow to three times what is live between collections, for about a tenth less CPU per reading and 20-40 MiB more memory (docs/benchmarks.md); 100 is Go's default (25-1000)")
	f.StringVar(&c.DB, "db", "sqlite:./data/eldercare.db", "registry database DSN: sqlite:PATH, a file path, or postgres://...")
	f.StringVar(&c.Registry, "registry", "", "registry YAML file to import at start (optional; default none)")
	f.StringVar(&c.HTTP, "http", "127.0.0.1:9101", "listen address of /healthz (liveness), /readyz (503 while the broker, InfluxDB or the database is unusable) and /metrics (host:port)")
	c.bindPipeline(f)
}

// bindPipeline registers the flags of ingest's pipeline: batching,
// in-flight window, deduplication, retention policies, dead letters.
func (c *ingestConfig) bindPipeline(f *pflag.FlagSet) {
	f.IntVar(&c.BatchSize, "batch-size", ingest.DefaultBatchSize, "points per InfluxDB write; a batch is written when it reaches this size")
	f.DurationVar(&c.FlushInterval, "flush-interval", ingest.DefaultFlushInterval, "longest time a point waits before its batch is written (e.g. 200ms)")
	f.IntVar(&c.MaxInFlight, "max-in-flight", ingest.DefaultMaxInFlight, "MQTT messages ingest expects to hold received and not yet acknowledged (written); set the broker's in-flight window (Mosquitto max_inflight_messages) to at most this: the broker holds back the rest, and ingest warns when it holds more (1-65535)")
	f.IntVar(&c.Writers, "writers", ingest.DefaultWriters, "batches written to InfluxDB in parallel (1-64)")
	f.DurationVar(&c.Skew, "skew", ingest.DefaultSkew, "a reading whose device time is further than this from its receive time is stored with field skewed=true (readings more than 5m ahead are rejected by the protocol)")
	f.IntVar(&c.DedupWindow, "dedup-window", ingest.DefaultDedupWindow, "recent (device, boot, id) keys remembered to count redelivered messages")
	f.StringVar(&c.RPVitals, "rp-vitals", "", `retention policy of vitals readings (every reading not from an env_sensor) (default: --influx-rp)`)
	f.DurationVar(&c.RetentionVitals, "retention-vitals", 0, "how long the vitals policy keeps data; 0 = forever (INF), else at least 1h (default 0)")
	f.StringVar(&c.RPEnvironment, "rp-environment", ingest.DefaultEnvironmentPolicy, "retention policy of env_sensor readings")
	f.DurationVar(&c.RetentionEnvironment, "retention-environment", ingest.DefaultEnvironmentRetention, "how long the environment policy keeps data; 0 = forever (2160h = 90 days)")
	f.StringVar(&c.RPEvents, "rp-events", "", `retention policy of events (default: --influx-rp)`)
	f.DurationVar(&c.RetentionEvents, "retention-events", 0, "how long the events policy keeps data; 0 = forever (INF), else at least 1h (default 0)")
	f.StringSliceVar(&c.Plain, "plain", nil, "speed tricks switched back to the plain library path, comma-separated: receive (paho's reader and router for received messages instead of the direct PUBLISH reader), puback (paho's connection and per-message acknowledgement; implies receive), json (encoding/json), line-protocol (the line-protocol library's encoder), or all; same results, more CPU per reading (docs/speed.md) (default none)")
	f.BoolVar(&c.DeadLetters, "dead-letters", true, "store refused messages and points in the --db database (table ingest_dead_letters; list them with 'eldercare ingest dead-letters')")
}

// service is the ingest.Config that c describes.
func (c *ingestConfig) service() ingest.Config {
	return ingest.Config{
		MQTTURL: c.MQTT, Root: c.Root, ClientID: c.ClientID,
		Group: c.Group, LeaveGroupOnStop: c.LeaveGroupOnStop, Unshared: !c.SharedSubscription, ReadDelay: c.ReadDelay,
		InfluxURL: c.Influx, InfluxToken: ingest.Secret(c.InfluxToken), InfluxDatabase: c.InfluxDB, RetentionPolicy: c.InfluxRP,
		BatchSize: c.BatchSize, FlushInterval: c.FlushInterval, MaxInFlight: c.MaxInFlight, Writers: c.Writers,
		Skew: c.Skew, DedupWindow: c.DedupWindow, Plain: c.Plain,
		Retention: map[ingest.Group]ingest.Retention{
			ingest.GroupVitals:      {Policy: c.RPVitals, Duration: c.RetentionVitals},
			ingest.GroupEnvironment: {Policy: c.RPEnvironment, Duration: c.RetentionEnvironment},
			ingest.GroupEvents:      {Policy: c.RPEvents, Duration: c.RetentionEvents},
		},
	}
}

// Validate reports every bad value of c that ingest.Config.Validate
// refuses (the error names the field). --gc-percent is the process's, not
// the role's: runIngest checks it.
func (c *ingestConfig) Validate() error {
	if err := c.service().Validate(); err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	return nil
}

// setGCPercent applies --gc-percent to the Go runtime (as GOGC does),
// refusing a value outside 25-1000.
func setGCPercent(gc int) error {
	if gc < 25 || gc > 1000 {
		return fmt.Errorf("--gc-percent %d: want 25-1000 (percent of the live heap; 100 is Go's default)", gc)
	}
	debug.SetGCPercent(gc)
	return nil
}

// newIngest builds the ingest role from cfg on d's registry cache and
// database (dead letters): the one constructor of `eldercare ingest` and
// `eldercare up`.
func newIngest(ctx context.Context, cfg *ingestConfig, d roleDeps) (*ingest.Service, ingest.Config, error) {
	if err := cfg.Validate(); err != nil {
		return nil, ingest.Config{}, err
	}
	icfg := cfg.service().WithDefaults()
	if cfg.DeadLetters {
		dl, err := ingest.OpenDeadLetters(ctx, d.DB)
		if err != nil {
			return nil, icfg, err
		}
		icfg.DeadLetters = dl
	}
	svc, err := ingest.New(icfg, ingestLookup(d.Cache), d.Reg, d.Log) // ingest.New adds role=ingest
	return svc, icfg, err
}

func newDeadLettersCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dead-letters",
		Short: "List the messages and points ingest refused, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := loadSettings(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			db, err := sqldb.Open(ctx, s.String("db"))
			if err != nil {
				return err
			}
			defer db.Close()
			store, err := ingest.OpenDeadLetters(ctx, db)
			if err != nil {
				return err
			}
			list, err := store.List(ctx, s.Int("limit"))
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintln(w, "RECEIVED\tTOPIC\tREASON\tDETAIL\tPAYLOAD")
			for _, d := range list {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", d.Received.UTC().Format(time.RFC3339Nano), d.Topic, d.Reason,
					oneLine(d.Detail, 160), oneLine(string(d.Payload), 200))
			}
			if err := w.Flush(); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "%d dead letters shown (limit %d)\n", len(list), s.Int("limit"))
			return nil
		},
	}
	f := cmd.Flags()
	f.String("db", "sqlite:./data/eldercare.db", "database DSN holding the dead letters: sqlite:PATH, a file path, or postgres://...")
	f.Int("limit", 100, "most dead letters listed, newest first")
	return cmd
}

// cpuProfileEnv names a file to which `eldercare ingest` and `eldercare up`
// write a Go CPU profile (runtime/pprof) of their whole run;
// `eldercare-bench ingest --cpu-profile` sets it for its ingest and up
// children. Unset: no profiling.
const cpuProfileEnv = "ELDERCARE_INGEST_CPU_PROFILE"

func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cpuProfileEnv, err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: start cpu profile: %w", cpuProfileEnv, err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n] + "..."
	}
	return s
}

func runIngest(cmd *cobra.Command, cfg *ingestConfig) error {
	_, log, err := loadSettingsAndLogger(cmd)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	if path := os.Getenv(cpuProfileEnv); path != "" {
		stop, err := startCPUProfile(path)
		if err != nil {
			return err
		}
		defer stop()
	}
	if err := errors.Join(cfg.Validate(), setGCPercent(cfg.GCPercent)); err != nil {
		return err
	}
	ln, err := listen("--http", cfg.HTTP)
	if err != nil {
		return err
	}
	defer ln.Close()
	db, _, cache, err := openRegistry(ctx, cfg.DB, cfg.Registry)
	if err != nil {
		return err
	}
	defer db.Close()
	reg := newMetrics()
	svc, icfg, err := newIngest(ctx, cfg, roleDeps{DB: db, Cache: cache, Reg: reg, Log: log})
	if err != nil {
		return err
	}
	log.Info("ingest starting", "mqtt", icfg.MQTTURL, "root", icfg.Root, "client_id", icfg.ClientID, "group", icfg.Group,
		"influx", icfg.InfluxURL, "bucket", icfg.Bucket(), "batch_size", icfg.BatchSize, "flush_interval", icfg.FlushInterval,
		"max_in_flight", icfg.MaxInFlight, "gc_percent", cfg.GCPercent, "db_dialect", db.Dialect, "http", ln.Addr().String())
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return cache.Run(ctx) })
	g.Go(func() error { return svc.Run(ctx) })
	reg.MustRegister(mqttconn.Collector(icfg.ClientID))
	g.Go(func() error { return serveOps(ctx, ln, reg, ingestReady(svc, db, icfg)) })
	return g.Wait()
}

// ingestReady is the ingest role's readiness: subscribed, its MQTT
// session open, the database and InfluxDB answer.
func ingestReady(svc *ingest.Service, db *sqldb.DB, cfg ingest.Config) func(context.Context) error {
	return allReady(func(context.Context) error {
		if !svc.Ready() {
			return errors.New("ingest: not subscribed yet")
		}
		return nil
	}, mqttReady(cfg.ClientID), dbReady(db), influxReady(cfg.InfluxURL))
}
