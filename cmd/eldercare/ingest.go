package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/ingest"
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
	f.String("influx", "http://127.0.0.1:8086", "InfluxDB base URL (1.8 with the v2 write API, or 2.x)")
	f.String("influx-token", "", `InfluxDB token, "user:password" for InfluxDB 1.8 with auth; prefer env ELDERCARE_INFLUX_TOKEN (never printed; default none)`)
	f.String("influx-db", ingest.DefaultDatabase, "InfluxDB database, created at start if missing")
	f.String("influx-rp", ingest.DefaultRetentionPolicy, `InfluxDB retention policy written into (bucket "<influx-db>/<influx-rp>")`)
	f.Int("batch-size", ingest.DefaultBatchSize, "points per InfluxDB write; a batch is written when it reaches this size")
	f.Duration("flush-interval", ingest.DefaultFlushInterval, "longest time a point waits before its batch is written (e.g. 200ms)")
	f.Int("max-in-flight", ingest.DefaultMaxInFlight, "most MQTT messages received but not yet acknowledged (written); beyond it the broker holds messages back (1-65535)")
	f.String("db", "sqlite:./data/eldercare.db", "registry database DSN: sqlite:PATH, a file path, or postgres://...")
	f.String("registry", "", "registry YAML file to import at start (optional; default none)")
	f.String("http", "127.0.0.1:9101", "listen address of /healthz and /metrics (host:port)")
	return cmd
}

func runIngest(cmd *cobra.Command, _ []string) error {
	s, err := loadSettings(cmd)
	if err != nil {
		return err
	}
	log, err := s.logger()
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	cfg := ingest.Config{
		MQTTURL:         s.String("mqtt"),
		Root:            s.String("root"),
		ClientID:        s.String("client-id"),
		Group:           s.String("group"),
		InfluxURL:       s.String("influx"),
		InfluxToken:     ingest.Secret(s.String("influx-token")),
		InfluxDatabase:  s.String("influx-db"),
		RetentionPolicy: s.String("influx-rp"),
		BatchSize:       s.Int("batch-size"),
		FlushInterval:   s.Duration("flush-interval"),
		MaxInFlight:     s.Int("max-in-flight"),
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	cfg = cfg.WithDefaults()

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
	reg := newMetrics()
	svc, err := ingest.New(cfg, ingestLookup(cache), reg, log)
	if err != nil {
		return err
	}
	log.Info("ingest starting", "mqtt", cfg.MQTTURL, "root", cfg.Root, "client_id", cfg.ClientID, "group", cfg.Group,
		"influx", cfg.InfluxURL, "bucket", cfg.Bucket(), "batch_size", cfg.BatchSize, "flush_interval", cfg.FlushInterval,
		"max_in_flight", cfg.MaxInFlight, "db_dialect", db.Dialect, "http", ln.Addr().String())
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return cache.Run(ctx) })
	g.Go(func() error { return svc.Run(ctx) })
	g.Go(func() error {
		return serveOps(ctx, ln, reg, func(context.Context) error {
			if !svc.Ready() {
				return errors.New("not subscribed yet")
			}
			return nil
		})
	})
	return g.Wait()
}
