package main

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/eldercare-iot/eldercare/alerting"
	"github.com/eldercare-iot/eldercare/device"
)

func newAlertingCmd() *cobra.Command {
	host, _ := os.Hostname()
	if host == "" {
		host = "local"
	}
	cmd := &cobra.Command{
		Use:   "alerting",
		Short: "Run the alerting engine: rules on readings and events, alert store, notifications",
		Long: `alerting subscribes to every device's telemetry, events and status under the
topic root, raises alerts (fall, SOS, low SpO2, heart rate, respiration, device
offline), keeps them in the SQL alert store with a history of every change,
and delivers each change through a durable outbox to the MQTT alert topic
<root>/v1/alerts/<site>, to an optional signed webhook and to in-process
subscribers. See docs/alerting.md.`,
		Args: cobra.NoArgs,
		RunE: runAlerting,
	}
	f := cmd.Flags()
	f.String("mqtt", "tcp://127.0.0.1:1883", "MQTT broker URL (tcp://, ssl:// or ws://; user:password@ allowed)")
	f.String("root", device.DefaultRoot, "MQTT topic root under which devices publish")
	f.String("client-id", "eldercare-alerting-"+host, "MQTT client id; the session is persistent, so keep it stable and unique per replica")
	f.String("db", "sqlite:./data/eldercare.db", "alert store DSN: sqlite:PATH, a file path, or postgres://...")
	f.String("registry", "", "registry YAML file to import at start (optional; default none)")
	f.Duration("offline-timeout", alerting.DefaultOfflineTimeout, "wall-clock silence after which a device raises device_offline (e.g. 2m)")
	f.String("webhook-url", "", "URL that receives every alert change as a signed JSON POST (optional; default none)")
	f.String("webhook-secret", "", "HMAC-SHA256 secret that signs webhook bodies; prefer env ELDERCARE_WEBHOOK_SECRET (never printed)")
	f.String("http", "127.0.0.1:9102", "listen address of /healthz and /metrics (host:port)")
	return cmd
}

func runAlerting(cmd *cobra.Command, _ []string) error {
	s, err := loadSettings(cmd)
	if err != nil {
		return err
	}
	log, err := s.logger()
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	cfg := alerting.Config{
		MQTTURL:        s.String("mqtt"),
		Root:           s.String("root"),
		ClientID:       s.String("client-id"),
		OfflineTimeout: s.Duration("offline-timeout"),
		WebhookURL:     s.String("webhook-url"),
		WebhookSecret:  alerting.Secret(s.String("webhook-secret")),
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("alerting: %w", err)
	}
	if cfg.OfflineTimeout <= 0 {
		return fmt.Errorf("--offline-timeout: %s must be positive", cfg.OfflineTimeout)
	}
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
	m, err := alerting.OpenManager(ctx, db, log)
	if err != nil {
		return err
	}
	reg := newMetrics()
	svc, err := alerting.New(cfg, m, alertingResidents(cache), reg, log)
	if err != nil {
		return err
	}

	log.Info("alerting starting", "mqtt", cfg.MQTTURL, "root", cfg.Root, "client_id", cfg.ClientID,
		"db_dialect", db.Dialect, "offline_timeout", cfg.OfflineTimeout, "webhook", cfg.WebhookURL != "", "http", ln.Addr().String())
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return cache.Run(ctx) })
	g.Go(func() error { return svc.Run(ctx) })
	g.Go(func() error {
		return serveOps(ctx, ln, reg, func(ctx context.Context) error {
			if err := db.PingContext(ctx); err != nil {
				return fmt.Errorf("alert store: %w", err)
			}
			return nil
		})
	})
	return g.Wait()
}
