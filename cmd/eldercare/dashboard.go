package main

import (
	"context"
	"errors"
	"fmt"
	"github.com/spf13/pflag"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/eldercare-iot/eldercare/alerting"
	"github.com/eldercare-iot/eldercare/dashboard"
	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
)

func newDashboardCmd() *cobra.Command {
	host, _ := os.Hostname()
	if host == "" {
		host = "local"
	}
	cmd := &cobra.Command{
		Use:   "dashboard",
		Short: "Run the caregiver dashboard: live board, alerts, resident vitals, JSON API",
		Long: `dashboard serves the caregiver web app and the JSON API (/api/v1) on --http:
a live board of beds (vitals, occupancy, device states, open alerts) updated
over server-sent events, the alert list with acknowledge and resolve, and a
resident page with the last 15 minutes of vitals read from InfluxDB with Flux.

It reads the registry, the alert store and the dashboard accounts from --db,
follows devices and alert changes on MQTT under --root, and needs an API token
(--api-token or env ELDERCARE_API_TOKEN, at least 16 characters): the bearer
token of /api/v1 for machine clients.

People log in at http://HOST/login with a username and password. Create the
first admin with "eldercare users add --db DSN --username admin --role admin";
the admin's pages then manage the other accounts' sites and residents.`,
		Args: cobra.NoArgs,
		RunE: runDashboard,
	}
	f := cmd.Flags()
	f.String("http", "127.0.0.1:8080", "listen address of the dashboard, /api/v1, /healthz (liveness), /readyz (503 while the broker or the database is unusable) and /metrics (host:port)")
	f.String("api-token", "", "API bearer token of /api/v1 for machine clients, at least 16 characters (required; prefer env ELDERCARE_API_TOKEN; never printed)")
	f.String("mqtt", "tcp://127.0.0.1:1883", "MQTT broker URL of the live feed (tcp://, ssl:// or ws://; user:password@ allowed)")
	f.String("root", device.DefaultRoot, "MQTT topic root under which devices and the alerting service publish")
	f.String("client-id", "eldercare-dashboard-"+host, "MQTT client id of the live feed (clean session); unique per dashboard replica")
	f.String("influx", "http://127.0.0.1:8086", "InfluxDB URL for the vitals history (1.8 with flux-enabled, or 2.x)")
	f.String("influx-token", "", `InfluxDB token: "" or "user:password" for 1.8 (secret; prefer env ELDERCARE_INFLUX_TOKEN)`)
	f.String("influx-db", "eldercare", "InfluxDB database of the readings")
	f.String("influx-rp", "autogen", "InfluxDB retention policy of the readings (bucket is DB/RP)")
	f.String("db", "sqlite:./data/eldercare.db", "registry and alert store DSN: sqlite:PATH, a file path, or postgres://...")
	f.String("registry", "", "registry YAML file to import at start (optional; default none)")
	dashboardWebFlags(f)
	return cmd
}

func runDashboard(cmd *cobra.Command, _ []string) error {
	s, log, err := loadSettingsAndLogger(cmd)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	if s.String("api-token") == "" {
		return errors.New("dashboard: no API token: set env ELDERCARE_API_TOKEN (or --api-token, or api-token in the --config file) to a secret of at least 16 characters, e.g. the output of `openssl rand -hex 24`")
	}
	cfg := dashboard.Config{
		HTTPAddr:     s.String("http"),
		APIToken:     s.String("api-token"),
		MQTTURL:      s.String("mqtt"),
		Root:         s.String("root"),
		ClientID:     s.String("client-id"),
		InfluxURL:    s.String("influx"),
		InfluxToken:  s.String("influx-token"),
		InfluxBucket: s.String("influx-db") + "/" + s.String("influx-rp"),
	}
	dashboardWebConfig(s, &cfg)
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("dashboard: %w", err)
	}

	db, store, _, err := openRegistry(ctx, s.String("db"), s.String("registry"))
	if err != nil {
		return err
	}
	defer db.Close()
	mgr, err := alerting.OpenManager(ctx, db, log)
	if err != nil {
		return err
	}
	accounts, err := dashboard.OpenAccounts(ctx, db, nil)
	if err != nil {
		return err
	}
	if n, err := accounts.Count(ctx); err == nil && n == 0 {
		log.Warn("no dashboard accounts yet: create the first admin with `eldercare users add --db DSN --username admin --role admin`")
	}

	reg := newMetrics()
	feed, err := dashboard.NewFeed(dashboard.FeedConfig{MQTTURL: cfg.MQTTURL, Root: cfg.Root, ClientID: cfg.ClientID}, reg, log)
	if err != nil {
		return err
	}
	vitals := dashboard.NewFluxVitals(cfg.InfluxURL, cfg.InfluxToken, cfg.InfluxBucket)
	defer vitals.Close()
	// Readiness (/readyz, eldercare_ready): the live feed's broker
	// connection and the database.
	ready := allReady(func(context.Context) error { return feed.Healthy() }, dbReady(db))
	if err := errors.Join(mgr.RegisterMetrics(reg), registerReady(reg, ready)); err != nil {
		return err
	}
	reg.MustRegister(mqttconn.Collector(cfg.ClientID))
	srv, err := dashboard.New(cfg, dashboard.Deps{Alerts: mgr, Registry: store, Vitals: vitals, Live: feed, Accounts: accounts, Ready: ready, History: mgr,
		Unknown: mgr, Commands: mgr}, reg, log)
	if err != nil {
		return err
	}
	log.Info("dashboard starting", "config", cfg.String())

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return feed.Run(gctx) })
	g.Go(func() error { return srv.Run(gctx) })
	err = g.Wait()
	if errors.Is(err, context.Canceled) || ctx.Err() != nil {
		log.Info("dashboard stopped")
		return nil
	}
	return err
}

// dashboardWebFlags are the dashboard's web settings shared by the
// dashboard role and up: cookies, proxies and the resident map.
func dashboardWebFlags(f *pflag.FlagSet) {
	f.String("trusted-proxies", "", "comma-separated IPs or CIDR ranges of reverse proxies whose X-Real-IP header names the client for the login rate limit and the audit log; the proxy must overwrite X-Real-IP (default none: the TCP peer is the client)")
	f.Bool("secure-cookies", false, "mark the session cookie Secure (set when served over HTTPS, e.g. behind a TLS proxy; default false)")
	f.String("map-tiles", "", "raster tile server URL template for the resident page's map of safe zones and track, e.g. https://tiles.example.org/{z}/{x}/{y}.png; browsers fetch tiles from it directly (default none: a plain drawing without a map)")
	f.String("map-attribution", "", "credit the tile server's terms require, drawn on the map (e.g. \"© OpenStreetMap contributors\")")
}

// dashboardWebConfig sets cfg's fields of dashboardWebFlags from s.
func dashboardWebConfig(s *settings, cfg *dashboard.Config) {
	cfg.SecureCookies = s.Bool("secure-cookies")
	cfg.TrustedProxies = splitList(s.String("trusted-proxies"))
	cfg.MapTiles = s.String("map-tiles")
	cfg.MapAttribution = s.String("map-attribution")
}
