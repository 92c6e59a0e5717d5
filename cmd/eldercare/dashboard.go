package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"

	"github.com/eldercare-iot/eldercare/alerting"
	"github.com/eldercare-iot/eldercare/dashboard"
	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/device/registry"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
	"github.com/eldercare-iot/eldercare/internal/sqldb"
)

func newDashboardCmd() *cobra.Command {
	var cfg dashboardConfig
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
		RunE: func(cmd *cobra.Command, _ []string) error { return runDashboard(cmd, &cfg) },
	}
	cfg.bind(cmd.Flags())
	return cmd
}

// dashboardConfig is the dashboard role's configuration, one field per
// flag of `eldercare dashboard` (bind); cliconfig.Load fills it from the
// command line, the environment and the config file. up takes the same
// flags, except upOwnedFlags, whose fields it sets itself.
type dashboardConfig struct {
	// Where: listener, API token, broker, InfluxDB, database (up-owned).
	HTTP, APIToken, MQTT, Root, ClientID    string
	Influx, InfluxToken, InfluxDB, InfluxRP string
	DB, Registry                            string

	TrustedProxies string // comma-separated
	SecureCookies  bool
	MapTiles       string
	MapAttribution string
}

// bind registers the dashboard role's flags on f, bound to c's fields.
func (c *dashboardConfig) bind(f *pflag.FlagSet) {
	host, _ := os.Hostname()
	if host == "" {
		host = "local"
	}
	f.StringVar(&c.HTTP, "http", "127.0.0.1:8080", "listen address of the dashboard, /api/v1, /healthz (liveness), /readyz (503 while the broker or the database is unusable) and /metrics (host:port)")
	f.StringVar(&c.APIToken, "api-token", "", "API bearer token of /api/v1 for machine clients, at least 16 characters (required; prefer env ELDERCARE_API_TOKEN; never printed)")
	f.StringVar(&c.MQTT, "mqtt", "tcp://127.0.0.1:1883", "MQTT broker URL of the live feed (tcp://, ssl:// or ws://; user:password@ allowed)")
	f.StringVar(&c.Root, "root", device.DefaultRoot, "MQTT topic root under which devices and the alerting service publish")
	f.StringVar(&c.ClientID, "client-id", "eldercare-dashboard-"+host, "MQTT client id of the live feed (clean session); unique per dashboard replica")
	f.StringVar(&c.Influx, "influx", "http://127.0.0.1:8086", "InfluxDB URL for the vitals history (1.8 with flux-enabled, or 2.x)")
	f.StringVar(&c.InfluxToken, "influx-token", "", `InfluxDB token: "" or "user:password" for 1.8 (secret; prefer env ELDERCARE_INFLUX_TOKEN)`)
	f.StringVar(&c.InfluxDB, "influx-db", "eldercare", "InfluxDB database of the readings")
	f.StringVar(&c.InfluxRP, "influx-rp", "autogen", "InfluxDB retention policy of the readings (bucket is DB/RP)")
	f.StringVar(&c.DB, "db", "sqlite:./data/eldercare.db", "registry and alert store DSN: sqlite:PATH, a file path, or postgres://...")
	f.StringVar(&c.Registry, "registry", "", "registry YAML file to import at start (optional; default none)")
	c.bindWeb(f)
}

// bindWeb registers the dashboard's web settings: cookies, proxies and
// the resident map.
func (c *dashboardConfig) bindWeb(f *pflag.FlagSet) {
	f.StringVar(&c.TrustedProxies, "trusted-proxies", "", "comma-separated IPs or CIDR ranges of reverse proxies whose X-Real-IP header names the client for the login rate limit and the audit log; the proxy must overwrite X-Real-IP (default none: the TCP peer is the client)")
	f.BoolVar(&c.SecureCookies, "secure-cookies", false, "mark the session cookie Secure (set when served over HTTPS, e.g. behind a TLS proxy; default false)")
	f.StringVar(&c.MapTiles, "map-tiles", "", "raster tile server URL template for the resident page's map of safe zones and track, e.g. https://tiles.example.org/{z}/{x}/{y}.png; browsers fetch tiles from it directly (default none: a plain drawing without a map)")
	f.StringVar(&c.MapAttribution, "map-attribution", "", "credit the tile server's terms require, drawn on the map (e.g. \"© OpenStreetMap contributors\")")
}

// service is the dashboard.Config that c describes.
func (c *dashboardConfig) service() dashboard.Config {
	return dashboard.Config{
		HTTPAddr: c.HTTP, APIToken: c.APIToken,
		MQTTURL: c.MQTT, Root: c.Root, ClientID: c.ClientID,
		InfluxURL: c.Influx, InfluxToken: c.InfluxToken, InfluxBucket: c.InfluxDB + "/" + c.InfluxRP,
		SecureCookies: c.SecureCookies, TrustedProxies: splitList(c.TrustedProxies),
		MapTiles: c.MapTiles, MapAttribution: c.MapAttribution,
	}
}

// Validate reports every bad value of c: a missing API token (named with
// its flag and variable) and what dashboard.Config.Validate refuses.
func (c *dashboardConfig) Validate() error {
	if c.APIToken == "" {
		return errors.New("dashboard: no API token: set env ELDERCARE_API_TOKEN (or --api-token, or api-token in the --config file) to a secret of at least 16 characters, e.g. the output of `openssl rand -hex 24`")
	}
	if err := c.service().Validate(); err != nil {
		return fmt.Errorf("dashboard: %w", err)
	}
	return nil
}

// newDashboard builds the dashboard role from cfg: the one constructor of
// `eldercare dashboard` and `eldercare up`. deps holds what the caller
// shares (live feed, readiness, command path); newDashboard adds the alert
// store m, d's registry store, the accounts and vitals (nil: the
// dashboard reads InfluxDB through its own FluxVitals), see dashboardDeps.
func newDashboard(cfg *dashboardConfig, m *alerting.Manager, accounts *dashboard.Accounts, vitals *dashboard.FluxVitals, deps dashboard.Deps, d roleDeps) (*dashboard.Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return dashboard.New(cfg.service(), dashboardDeps(deps, m, d.Store, vitals, accounts), d.Reg, d.Log)
}

// dashboardDeps is deps with every store-backed dependency and optional
// capability of the dashboard set explicitly: the alert side from m, the
// registry side from store, the vitals side from vitals (nil: Vitals was
// not given, and dashboard.New fills them from the FluxVitals it builds).
// Commands defaults to m. Fields the caller set are kept.
func dashboardDeps(deps dashboard.Deps, m *alerting.Manager, store *registry.Store, vitals *dashboard.FluxVitals, accounts *dashboard.Accounts) dashboard.Deps {
	deps.Alerts, deps.History, deps.Unknown = m, m, m
	deps.Registry, deps.Accounts = store, accounts
	if deps.Commands == nil {
		deps.Commands = m // onboarding and staff commands (h-onboard)
	}
	deps.AckLinks, deps.Doses, deps.Trends, deps.ResponseTimes = m, m, m, m
	deps.Escalations, deps.Thresholds, deps.Policies, deps.Settings = m, m, m, m
	deps.Cards, deps.Beds, deps.Onboard, deps.Binder, deps.Importer = store, store, store, store, store
	if vitals != nil {
		deps.Vitals = vitals
		deps.Days, deps.Events, deps.Tracks, deps.Telemetry, deps.Windows = vitals, vitals, vitals, vitals, vitals
	}
	return deps
}

func runDashboard(cmd *cobra.Command, cfg *dashboardConfig) error {
	_, log, err := loadSettingsAndLogger(cmd)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	if err := cfg.Validate(); err != nil {
		return err
	}
	db, store, _, err := openRegistry(ctx, cfg.DB, cfg.Registry)
	if err != nil {
		return err
	}
	defer db.Close()
	mgr, accounts, err := openDashboardStores(ctx, db, log)
	if err != nil {
		return err
	}

	reg := newMetrics()
	feed, err := dashboard.NewFeed(dashboard.FeedConfig{MQTTURL: cfg.MQTT, Root: cfg.Root, ClientID: cfg.ClientID}, reg, log)
	if err != nil {
		return err
	}
	scfg := cfg.service()
	vitals := dashboard.NewFluxVitals(scfg.InfluxURL, scfg.InfluxToken, scfg.InfluxBucket)
	defer vitals.Close()
	// Readiness (/readyz, eldercare_ready): the live feed's broker
	// connection and the database.
	ready := allReady(func(context.Context) error { return feed.Healthy() }, dbReady(db))
	if err := errors.Join(mgr.RegisterMetrics(reg), registerReady(reg, ready)); err != nil {
		return err
	}
	reg.MustRegister(mqttconn.Collector(cfg.ClientID))
	srv, err := newDashboard(cfg, mgr, accounts, vitals, dashboard.Deps{Live: feed, Ready: ready},
		roleDeps{DB: db, Store: store, Reg: reg, Log: log})
	if err != nil {
		return err
	}
	log.Info("dashboard starting", "config", scfg.String())

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

// openDashboardStores opens the alert store and the accounts in db, and
// warns when there is no account yet.
func openDashboardStores(ctx context.Context, db *sqldb.DB, log *slog.Logger) (*alerting.Manager, *dashboard.Accounts, error) {
	mgr, err := alerting.OpenManager(ctx, db, log)
	if err != nil {
		return nil, nil, err
	}
	accounts, err := dashboard.OpenAccounts(ctx, db, nil)
	if err != nil {
		return nil, nil, err
	}
	if n, err := accounts.Count(ctx); err == nil && n == 0 {
		log.Warn("no dashboard accounts yet: create the first admin with `eldercare users add --db DSN --username admin --role admin`")
	}
	return mgr, accounts, nil
}
