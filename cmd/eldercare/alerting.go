package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"

	"github.com/eldercare-iot/eldercare/alerting"
	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
	"github.com/eldercare-iot/eldercare/internal/sqldb"
)

func newAlertingCmd() *cobra.Command {
	var cfg alertingConfig
	cmd := &cobra.Command{
		Use:   "alerting",
		Short: "Run the alerting engine: rules on readings and events, alert store, notifications",
		Long: `alerting subscribes to every device's telemetry, events and status under the
topic root, raises alerts (fall, SOS, low SpO2, heart rate, respiration, device
offline), keeps them in the SQL alert store with a history of every change,
and delivers each change through a durable outbox to the MQTT alert topic
<root>/v1/alerts/<site>, to an optional signed webhook, an optional chat
robot (Slack, DingTalk, WeCom) and e-mail over SMTP. Escalation policies, on-duty rosters and quiet hours live in the
store (import them with --alerting-settings). See docs/alerting.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runAlerting(cmd, &cfg) },
	}
	cfg.bind(cmd.Flags())
	return cmd
}

// alertingConfig is the alerting role's configuration, one field per flag
// of `eldercare alerting` (bind); cliconfig.Load fills it from the command
// line, the environment and the config file. up takes the same flags,
// except upOwnedFlags, whose fields it sets itself.
type alertingConfig struct {
	// Where: broker, registry and alert store database, ops listener
	// (up-owned).
	MQTT, Root, ClientID, DB, Registry, HTTP string

	OfflineTimeout time.Duration
	WebhookURL     string
	WebhookSecret  string
	Retire         bool
	// Settings is the --alerting-settings file imported at start.
	Settings string
	// PublicURL is the dashboard's address for one-tap acknowledge links.
	PublicURL string
	SMTP      struct {
		Host, TLS, Username, Password, From string
		Port                                int
	}
	Chat struct{ URL, Template, Secret, Lang string }
}

// bind registers the alerting role's flags on f, bound to c's fields.
func (c *alertingConfig) bind(f *pflag.FlagSet) {
	host, _ := os.Hostname()
	if host == "" {
		host = "local"
	}
	f.StringVar(&c.MQTT, "mqtt", "tcp://127.0.0.1:1883", "MQTT broker URL (tcp://, ssl:// or ws://; user:password@ allowed)")
	f.StringVar(&c.Root, "root", device.DefaultRoot, "MQTT topic root under which devices publish")
	f.StringVar(&c.ClientID, "client-id", "eldercare-alerting-"+host, "MQTT client id; the session is persistent, so keep it stable and unique per replica")
	f.StringVar(&c.DB, "db", "sqlite:./data/eldercare.db", "alert store DSN: sqlite:PATH, a file path, or postgres://...")
	f.StringVar(&c.Registry, "registry", "", "registry YAML file to import at start (optional; default none)")
	f.DurationVar(&c.OfflineTimeout, "offline-timeout", alerting.DefaultOfflineTimeout, "report interval of a device the registry does not know and that announces no kind (registered devices use their own: registry report_interval, kind, or the defaults of docs/protocol.md)")
	f.StringVar(&c.WebhookURL, "webhook-url", "", "URL that receives every alert change as a signed JSON POST (optional; default none)")
	f.StringVar(&c.WebhookSecret, "webhook-secret", "", "HMAC-SHA256 secret that signs webhook bodies; prefer env ELDERCARE_WEBHOOK_SECRET (never printed)")
	f.BoolVar(&c.Retire, "retire", false, "this replica is being retired for good: on SIGTERM, unsubscribe before disconnecting so the broker stops queueing for its sessions (default false: a restart resumes the persistent sessions with what arrived meanwhile)")
	f.StringVar(&c.HTTP, "http", "127.0.0.1:9102", "listen address of /healthz (liveness), /readyz (503 while alerts cannot be stored) and /metrics (host:port)")
	c.bindNotifications(f)
}

// bindNotifications registers the escalation, e-mail and chat-robot flags.
func (c *alertingConfig) bindNotifications(f *pflag.FlagSet) {
	f.StringVar(&c.Settings, "alerting-settings", "", "YAML file of recipients, rosters, escalation policies and flapping to import into the alert store at start (audited as import:FILE; default none; see docs/alerting.md)")
	f.StringVar(&c.SMTP.Host, "smtp-host", "", "SMTP server for e-mail notifications to paged recipients (default none: no e-mail)")
	f.IntVar(&c.SMTP.Port, "smtp-port", 587, "SMTP server port (587 submission with STARTTLS, 465 implicit TLS, 25 relay)")
	f.StringVar(&c.SMTP.TLS, "smtp-tls", "starttls", "SMTP transport security: starttls (required), tls (implicit, e.g. port 465) or none (loopback or a trusted relay only)")
	f.StringVar(&c.SMTP.Username, "smtp-username", "", "SMTP AUTH user name (default none: no authentication)")
	f.StringVar(&c.SMTP.Password, "smtp-password", "", "SMTP AUTH password; prefer env ELDERCARE_SMTP_PASSWORD (secret, never printed)")
	f.StringVar(&c.SMTP.From, "smtp-from", "", "sender address of e-mail notifications, e.g. 'Eldercare <alerts@example.org>' (required with --smtp-host)")
	f.StringVar(&c.Chat.URL, "chat-webhook-url", "", "chat robot incoming-webhook URL that receives every alert change (default none)")
	f.StringVar(&c.Chat.Template, "chat-webhook-template", alerting.TemplateSlack, "body format of --chat-webhook-url: slack, dingtalk, dingtalk-text, wecom, wecom-text or eldercare (the signed JSON)")
	f.StringVar(&c.Chat.Secret, "chat-webhook-secret", "", "optional HMAC-SHA256 secret that signs chat webhook bodies in X-Eldercare-Signature (secret; default none)")
	f.StringVar(&c.Chat.Lang, "chat-webhook-lang", "", "language of --chat-webhook-url messages: en or zh-CN (default: the first paged person's language)")
	f.StringVar(&c.PublicURL, "public-url", "", "the dashboard's address as people's phones reach it, e.g. https://care.example.org; notifications carry one-tap acknowledge links under it (default none: no links)")
}

// Validate reports every bad value of c, each naming its flag.
func (c *alertingConfig) Validate() error {
	var errs []error
	if c.OfflineTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--offline-timeout: %s must be positive", c.OfflineTimeout))
	}
	if u := c.PublicURL; u != "" && !isHTTPURL(u) {
		errs = append(errs, fmt.Errorf("--public-url %q: want http:// or https://", u))
	}
	if l := c.Chat.Lang; l != "" && !slices.Contains(alerting.Languages, l) {
		errs = append(errs, fmt.Errorf("--chat-webhook-lang %q: want en or zh-CN", l))
	}
	if c.Chat.URL != "" && !slices.Contains(alerting.Templates, c.Chat.Template) {
		errs = append(errs, fmt.Errorf("--chat-webhook-template %q: want one of %s", c.Chat.Template, strings.Join(alerting.Templates, ", ")))
	}
	if u := c.Chat.URL; u != "" && !isHTTPURL(u) {
		errs = append(errs, fmt.Errorf("--chat-webhook-url %q: want http:// or https://", u))
	}
	if err := c.service().Validate(); err != nil {
		errs = append(errs, fmt.Errorf("alerting: %w", err))
	}
	return errors.Join(errs...)
}

func isHTTPURL(u string) bool {
	return strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://")
}

// service is the alerting.Config that c describes, before the registry
// wiring newAlerting adds.
func (c *alertingConfig) service() alerting.Config {
	return alerting.Config{MQTTURL: c.MQTT, Root: c.Root, ClientID: c.ClientID, OfflineTimeout: c.OfflineTimeout,
		WebhookURL: c.WebhookURL, WebhookSecret: alerting.Secret(c.WebhookSecret), UnsubscribeOnStop: c.Retire}
}

// newAlerting builds the alerting role from cfg on the alert store m and
// d's registry: the one constructor of `eldercare alerting` and `eldercare
// up`. It imports --alerting-settings and registers the store's metrics.
func newAlerting(ctx context.Context, cfg *alertingConfig, m *alerting.Manager, d roleDeps) (*alerting.Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	acfg := cfg.service()
	var err error
	if acfg.Receivers, err = alertingExtras(ctx, cfg, m, alerting.RegistryPlaces(d.Cache.Current)); err != nil {
		return nil, err
	}
	if err := m.RegisterMetrics(d.Reg); err != nil {
		return nil, err
	}
	acfg.Rules.Directory = registryDirectory(d.Cache)
	acfg.Programme = alertingProgramme(d.Store)
	acfg.Wards = alerting.NewRegistryWards(d.Cache.Current, d.Store.Rooms) // ward rosters (h-paging)
	return alerting.New(acfg, m, alertingResidents(d.Cache), d.Reg, d.Log)
}

// alertingExtras imports --alerting-settings and builds the e-mail and chat
// receivers from c (checked by Validate).
// Notifications name residents, rooms and beds from places (nil: ids).
func alertingExtras(ctx context.Context, c *alertingConfig, m *alerting.Manager, places alerting.Places) ([]alerting.Receiver, error) {
	render := &alerting.Renderer{Places: places, Links: m.AckLinks(c.PublicURL), Lang: c.Chat.Lang}
	if err := importAlertingSettings(ctx, c.Settings, m); err != nil {
		return nil, err
	}
	var out []alerting.Receiver
	if c.SMTP.Host != "" {
		em, err := alerting.NewEmail(alerting.EmailConfig{Host: c.SMTP.Host, Port: c.SMTP.Port, TLS: c.SMTP.TLS,
			Username: c.SMTP.Username, Password: alerting.Secret(c.SMTP.Password), From: c.SMTP.From}, m)
		if err != nil {
			return nil, fmt.Errorf("--smtp-*: %w", err)
		}
		em.Renderer = render
		out = append(out, em)
	}
	if c.Chat.URL != "" {
		out = append(out, &alerting.Webhook{URL: c.Chat.URL, Template: c.Chat.Template, ReceiverName: "chat", Renderer: render,
			Secret: alerting.Secret(c.Chat.Secret)})
	}
	return out, nil
}

// importAlertingSettings imports the --alerting-settings file at path
// (none when empty) into the alert store, audited as import:PATH.
func importAlertingSettings(ctx context.Context, path string, m *alerting.Manager) error {
	if path == "" {
		return nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--alerting-settings: %w", err)
	}
	set, err := alerting.ParseSettings(b)
	if err != nil {
		return fmt.Errorf("--alerting-settings %s: %w", path, err)
	}
	if err := m.ImportSettings(ctx, "import:"+path, set); err != nil {
		return fmt.Errorf("--alerting-settings %s: %w", path, err)
	}
	return nil
}

func runAlerting(cmd *cobra.Command, cfg *alertingConfig) error {
	_, log, err := loadSettingsAndLogger(cmd)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	if err := cfg.Validate(); err != nil {
		return err
	}
	ln, err := listen("--http", cfg.HTTP)
	if err != nil {
		return err
	}
	defer ln.Close()
	db, store, cache, err := openRegistry(ctx, cfg.DB, cfg.Registry)
	if err != nil {
		return err
	}
	defer db.Close()
	m, err := alerting.OpenManager(ctx, db, log)
	if err != nil {
		return err
	}
	reg := newMetrics()
	reg.MustRegister(mqttconn.Collector(cfg.ClientID, alerting.StatusTelemetryClientID(cfg.ClientID)))
	svc, err := newAlerting(ctx, cfg, m, roleDeps{DB: db, Store: store, Cache: cache, Reg: reg, Log: log})
	if err != nil {
		return err
	}

	log.Info("alerting starting", "mqtt", cfg.MQTT, "root", cfg.Root, "client_id", cfg.ClientID,
		"db_dialect", db.Dialect, "offline_timeout", cfg.OfflineTimeout, "webhook", cfg.WebhookURL != "", "http", ln.Addr().String())
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return cache.Run(ctx) })
	g.Go(func() error { return svc.Run(ctx) })
	g.Go(func() error { return serveOps(ctx, ln, reg, alertingReady(svc, db, cfg.ClientID)) })
	return g.Wait()
}

// alertingReady is the alerting role's readiness: the engine started and
// every decision reaches the alert store (alerting.Service.Ready), both
// MQTT sessions open, the database answers.
func alertingReady(svc *alerting.Service, db *sqldb.DB, clientID string) func(context.Context) error {
	return allReady(func(context.Context) error { return svc.Ready() },
		mqttReady(clientID, alerting.StatusTelemetryClientID(clientID)), dbReady(db))
}
