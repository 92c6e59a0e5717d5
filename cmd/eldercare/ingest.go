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
	"golang.org/x/sync/errgroup"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/ingest"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
	"github.com/eldercare-iot/eldercare/internal/sqldb"
)

func newIngestCmd() *cobra.Command {
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
		RunE: runIngest,
	}
	f := cmd.Flags()
	f.String("mqtt", "tcp://127.0.0.1:1883", "MQTT broker URL (tcp://, ssl:// or ws://; user:password@ allowed)")
	f.String("root", device.DefaultRoot, "MQTT topic root under which devices publish")
	f.String("client-id", "", `MQTT client id; the session is persistent, so keep it stable and unique per replica (default "eldercare-ingest-<hostname>")`)
	f.String("group", ingest.DefaultGroup, "MQTT shared-subscription group; replicas in one group share the messages")
	f.Bool("leave-group-on-stop", true, "on SIGTERM, unsubscribe from the shared subscription before writing what is held and disconnecting, so the broker sends this replica's share to the other replicas; set false for a single replica, whose readings would otherwise be dropped by the broker while it restarts (docs/operations.md)")
	f.Duration("mqtt-read-delay", ingest.DefaultReadDelay, "wait this long before reading from the broker when it is not far ahead, to read many messages per system call (batches wait --flush-interval anyway); a negative value reads at once (docs/benchmarks.md)")
	f.Bool("shared-subscription", true, "subscribe through the shared subscription $share/<group>/... so replicas share the messages; false subscribes to the plain filters, for a single replica only (every replica would store every message), and keeps what is published while it restarts in its session (docs/operations.md)")
	f.String("influx", "http://127.0.0.1:8086", "InfluxDB base URL (1.8 with the v2 write API, or 2.x)")
	f.String("influx-token", "", `InfluxDB token, "user:password" for InfluxDB 1.8 with auth; prefer env ELDERCARE_INFLUX_TOKEN (never printed; default none)`)
	f.String("influx-db", ingest.DefaultDatabase, "InfluxDB database, created at start if missing")
	f.String("influx-rp", ingest.DefaultRetentionPolicy, `InfluxDB retention policy written into (bucket "<influx-db>/<influx-rp>")`)
	f.Int("gc-percent", 200, "Go garbage-collector target of this process, as GOGC (which it replaces): 200 lets the heap grow to three times what is live between collections, for about a tenth less CPU per reading and 20-40 MiB more memory (docs/benchmarks.md); 100 is Go's default (25-1000)")
	f.String("db", "sqlite:./data/eldercare.db", "registry database DSN: sqlite:PATH, a file path, or postgres://...")
	f.String("registry", "", "registry YAML file to import at start (optional; default none)")
	f.String("http", "127.0.0.1:9101", "listen address of /healthz (liveness), /readyz (503 while the broker, InfluxDB or the database is unusable) and /metrics (host:port)")
	addIngestFlags(f) // ingestflags.go, shared with up
	cmd.AddCommand(newDeadLettersCmd())
	return cmd
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

// cpuProfileEnv names a file to which `eldercare ingest` writes a Go CPU
// profile (runtime/pprof) of its whole run; `bench ingest --cpu-profile`
// sets it for its ingest child. Unset: no profiling.
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

func runIngest(cmd *cobra.Command, _ []string) error {
	s, log, err := loadSettingsAndLogger(cmd)
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
	cfg := ingest.Config{
		MQTTURL:          s.String("mqtt"),
		Root:             s.String("root"),
		ClientID:         s.String("client-id"),
		Group:            s.String("group"),
		LeaveGroupOnStop: s.Bool("leave-group-on-stop"),
		Unshared:         !s.Bool("shared-subscription"),
		ReadDelay:        s.Duration("mqtt-read-delay"),
		InfluxURL:        s.String("influx"),
		InfluxToken:      ingest.Secret(s.String("influx-token")),
		InfluxDatabase:   s.String("influx-db"),
		RetentionPolicy:  s.String("influx-rp"),
	}
	ingestPipeline(s, &cfg)
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	cfg = cfg.WithDefaults()
	gc := s.Int("gc-percent")
	if gc < 25 || gc > 1000 {
		return fmt.Errorf("--gc-percent %d: want 25-1000 (percent of the live heap; 100 is Go's default)", gc)
	}
	debug.SetGCPercent(gc)

	ln, err := listen("--http", s.String("http"))
	if err != nil {
		return err
	}
	defer ln.Close()
	db, _, cache, err := openRegistry(ctx, s.String("db"), s.String("registry"))
	if err != nil {
		return err
	}
	defer db.Close()
	if s.Bool("dead-letters") {
		store, err := ingest.OpenDeadLetters(ctx, db)
		if err != nil {
			return err
		}
		cfg.DeadLetters = store
	}
	reg := newMetrics()
	svc, err := ingest.New(cfg, ingestLookup(cache), reg, log)
	if err != nil {
		return err
	}
	log.Info("ingest starting", "mqtt", cfg.MQTTURL, "root", cfg.Root, "client_id", cfg.ClientID, "group", cfg.Group,
		"influx", cfg.InfluxURL, "bucket", cfg.Bucket(), "batch_size", cfg.BatchSize, "flush_interval", cfg.FlushInterval,
		"max_in_flight", cfg.MaxInFlight, "gc_percent", gc, "db_dialect", db.Dialect, "http", ln.Addr().String())
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return cache.Run(ctx) })
	g.Go(func() error { return svc.Run(ctx) })
	reg.MustRegister(mqttconn.Collector(cfg.ClientID))
	ready := allReady(func(context.Context) error {
		if !svc.Ready() {
			return errors.New("ingest: not subscribed yet")
		}
		return nil
	}, mqttReady(cfg.ClientID), dbReady(db), influxReady(cfg.InfluxURL))
	g.Go(func() error { return serveOps(ctx, ln, reg, ready) })
	return g.Wait()
}
