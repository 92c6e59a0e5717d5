// Package dashboard is the caregiver's web app: a live board of beds with
// vitals, occupancy, device states and open alerts (updated over SSE), an
// alert list with acknowledge and resolve, a resident page with the last
// 15 minutes of vitals from InfluxDB (Flux) as inline SVG charts, and a JSON
// API under /api/v1.
//
// Browsers log in with a username and password (accounts with roles admin,
// manager, nurse_lead, caregiver and family, see Accounts) and get a
// server-side session (cookie HttpOnly, SameSite=Lax, a new id at every
// login); forms carry a CSRF token bound to the session; staff see their
// sites and family members their linked residents only; views of health
// data and alert changes go to an audit log (see auth.go, scope.go,
// audit.go). The JSON API takes "Authorization: Bearer <token>".
package dashboard

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/eldercare-iot/eldercare/alerting"
	"github.com/eldercare-iot/eldercare/device/registry"
)

//go:embed web/templates/*.html
var webFS embed.FS

// Alerts is the alert store's public operations, implemented by
// *alerting.Manager. Errors wrap alerting.ErrNotFound and
// alerting.ErrConflict. The dashboard shows and serves the alerts as
// returned (times in UTC, Unassigned set when Resident is nil, as
// alerting.Manager returns them).
type Alerts interface {
	List(ctx context.Context, f alerting.Filter) ([]alerting.Alert, error)
	Get(ctx context.Context, id int64) (alerting.Alert, error)
	History(ctx context.Context, id int64) ([]alerting.HistoryEntry, error)
	Acknowledge(ctx context.Context, id int64, actor, channel string) (alerting.Alert, error)
	Resolve(ctx context.Context, id int64, actor, channel, outcome, note string) (alerting.Alert, error)
}

// Registry is the read side of the device registry, implemented by
// *registry.Store. siteID "" and deviceID "" mean all.
type Registry interface {
	Sites(ctx context.Context) ([]registry.Site, error)
	Rooms(ctx context.Context, siteID string) ([]registry.Room, error)
	Beds(ctx context.Context, siteID string) ([]registry.Bed, error)
	Residents(ctx context.Context, siteID string) ([]registry.Resident, error)
	Devices(ctx context.Context, siteID string) ([]registry.Device, error)
	Bindings(ctx context.Context, deviceID string) ([]registry.Binding, error)
}

// Deps are the dashboard's collaborators. Deps.Alerts also verifies the
// live feed's alert changes (FeedConfig.Alerts) when the feed has no store.
type Deps struct {
	Alerts   Alerts
	Registry Registry
	// Vitals reads vitals history; nil = a FluxVitals over Config.Influx*.
	Vitals VitalsQuerier
	// Live is the live feed; nil = a Feed over Config.MQTTURL that
	// Server.Run runs. When given, the caller runs it.
	Live *Feed
	// Now is the wall clock; nil = time.Now.
	Now func() time.Time
	// Accounts are the users, their logins and the audit log (required;
	// OpenAccounts).
	Accounts *Accounts
	// Ready, if set, is /readyz's check (nil: ready); nil = the live
	// feed's broker connection (Feed.Healthy).
	Ready func(context.Context) error
	// History is the alert history (*alerting.Manager; history.go): nil
	// = the history pages and API answer 503.
	History AlertHistory
	// Unknown lists devices heard from but not registered, for adoption
	// on /admin/onboard (onboard.go); nil: the page lists none.
	// *alerting.Manager implements it.
	Unknown UnknownDevices
	// Commands sends tracked commands to devices (close a valve, silence a
	// siren, test an alarm) from the resident page (commands.go); nil: the
	// page shows no command buttons. *alerting.Service (in process) and
	// *alerting.Manager (through the alert store) implement it.
	Commands Commander

	// The optional capabilities below are passed explicitly, never found
	// by type assertion. In production *alerting.Manager fills the alert
	// ones, *registry.Store the registry ones and *FluxVitals the vitals
	// ones (cmd/eldercare newDashboard). When Vitals is nil, New fills the
	// nil vitals capabilities from the FluxVitals it builds.

	// AckLinks checks and acknowledges the one-tap acknowledge links of
	// notifications (acklink.go); nil: /ack/{token} answers 503.
	AckLinks AckLinker
	// Doses reads recorded medication doses (adherence.go); nil: the
	// adherence page says it is unavailable and residents show none.
	Doses DoseReader
	// Trends reads alert responses and device offline periods
	// (manager_trends.go, handover.go, manager_devices.go,
	// manager_programme.go); nil: those reports count no alerts and no
	// offline time.
	Trends TrendReader
	// ResponseTimes reads the alert response-time statistics
	// (reports.go); nil: the manager report has no response times.
	ResponseTimes ResponseTimer
	// Escalations reads the escalation state of open alerts (triage.go);
	// nil: the board shows only how long each alert has waited.
	Escalations EscalationReader
	// Thresholds reads per-resident thresholds (triage.go); nil: the
	// board uses alerting.DefaultThresholds for every resident.
	Thresholds ThresholdReader
	// Policies stores escalation policies, rosters and alert settings
	// (views_admin.go, policyform.go, triage.go); nil: the admin page has
	// no policy or roster forms and their posts answer 503.
	Policies PolicyStore
	// Settings stores notification preferences and contacts
	// (views_family.go, contacts.go); nil: those pages say they are
	// unavailable and their posts answer 503.
	Settings SettingsStore

	// Cards lists meal cards (reports.go, family_view.go,
	// manager_programme.go); nil: no meal cards, so no meal reports.
	Cards CardLister
	// Beds reads the bed type history (manager_programme.go); nil: the
	// programme report has no bed type changes.
	Beds BedHistory
	// Onboard is the registry's write side of /admin/onboard (onboard.go,
	// views_registry.go); nil: the page is read-only and its posts answer
	// 503.
	Onboard OnboardStore
	// Binder binds devices to residents on the admin page
	// (views_admin.go); nil: no bind form, and its posts answer 503.
	Binder Binder
	// Importer upserts registry rows (views_registry.go); nil: the
	// registry editor is read-only and its posts answer 503.
	Importer Importer

	// Days reads meals and a resident's day from InfluxDB (family_day.go,
	// family_view.go, manager_programme.go); nil: no meals or day events.
	Days DayReader
	// Events counts meals and card taps (reports.go, family_view.go,
	// manager_programme.go); nil: no meal counts or card-tap visits.
	Events EventCounter
	// Tracks reads a resident's positions (devices_track.go); nil: the
	// zone map draws the safe zones without a track.
	Tracks TrackReader
	// Telemetry reads each device's last telemetry (manager_devices.go);
	// nil: the device health page marks telemetry unavailable.
	Telemetry DeviceTelemetry
	// Windows reads vitals averaged per window for the resident page
	// (views_caregiver.go); nil: the page reads raw points from Vitals.
	Windows WindowedVitals
}

// fluxCapabilities sets the nil vitals capabilities to f.
func (d *Deps) fluxCapabilities(f *FluxVitals) {
	if d.Days == nil {
		d.Days = f
	}
	if d.Events == nil {
		d.Events = f
	}
	if d.Tracks == nil {
		d.Tracks = f
	}
	if d.Telemetry == nil {
		d.Telemetry = f
	}
	if d.Windows == nil {
		d.Windows = f
	}
}

// Server is the dashboard web app.
type Server struct {
	cfg      Config
	deps     Deps
	log      *slog.Logger
	now      func() time.Time
	app      *fiber.App
	tmpl     *template.Template
	sessions *sessions
	limiter  *loginLimiter
	ownFeed  bool
	flux     *FluxVitals
	done     chan struct{} // closed when Run stops: ends SSE streams
	csp      string        // the Content-Security-Policy of every response

	mRequests    *prometheus.CounterVec
	mAuditErrors prometheus.Counter
}

// New builds the server and registers its metrics on reg (also served on
// /metrics): eldercare_dashboard_http_requests_total{method,route,code} and
// the live feed's metrics when New creates the feed. Errors: an invalid
// config (every problem, joined), missing Alerts or Registry.
func New(cfg Config, deps Deps, reg *prometheus.Registry, log *slog.Logger) (*Server, error) {
	cfg = cfg.withDefaults()
	var errs []error
	if err := cfg.validate(deps.Live != nil, deps.Vitals != nil); err != nil {
		errs = append(errs, err)
	}
	if deps.Alerts == nil {
		errs = append(errs, errors.New("deps: Alerts is required"))
	}
	if deps.Registry == nil {
		errs = append(errs, errors.New("deps: Registry is required"))
	}
	if deps.Accounts == nil {
		errs = append(errs, errors.New("deps: Accounts is required (dashboard.OpenAccounts)"))
	}
	if reg == nil {
		errs = append(errs, errors.New("prometheus registry is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("dashboard config: %w", err)
	}
	if log == nil {
		log = slog.Default()
	}
	s := &Server{cfg: cfg, deps: deps, log: log, now: deps.Now, done: make(chan struct{})}
	if s.now == nil {
		s.now = time.Now
	}
	s.sessions = newSessions(deps.Accounts, cfg.SessionTTL, cfg.SessionIdle, s.now)
	s.limiter = newLoginLimiter(deps.Accounts, s.now)
	if s.deps.Live == nil {
		f, err := NewFeed(FeedConfig{MQTTURL: cfg.MQTTURL, Root: cfg.Root, ClientID: cfg.ClientID, Now: s.now, Alerts: deps.Alerts}, reg, log)
		if err != nil {
			return nil, err
		}
		s.deps.Live, s.ownFeed = f, true
	} else if !s.deps.Live.HasAlertGetter() {
		// A feed built by the caller without a store: verify its MQTT
		// alert changes against ours (see FeedConfig.Alerts).
		s.deps.Live.SetAlertGetter(deps.Alerts)
	}
	if s.deps.Vitals == nil {
		s.flux = NewFluxVitals(cfg.InfluxURL, cfg.InfluxToken, cfg.InfluxBucket)
		s.deps.Vitals = s.flux
		s.deps.fluxCapabilities(s.flux)
	}
	s.mRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "eldercare_dashboard_http_requests_total",
		Help: "HTTP requests served by the dashboard, by method, route pattern and status code.",
	}, []string{"method", "route", "code"})
	s.mAuditErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "eldercare_dashboard_audit_errors_total",
		Help: "Audit log rows that could not be written (the request itself was served).",
	})
	if err := reg.Register(s.mAuditErrors); err != nil {
		return nil, fmt.Errorf("dashboard: register metrics: %w", err)
	}
	if err := reg.Register(s.mRequests); err != nil {
		return nil, fmt.Errorf("dashboard: register metrics: %w", err)
	}
	tmpl, err := parseTemplates()
	if err != nil {
		return nil, err
	}
	s.tmpl = tmpl
	s.csp = "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
	if cfg.MapTiles != "" {
		origin, _ := ParseTileURL(cfg.MapTiles) // validated above
		s.csp += "; img-src 'self' " + origin   // the map's tiles (zonemap.go)
	}
	s.app = s.routes(reg)
	return s, nil
}

// App returns the Fiber app (for tests: app.Test).
func (s *Server) App() *fiber.App { return s.app }

// Handler returns the app as a net/http handler.
func (s *Server) Handler() http.Handler { return adaptor.FiberApp(s.app) }

// Feed returns the live feed the server reads.
func (s *Server) Feed() *Feed { return s.deps.Live }

// Run listens on Config.HTTPAddr and serves until ctx is cancelled, then
// shuts down gracefully (SSE streams are ended). When New created the live
// feed, Run runs it too. It returns an error naming the address when it
// cannot listen (e.g. the port is in use).
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("dashboard: listen on %s: %w", s.cfg.HTTPAddr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve is Run on a listener the caller opened.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if s.flux != nil {
		defer s.flux.Close()
	}
	feedErr := make(chan error, 1)
	if s.ownFeed {
		go func() {
			err := s.deps.Live.Run(ctx)
			if err != nil {
				cancel()
			}
			feedErr <- err
		}()
	} else {
		feedErr <- nil
	}
	srvErr := make(chan error, 1)
	go func() { srvErr <- s.app.Listener(ln) }()
	s.log.Info("dashboard listening", "addr", ln.Addr().String())
	var err error
	select {
	case <-ctx.Done():
	case err = <-srvErr:
		err = fmt.Errorf("dashboard: serve on %s: %w", ln.Addr(), err)
		cancel()
	}
	close(s.done)
	if shErr := s.app.ShutdownWithTimeout(10 * time.Second); shErr != nil && err == nil {
		err = fmt.Errorf("dashboard: shut down: %w", shErr)
	}
	if fErr := <-feedErr; fErr != nil && err == nil {
		err = fErr
	}
	return err
}

func (s *Server) routes(reg *prometheus.Registry) *fiber.App {
	app := fiber.New(fiber.Config{
		AppName:               "eldercare-dashboard",
		Immutable:             true, // values outlive the request (sessions, notes)
		BodyLimit:             s.cfg.BodyLimit,
		DisableStartupMessage: true,
		ReadTimeout:           30 * time.Second,
		IdleTimeout:           120 * time.Second,
		ErrorHandler:          s.errorHandler,
		// c.IP() is the TCP peer unless it is a trusted proxy (auth.go).
		EnableTrustedProxyCheck: true,
		TrustedProxies:          s.cfg.TrustedProxies,
		ProxyHeader:             proxyHeader(s.cfg.TrustedProxies),
		EnableIPValidation:      true,
	})
	app.Use(s.securityHeaders, s.countRequests)

	// /healthz: the process answers (liveness); /readyz: broker and
	// stores usable (readiness, 503 with the reason).
	app.Get("/healthz", func(c *fiber.Ctx) error { return c.SendString("ok") })
	app.Get("/readyz", func(c *fiber.Ctx) error {
		ready := s.deps.Ready
		if ready == nil {
			ready = func(context.Context) error { return s.deps.Live.Healthy() }
		}
		if err := ready(c.UserContext()); err != nil {
			return c.Status(fiber.StatusServiceUnavailable).SendString(err.Error())
		}
		return c.SendString("ok")
	})
	app.Get("/metrics", adaptor.HTTPHandler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})))
	// The front-end bundle (npm packages pinned in web/package-lock.json,
	// built by "make assets"); the login page needs it too.
	s.pwaRoutes(app) // pwa.go: manifest, service worker, icon under /assets/pwa/
	app.Get(AssetsPrefix+"*", s.Assets())

	app.Get("/login", s.getLogin)
	app.Post("/login", s.postLogin)
	s.ackLinkRoutes(app) // acklink.go: one-tap acknowledge links, no session

	api := app.Group("/api/v1", s.requireBearer)
	s.historyAPIRoutes(api) // history.go: /alerts/history, /alerts/:id (with its timeline), /alerts/:id/comments
	api.Get("/alerts", s.apiListAlerts)
	api.Get("/alerts/:id", s.apiGetAlert)
	api.Post("/alerts/:id/ack", s.scopeAlertAction(AuditAcknowledge), s.apiAck)
	api.Post("/alerts/:id/resolve", s.scopeAlertAction(AuditResolve), s.apiResolve)
	api.Get("/residents", s.apiResidents)
	api.Get("/residents/:id/vitals", s.scopeAPIVitals, s.apiVitals)
	api.Get("/audit", s.apiAudit) // audit.go (D1)
	api.Use(s.apiNoRoute)

	web := app.Group("/", s.requireSession, s.familyFence, s.checkCSRF)
	web.Post("/logout", s.postLogout)
	web.Get("/", s.home)                    // scope.go (D1): redirect by role
	staffOnly := requireRole(staffRoles...) // scope.go (D1): family members never see the alert lists
	web.Get("/events", s.events)            // filtered per user in sse.go (frameFilter: staff their sites, family nothing)
	web.Get("/alerts", staffOnly, s.alertsPage)
	web.Get("/alerts/fragment", staffOnly, s.alertsFragment)
	// history.go: /alerts/history(.csv), /alerts/:id, /alerts/:id/comments
	s.historyRoutes(web)
	web.Get("/alarm/alerts/:id", staffOnly, s.alarmInfo) // pwa.go: the alarm's notification text
	web.Post("/alerts/:id/ack", s.scopeAlertAction(AuditAcknowledge), s.formAck)
	web.Post("/alerts/:id/resolve", s.scopeAlertAction(AuditResolve), s.formResolve)
	s.accountRoutes(web) // auth.go (D1): /account, /manager/audit
	s.contactRoutes(web) // contacts.go: /account/contacts, /admin/contacts/:username
	s.tokenRoutes(web)   // apitokens.go: /admin/tokens
	s.viewRoutes(web)    // views_common.go (D2): /board, /residents/:id (+checkin), /family, /manager, /admin
	s.managerRoutes(web) // views_manager.go: /manager/trends, /manager/devices, /manager/programme, /manager/handover
	s.onboardRoutes(web) // onboard.go: /admin/onboard; commands.go: /residents/:id/command
	return app
}

// securityHeaders sets CSP, nosniff, no framing and no caching of health
// data.
func (s *Server) securityHeaders(c *fiber.Ctx) error {
	c.Set("Content-Security-Policy", s.csp)
	c.Set("X-Content-Type-Options", "nosniff")
	c.Set("X-Frame-Options", "DENY")
	c.Set("Referrer-Policy", "no-referrer")
	err := c.Next()
	if len(c.Response().Header.Peek("Cache-Control")) == 0 {
		c.Set("Cache-Control", "no-store")
	}
	return err
}

func (s *Server) countRequests(c *fiber.Ctx) error {
	err := c.Next()
	code := c.Response().StatusCode()
	if err != nil {
		var fe *fiber.Error
		if errors.As(err, &fe) {
			code = fe.Code
		} else {
			code = fiber.StatusInternalServerError
		}
	}
	route := c.Route().Path
	s.mRequests.WithLabelValues(c.Method(), route, strconv.Itoa(code)).Inc()
	return err
}

// errorHandler answers JSON under /api and a small HTML page elsewhere.
func (s *Server) errorHandler(c *fiber.Ctx, err error) error {
	code := fiber.StatusInternalServerError
	msg := "internal error"
	var fe *fiber.Error
	if errors.As(err, &fe) {
		code, msg = fe.Code, fe.Message
		if code == fiber.StatusRequestEntityTooLarge {
			msg = fmt.Sprintf("request body is larger than %d bytes", s.cfg.BodyLimit)
		}
	} else {
		// (the page shows the catalogue's text for the status code)
		s.log.Error("dashboard request failed", "method", c.Method(), "path", c.Path(), "err", err)
	}
	if code == fiber.StatusForbidden || code == fiber.StatusNotFound {
		s.audit(c, AuditRefused, "path:"+truncate(c.Path(), 200), fmt.Sprintf("%s:%d", c.Method(), code))
	}
	if isAPI(c) {
		return c.Status(code).JSON(fiber.Map{"error": msg})
	}
	c.Status(code)
	sess, _ := c.Locals("session").(session)
	lang := langOf(c)
	// The page speaks the catalogue's words for the status; a validation
	// message (400) is shown below them, as it names the field.
	text := trIn(lang, fmt.Sprintf("err.code.%d", code))
	if text == fmt.Sprintf("err.code.%d", code) {
		text = trIn(lang, "err.code.other")
	}
	detail := ""
	if code == fiber.StatusBadRequest || code == fiber.StatusConflict {
		detail = msg
	}
	role := ""
	if u, ok := userFrom(c); ok {
		role = u.Role
	}
	return s.render(c, "error", page{Title: trIn(lang, "err.title"), CSRF: sess.csrf, Role: role, Data: map[string]any{"Code": code, "Message": text, "Detail": detail}})
}

func isAPI(c *fiber.Ctx) bool {
	p := c.Path()
	return len(p) >= 7 && p[:7] == "/api/v1"
}
