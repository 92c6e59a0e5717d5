package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/eldercare-iot/eldercare/alerting"
	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/device/registry"
	"github.com/eldercare-iot/eldercare/internal/sqldb"
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
	ln, err := net.Listen("tcp", s.String("http"))
	if err != nil {
		return fmt.Errorf("--http %s: %w", s.String("http"), err)
	}
	defer ln.Close()

	db, err := sqldb.Open(ctx, s.String("db"))
	if err != nil {
		return fmt.Errorf("--db: %w", err)
	}
	defer db.Close()
	store, err := registry.Open(ctx, db)
	if err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	if file := s.String("registry"); file != "" {
		if err := registry.LoadFile(ctx, store, file); err != nil {
			return fmt.Errorf("--registry: %w", err)
		}
	}
	cache := registry.NewCache(store, 30*time.Second)
	if err := cache.Refresh(ctx); err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	m, err := alerting.OpenManager(ctx, db, log)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	residents := alerting.ResidentsFunc(func(dev string, t time.Time) (registry.Resident, bool) {
		return cache.Current().ResidentAt(dev, t)
	})
	svc, err := alerting.New(cfg, m, residents, reg, log)
	if err != nil {
		return err
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if err := db.PingContext(r.Context()); err != nil {
			http.Error(w, "alert store: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}

	log.Info("alerting starting", "mqtt", cfg.MQTTURL, "root", cfg.Root, "client_id", cfg.ClientID,
		"db_dialect", db.Dialect, "offline_timeout", cfg.OfflineTimeout, "webhook", cfg.WebhookURL != "", "http", ln.Addr().String())
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return cache.Run(ctx) })
	g.Go(func() error { return svc.Run(ctx) })
	g.Go(func() error {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("--http %s: %w", ln.Addr(), err)
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	return g.Wait()
}
