package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"

	"github.com/eldercare-iot/eldercare/alerting"
	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
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
<root>/v1/alerts/<site>, to an optional signed webhook, an optional chat
robot (Slack, DingTalk, WeCom) and e-mail over SMTP. Escalation policies, on-duty rosters and quiet hours live in the
store (import them with --alerting-settings). See docs/alerting.md.`,
		Args: cobra.NoArgs,
		RunE: runAlerting,
	}
	f := cmd.Flags()
	f.String("mqtt", "tcp://127.0.0.1:1883", "MQTT broker URL (tcp://, ssl:// or ws://; user:password@ allowed)")
	f.String("root", device.DefaultRoot, "MQTT topic root under which devices publish")
	f.String("client-id", "eldercare-alerting-"+host, "MQTT client id; the session is persistent, so keep it stable and unique per replica")
	f.String("db", "sqlite:./data/eldercare.db", "alert store DSN: sqlite:PATH, a file path, or postgres://...")
	f.String("registry", "", "registry YAML file to import at start (optional; default none)")
	f.Duration("offline-timeout", alerting.DefaultOfflineTimeout, "report interval of a device the registry does not know and that announces no kind (registered devices use their own: registry report_interval, kind, or the defaults of docs/protocol.md)")
	f.String("webhook-url", "", "URL that receives every alert change as a signed JSON POST (optional; default none)")
	f.String("webhook-secret", "", "HMAC-SHA256 secret that signs webhook bodies; prefer env ELDERCARE_WEBHOOK_SECRET (never printed)")
	f.Bool("retire", false, "this replica is being retired for good: on SIGTERM, unsubscribe before disconnecting so the broker stops queueing for its sessions (default false: a restart resumes the persistent sessions with what arrived meanwhile)")
	f.String("http", "127.0.0.1:9102", "listen address of /healthz (liveness), /readyz (503 while alerts cannot be stored) and /metrics (host:port)")
	addAlertingFlags(f)
	return cmd
}

// addAlertingFlags adds the escalation, e-mail and chat-robot flags shared
// by alerting and up.
func addAlertingFlags(f *pflag.FlagSet) {
	f.String("alerting-settings", "", "YAML file of recipients, rosters, escalation policies and flapping to import into the alert store at start (audited as import:FILE; default none; see docs/alerting.md)")
	f.String("smtp-host", "", "SMTP server for e-mail notifications to paged recipients (default none: no e-mail)")
	f.Int("smtp-port", 587, "SMTP server port (587 submission with STARTTLS, 465 implicit TLS, 25 relay)")
	f.String("smtp-tls", "starttls", "SMTP transport security: starttls (required), tls (implicit, e.g. port 465) or none (loopback or a trusted relay only)")
	f.String("smtp-username", "", "SMTP AUTH user name (default none: no authentication)")
	f.String("smtp-password", "", "SMTP AUTH password; prefer env ELDERCARE_SMTP_PASSWORD (secret, never printed)")
	f.String("smtp-from", "", "sender address of e-mail notifications, e.g. 'Eldercare <alerts@example.org>' (required with --smtp-host)")
	f.String("chat-webhook-url", "", "chat robot incoming-webhook URL that receives every alert change (default none)")
	f.String("chat-webhook-template", alerting.TemplateSlack, "body format of --chat-webhook-url: slack, dingtalk, dingtalk-text, wecom, wecom-text or eldercare (the signed JSON)")
	f.String("chat-webhook-secret", "", "optional HMAC-SHA256 secret that signs chat webhook bodies in X-Eldercare-Signature (secret; default none)")
	f.String("chat-webhook-lang", "", "language of --chat-webhook-url messages: en or zh-CN (default: the first paged person's language)")
	f.String("public-url", "", "the dashboard's address as people's phones reach it, e.g. https://care.example.org; notifications carry one-tap acknowledge links under it (default none: no links)")
}

// alertingExtras imports --alerting-settings and builds the e-mail and chat
// receivers from the flags.
// Notifications name residents, rooms and beds from places (nil: ids).
func alertingExtras(ctx context.Context, s *settings, m *alerting.Manager, places alerting.Places) ([]alerting.Receiver, error) {
	if u := s.String("public-url"); u != "" && !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
		return nil, fmt.Errorf("--public-url %q: want http:// or https://", u)
	}
	if l := s.String("chat-webhook-lang"); l != "" && !slices.Contains(alerting.Languages, l) {
		return nil, fmt.Errorf("--chat-webhook-lang %q: want en or zh-CN", l)
	}
	render := &alerting.Renderer{Places: places, Links: m.AckLinks(s.String("public-url")), Lang: s.String("chat-webhook-lang")}
	if path := s.String("alerting-settings"); path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("--alerting-settings: %w", err)
		}
		set, err := alerting.ParseSettings(b)
		if err != nil {
			return nil, fmt.Errorf("--alerting-settings %s: %w", path, err)
		}
		if err := m.ImportSettings(ctx, "import:"+path, set); err != nil {
			return nil, fmt.Errorf("--alerting-settings %s: %w", path, err)
		}
	}
	var out []alerting.Receiver
	if host := s.String("smtp-host"); host != "" {
		em, err := alerting.NewEmail(alerting.EmailConfig{
			Host: host, Port: s.Int("smtp-port"), TLS: s.String("smtp-tls"),
			Username: s.String("smtp-username"), Password: alerting.Secret(s.String("smtp-password")),
			From: s.String("smtp-from"),
		}, m)
		if err != nil {
			return nil, fmt.Errorf("--smtp-*: %w", err)
		}
		em.Renderer = render
		out = append(out, em)
	}
	if u := s.String("chat-webhook-url"); u != "" {
		tpl := s.String("chat-webhook-template")
		if !slices.Contains(alerting.Templates, tpl) {
			return nil, fmt.Errorf("--chat-webhook-template %q: want one of %s", tpl, strings.Join(alerting.Templates, ", "))
		}
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			return nil, fmt.Errorf("--chat-webhook-url %q: want http:// or https://", u)
		}
		out = append(out, &alerting.Webhook{URL: u, Template: tpl, ReceiverName: "chat", Renderer: render,
			Secret: alerting.Secret(s.String("chat-webhook-secret"))})
	}
	return out, nil
}

func runAlerting(cmd *cobra.Command, _ []string) error {
	s, log, err := loadSettingsAndLogger(cmd)
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

		UnsubscribeOnStop: s.Bool("retire"),
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
	db, store, cache, err := openRegistry(ctx, s.String("db"), s.String("registry"))
	if err != nil {
		return err
	}
	defer db.Close()
	m, err := alerting.OpenManager(ctx, db, log)
	if err != nil {
		return err
	}
	if cfg.Receivers, err = alertingExtras(ctx, s, m, alerting.RegistryPlaces(cache.Current)); err != nil {
		return err
	}
	reg := newMetrics()
	if err := m.RegisterMetrics(reg); err != nil {
		return err
	}
	reg.MustRegister(mqttconn.Collector(cfg.ClientID, alerting.StatusTelemetryClientID(cfg.ClientID)))
	cfg.Rules.Directory = registryDirectory(cache)
	cfg.Programme = alertingProgramme(store)
	cfg.Wards = alerting.NewRegistryWards(cache.Current, store.Rooms) // ward rosters (h-paging)
	svc, err := alerting.New(cfg, m, alertingResidents(cache), reg, log)
	if err != nil {
		return err
	}

	log.Info("alerting starting", "mqtt", cfg.MQTTURL, "root", cfg.Root, "client_id", cfg.ClientID,
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
