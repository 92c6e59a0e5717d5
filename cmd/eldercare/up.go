package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"

	"github.com/eldercare-iot/eldercare/alerting"
	"github.com/eldercare-iot/eldercare/dashboard"
	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/device/registry"
	firmwaresim "github.com/eldercare-iot/eldercare/firmware-sim"
	"github.com/eldercare-iot/eldercare/ingest"
	"github.com/eldercare-iot/eldercare/internal/broker"
	"github.com/eldercare-iot/eldercare/internal/cliconfig"
	"github.com/eldercare-iot/eldercare/internal/influxd"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
)

func newUpCmd() *cobra.Command {
	var cfg upConfig
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run every role in one process: embedded broker, SQLite and a child InfluxDB unless given URLs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := loadSettings(cmd)
			if err != nil {
				return err
			}
			return runUp(cmd.Context(), s, &cfg)
		},
	}
	cfg.bind(cmd.Flags())
	return cmd
}

// upConfig is the configuration of `eldercare up`: its own flags (the
// broker, InfluxDB, database and listener it runs for all roles, and the
// demo) and, in roles, every flag of the roles it runs (upRoles.bind).
type upConfig struct {
	Data, HTTP                                     string
	MQTT, MQTTListen, MQTTAuth                     string
	MQTTAllowAnonymous, MQTTStoreFsync             bool
	Root                                           string
	Influx, Influxd, InfluxListen, InfluxRPCListen string
	InfluxToken, InfluxDB, InfluxRP                string
	DB, Registry, APIToken                         string
	Demo                                           bool
	Recordings                                     string
	Speed                                          float64
	roles                                          upRoles
}

// bind registers up's flags on f, bound to c's fields, then the roles'.
func (c *upConfig) bind(f *pflag.FlagSet) {
	f.StringVar(&c.Data, "data", "./data", "data directory: SQLite file, child InfluxDB data, generated API token")
	f.StringVar(&c.HTTP, "http", "127.0.0.1:8080", "dashboard, API, /healthz (liveness), /readyz (503 while any role, broker connection, the database or InfluxDB is not ready) and /metrics listen address")
	f.StringVar(&c.MQTT, "mqtt", "", "external MQTT broker URL (tcp://host:1883); empty runs the embedded broker")
	f.StringVar(&c.MQTTListen, "mqtt-listen", "127.0.0.1:1883", "listen address of the embedded broker (when --mqtt is empty)")
	f.StringVar(&c.MQTTAuth, "mqtt-auth", "", "embedded broker authentication: on (the default without --demo: devices need registry credentials), registry (the default with --demo: on when the registry has device credentials, else open) or off (open)")
	f.BoolVar(&c.MQTTAllowAnonymous, "mqtt-allow-anonymous", false, "allow an open (unauthenticated) embedded broker on a non-loopback --mqtt-listen address; without it such a start is refused")
	f.BoolVar(&c.MQTTStoreFsync, "mqtt-store-fsync", true, "fsync each write of the embedded broker's store (DATA/broker/store.db): survives a power loss; false survives a crash of the process only, and writes faster")
	f.StringVar(&c.Root, "root", device.DefaultRoot, "MQTT topic root")
	f.StringVar(&c.Influx, "influx", "", "external InfluxDB URL (http://host:8086); empty starts InfluxDB 1.8 as a child process")
	f.StringVar(&c.Influxd, "influxd", "", "influxd binary for the child InfluxDB (default: $ELDERCARE_INFLUXD, PATH, $GOPATH/bin)")
	f.StringVar(&c.InfluxListen, "influx-listen", "127.0.0.1:8086", "HTTP listen address of the child InfluxDB (when --influx is empty); authentication is on, accounts in DATA/influxdb-credentials")
	f.StringVar(&c.InfluxRPCListen, "influx-rpc-listen", "127.0.0.1:8088", "RPC (backup and restore) listen address of the child InfluxDB (when --influx is empty); 'eldercare backup' reads it from DATA/influxdb/influxd.conf")
	f.StringVar(&c.InfluxToken, "influx-token", "", "InfluxDB token or user:password (secret)")
	f.StringVar(&c.InfluxDB, "influx-db", "eldercare", "InfluxDB database")
	f.StringVar(&c.InfluxRP, "influx-rp", "autogen", "InfluxDB retention policy")
	f.StringVar(&c.DB, "db", "", "alert store and registry database: sqlite:PATH or postgres://...; empty uses DATA/eldercare.db")
	f.StringVar(&c.Registry, "registry", "", "registry YAML file (sites, beds, residents, devices, bindings) to import at start")
	f.StringVar(&c.APIToken, "api-token", "", "bearer token of /api/v1 for machine clients (secret); empty reads or generates DATA/api-token")
	f.BoolVar(&c.Demo, "demo", false, "also run the demo care station: 6 beds replaying recordings, and create demo dashboard accounts (one per role) into DATA/demo-accounts.txt when there are none")
	f.StringVar(&c.Recordings, "recordings", "", "recordings for the demo (default $ELDERCARE_REALDATA, else ../shared/data beside the repository)")
	f.Float64Var(&c.Speed, "speed", 1, "demo replay speed, 1 = real time (0.1 to 1000)")
	c.roles.bind(f)
}

// Validate reports the bad values of up's own flags that can be found
// before anything starts: --speed out of range with --demo, --mqtt-auth
// not on, registry or off for the embedded broker. The roles' flags are
// checked by their Validate once up has set the fields it owns.
func (c *upConfig) Validate() error {
	var errs []error
	if c.Demo {
		if err := firmwaresim.CheckSpeed(c.Speed); err != nil {
			errs = append(errs, fmt.Errorf("--speed: %w", err))
		}
	}
	if c.MQTT == "" && !slices.Contains([]string{"", "on", "registry", "off"}, c.MQTTAuth) {
		errs = append(errs, fmt.Errorf("--mqtt-auth %q: want registry, on or off", c.MQTTAuth))
	}
	return errors.Join(errs...)
}

// upOwnedFlags are the flags of the role commands that up does not take
// from the roles, because up sets them itself for all of its roles: one
// broker (--mqtt, --root), one InfluxDB (--influx, --influx-token,
// --influx-db, --influx-rp), one database (--db, --registry), one listener
// (--http) and one API token (--api-token, generated into DATA/api-token
// when empty), each defined by up with up's meaning; the MQTT client ids
// are upClientIDs (--client-id); --gc-percent is the ingest process's
// GOGC, which up leaves alone. Every other flag of ingest, alerting and
// dashboard is a flag of up too (docs/configuration.md).
var upOwnedFlags = []string{"mqtt", "root", "client-id", "influx", "influx-token", "influx-db", "influx-rp", "db", "registry", "http", "api-token", "gc-percent"}

// upRoles are the configurations of the roles up runs, bound to up's
// flags by each role's own bind.
type upRoles struct {
	ingest    ingestConfig
	alerting  alertingConfig
	dashboard dashboardConfig
}

// bind adds every role flag except upOwnedFlags to f, with up's defaults
// where they differ from the role command's.
func (r *upRoles) bind(f *pflag.FlagSet) {
	for _, bind := range []func(*pflag.FlagSet){r.ingest.bind, r.alerting.bind, r.dashboard.bind} {
		role := pflag.NewFlagSet("role", pflag.ContinueOnError)
		bind(role)
		cliconfig.Adopt(f, role, upOwnedFlags)
	}
	// up is one replica of ingest: leaving the shared subscription on stop
	// would make the broker drop its readings while it restarts.
	cliconfig.SetDefault(f, "leave-group-on-stop", "false")
}

// upInfra is what up supplies to every role in place of upOwnedFlags.
type upInfra struct {
	mqttURL, root                           string
	influxURL, ingestInfluxURL, influxToken string
	influxDB, influxRP, httpAddr, apiToken  string
}

// set fills the up-owned fields of every role's configuration from in.
func (r *upRoles) set(in upInfra) {
	r.ingest.MQTT, r.ingest.Root, r.ingest.ClientID = in.mqttURL, in.root, upClientIDs[0]
	r.ingest.Influx, r.ingest.InfluxToken, r.ingest.InfluxDB, r.ingest.InfluxRP = in.ingestInfluxURL, in.influxToken, in.influxDB, in.influxRP
	r.alerting.MQTT, r.alerting.Root, r.alerting.ClientID = in.mqttURL, in.root, upClientIDs[1]
	d := &r.dashboard
	d.HTTP, d.APIToken, d.MQTT, d.Root, d.ClientID = in.httpAddr, in.apiToken, in.mqttURL, in.root, upClientIDs[2]
	d.Influx, d.InfluxToken, d.InfluxDB, d.InfluxRP = in.influxURL, in.influxToken, in.influxDB, in.influxRP
}

func runUp(ctx context.Context, s *settings, cfg *upConfig) error {
	log, err := s.logger()
	if err != nil {
		return err
	}
	if path := os.Getenv(cpuProfileEnv); path != "" {
		stop, err := startCPUProfile(path)
		if err != nil {
			return err
		}
		defer stop()
	}
	u := &upStack{cfg: cfg, log: log, dataDir: cfg.Data, reg: newMetrics()}
	defer u.close()
	steps := []func(context.Context) error{u.prepare, u.startInflux, u.openStore, u.startBroker}
	for _, step := range steps {
		if err := step(ctx); err != nil {
			return err
		}
	}
	svc, err := u.newRoles(ctx, &cfg.roles)
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return u.cache.Run(gctx) })
	if u.child != nil {
		g.Go(func() error { return u.child.Supervise(gctx, log) })
	}
	g.Go(func() error { return svc.ingest.Run(gctx) })
	g.Go(func() error { return svc.alerting.Run(gctx) })
	g.Go(func() error { return svc.dashboard.Serve(gctx, u.httpLn) })
	if cfg.Demo {
		u.runDemo(gctx, g)
	}
	u.printBanner(svc.loginHelp)
	err = g.Wait()
	if errors.Is(err, context.Canceled) || ctx.Err() != nil {
		log.Info("stopped")
		return nil
	}
	return err
}

// upServiceClientIDs are the MQTT sessions of up's roles: upClientIDs and
// alerting's second session for readings and status.
func upServiceClientIDs() []string {
	return append(slices.Clone(upClientIDs), alerting.StatusTelemetryClientID(upClientIDs[1]))
}

// upServices are the roles up runs.
type upServices struct {
	ingest    *ingest.Service
	alerting  *alerting.Service
	dashboard *dashboard.Server
	loginHelp string
}

// newRoles builds ingest, alerting and dashboard with their commands'
// constructors, on up's broker, InfluxDB, database and listener, and
// registers the install's readiness.
func (u *upStack) newRoles(ctx context.Context, roles *upRoles) (*upServices, error) {
	token, tokenFile, err := apiToken(u.cfg.APIToken, u.dataDir)
	if err != nil {
		return nil, err
	}
	u.tokenFile = tokenFile
	roles.set(upInfra{mqttURL: u.mqttURL, root: u.cfg.Root, influxURL: u.influxURL, ingestInfluxURL: u.ingestInfluxURL,
		influxToken: u.influxToken, influxDB: u.cfg.InfluxDB, influxRP: u.cfg.InfluxRP,
		httpAddr: u.cfg.HTTP, apiToken: token})
	if err := errors.Join(roles.ingest.Validate(), roles.alerting.Validate(), roles.dashboard.Validate()); err != nil {
		return nil, err
	}
	deps := roleDeps{DB: u.db, Store: u.store, Cache: u.cache, Reg: u.reg, Log: u.log}
	svc := &upServices{}
	if svc.ingest, _, err = newIngest(ctx, &roles.ingest, deps); err != nil {
		return nil, err
	}
	mgr, err := alerting.OpenManager(ctx, u.db, u.log.With("role", "alerting"))
	if err != nil {
		return nil, err
	}
	u.reg.MustRegister(mqttconn.Collector(upServiceClientIDs()...))
	accounts, err := dashboard.OpenAccounts(ctx, u.db, nil)
	if err != nil {
		return nil, err
	}
	if svc.loginHelp, err = upAccounts(ctx, accounts, u.cfg.Demo, u.dataDir, u.dsn); err != nil {
		return nil, err
	}
	if svc.alerting, err = newAlerting(ctx, &roles.alerting, mgr, deps.with(u.log.With("role", "alerting"))); err != nil {
		return nil, err
	}
	ready := u.ready(svc)
	if err := registerReady(u.reg, ready); err != nil {
		return nil, err
	}
	svc.dashboard, err = newDashboard(&roles.dashboard, mgr, accounts, nil, dashboard.Deps{Ready: ready, Commands: svc.alerting},
		deps.with(u.log.With("role", "dashboard")))
	return svc, err
}

// ready is the readiness of the whole install (/readyz and eldercare_ready
// on --http): every role's, the broker connections, the database and
// InfluxDB. svc.dashboard is read at each check: it is built after.
func (u *upStack) ready(svc *upServices) func(context.Context) error {
	return allReady(
		func(context.Context) error {
			if !svc.ingest.Ready() {
				return errors.New("ingest: not subscribed yet")
			}
			return nil
		},
		func(context.Context) error { return svc.alerting.Ready() },
		func(context.Context) error { return svc.dashboard.Feed().Healthy() },
		mqttReady(upServiceClientIDs()...), dbReady(u.db), influxReady(u.influxURL))
}

// demoAccounts are the accounts "up --demo" creates, one per role, on the
// demo care station (firmware-sim/demo/registry.yaml).
var demoAccounts = []dashboard.User{
	{Username: "admin", Name: "Demo Admin", Role: dashboard.RoleAdmin, Lang: "en"},
	{Username: "manager", Name: "Manager Liu", Role: dashboard.RoleManager, Lang: "en", Sites: []string{"demo-station", "demo-home-li"}},
	{Username: "lead", Name: "Nurse lead Chen", Role: dashboard.RoleNurseLead, Lang: "zh-CN", Sites: []string{"demo-station", "demo-home-li"}},
	{Username: "carer", Name: "Caregiver Zhang", Role: dashboard.RoleCaregiver, Lang: "en", Sites: []string{"demo-station", "demo-home-li"}},
	{Username: "family", Name: "Wang Mei", Role: dashboard.RoleFamily, Lang: "zh-CN", Residents: []string{"res-001"}},
}

// demoAccountsFile is where "up --demo" writes the demo passwords.
const demoAccountsFile = "demo-accounts.txt"

// upAccounts makes sure somebody can log in and returns the hint printed
// next to the dashboard address. With demo and no account yet it creates
// demoAccounts with generated passwords, writes them to
// DATA/demo-accounts.txt (mode 0600) and prints them once. Without accounts
// and without demo it names the command that creates the first admin.
func upAccounts(ctx context.Context, acc *dashboard.Accounts, demo bool, dataDir, dsn string) (string, error) {
	n, err := acc.Count(ctx)
	if err != nil {
		return "", err
	}
	file := filepath.Join(dataDir, demoAccountsFile)
	switch {
	case n > 0 && demo:
		if _, err := os.Stat(file); err == nil {
			return "(demo accounts and passwords in " + file + ")", nil
		}
		return "(log in with your account)", nil
	case n > 0:
		return "(log in with your account)", nil
	case !demo:
		return fmt.Sprintf("(no accounts yet: create the first admin with `eldercare users add --db %s --username admin --role admin`)", redactDSN(dsn)), nil
	}
	var b strings.Builder
	b.WriteString("# eldercare demo dashboard accounts, created by `eldercare up --demo`.\n# Change them on /account or with `eldercare users passwd`.\n# username\trole\tpassword\n")
	for _, u := range demoAccounts {
		pw := dashboard.GeneratePassword()
		if _, err := acc.Add(ctx, u, pw); err != nil {
			return "", fmt.Errorf("create demo account %s: %w", u.Username, err)
		}
		fmt.Fprintf(&b, "%s\t%s\t%s\n", u.Username, u.Role, pw)
	}
	if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
		return "", fmt.Errorf("write demo accounts: %w", err)
	}
	fmt.Printf("\nDemo dashboard accounts (shown once; kept in %s, mode 0600):\n%s", file, b.String())
	return "(demo accounts and passwords in " + file + ")", nil
}

// apiToken returns the configured token, or the one kept in
// DATA/api-token, or a new random one that it writes there (mode 0600).
func apiToken(given, dataDir string) (token, source string, err error) {
	if given != "" {
		return given, "--api-token / ELDERCARE_API_TOKEN", nil
	}
	file := filepath.Join(dataDir, "api-token")
	if b, err := os.ReadFile(file); err == nil && len(strings.TrimSpace(string(b))) >= 16 {
		return strings.TrimSpace(string(b)), file, nil
	}
	var raw [24]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", "", err
	}
	token = hex.EncodeToString(raw[:])
	if err := os.WriteFile(file, []byte(token+"\n"), 0o600); err != nil {
		return "", "", fmt.Errorf("write API token: %w", err)
	}
	return token, file, nil
}

func redactDSN(dsn string) string {
	if i := strings.Index(dsn, "@"); i > 0 {
		if j := strings.Index(dsn, "://"); j > 0 && j < i {
			return dsn[:j+3] + "***" + dsn[i:]
		}
	}
	return dsn
}

// upClientIDs are the MQTT client ids of the services "up" runs: ingest,
// alerting, dashboard. On the embedded broker with authentication only the
// internal account may use them.
var upClientIDs = []string{"eldercare-up-ingest", "eldercare-up-alerting", "eldercare-up-dashboard"}

// internalMQTTFile keeps the password of the embedded broker's internal
// account (user eldercare-internal), mode 0600, so that the role commands
// and tools on this machine can log in as the platform (docs/security.md).
const internalMQTTFile = "mqtt-internal-password"

// internalMQTTPassword reads DATA/mqtt-internal-password, or generates it
// (48 hex digits) and writes it with mode 0600.
func internalMQTTPassword(dataDir string) (string, error) {
	file := filepath.Join(dataDir, internalMQTTFile)
	if b, err := os.ReadFile(file); err == nil && len(strings.TrimSpace(string(b))) >= 16 {
		return strings.TrimSpace(string(b)), nil
	}
	pw := make([]byte, 24)
	if _, err := rand.Read(pw); err != nil {
		return "", fmt.Errorf("internal mqtt password: %w", err)
	}
	p := hex.EncodeToString(pw)
	if err := os.WriteFile(file, []byte(p+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write internal mqtt password: %w", err)
	}
	return p, nil
}

// checkOpenBroker refuses an open broker on an address other machines can
// reach, unless allowed.
func checkOpenBroker(listen string, allowed bool) error {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return flagErr("--mqtt-listen", listen, err)
	}
	if ip := net.ParseIP(host); host == "localhost" || ip != nil && ip.IsLoopback() || allowed {
		return nil
	}
	return fmt.Errorf("--mqtt-listen %s: the embedded broker would be open (no authentication) on an address other machines can reach; "+
		"give gateways credentials in the registry and use --mqtt-auth on, listen on 127.0.0.1, or pass --mqtt-allow-anonymous", listen)
}

// upBrokerAuth decides the embedded broker's authentication from
// --mqtt-auth: "registry" turns it on when the registry holds device
// credentials (so the demo's simulated devices, which have none, keep
// working), "on" always, "off" never. With authentication the platform's
// services use an internal account whose password is generated per run.
func upBrokerAuth(ctx context.Context, mode, root string, store *registry.Store) (*broker.Auth, error) {
	switch mode {
	case "off":
		return nil, nil
	case "registry":
		has, err := store.HasCredentials(ctx)
		if err != nil {
			return nil, fmt.Errorf("--mqtt-auth registry: %w", err)
		}
		if !has {
			return nil, nil
		}
	case "on":
	default:
		return nil, fmt.Errorf("--mqtt-auth %q: want registry, on or off", mode)
	}
	pw := make([]byte, 24)
	if _, err := rand.Read(pw); err != nil {
		return nil, fmt.Errorf("internal mqtt password: %w", err)
	}
	return &broker.Auth{
		Root:             root,
		InternalUser:     "eldercare-internal",
		InternalPassword: hex.EncodeToString(pw),
		Lookup: func(ctx context.Context, username string) (broker.Account, error) {
			acc, err := store.Account(ctx, username)
			if errors.Is(err, registry.ErrNotFound) {
				return broker.Account{}, fmt.Errorf("%w: %w", broker.ErrUnknownUser, err)
			}
			if err != nil {
				return broker.Account{}, err
			}
			return brokerAccount(acc), nil
		},
		// A "$7$" credential becomes argon2id at its next CONNECT.
		Rehash: store.SetCredentialHash,
	}, nil
}

// influxChild is the child InfluxDB of "up". When it dies, Supervise starts
// it again on the same ports, so ingest, which holds its acknowledgements
// while writes fail, catches up without a restart.
type influxChild struct {
	opt influxd.Options
	mu  sync.Mutex
	srv *influxd.Server
}

func startInfluxChild(ctx context.Context, opt influxd.Options) (*influxChild, error) {
	srv, err := influxd.Start(ctx, opt)
	if err != nil {
		return nil, err
	}
	// Keep the ports for restarts.
	opt.HTTPAddr = strings.TrimPrefix(srv.URL(), "http://")
	opt.BindAddr = srv.RPCAddr()
	return &influxChild{opt: opt, srv: srv}, nil
}

func (c *influxChild) URL() string { return "http://" + c.opt.HTTPAddr }

func (c *influxChild) current() *influxd.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.srv
}

// Stop stops the current process.
func (c *influxChild) Stop() error { return c.current().Stop() }

// Supervise restarts the child whenever it exits before ctx ends, waiting
// 1 s, then up to 30 s, between attempts.
func (c *influxChild) Supervise(ctx context.Context, log *slog.Logger) error {
	wait := time.Second
	for {
		srv := c.current()
		select {
		case <-ctx.Done():
			return nil
		case <-srv.Done():
		}
		if ctx.Err() != nil {
			return nil
		}
		log.Error("InfluxDB child exited; restarting it on the same ports (ingest holds its acknowledgements meanwhile)",
			"err", srv.Wait(), "log_tail", srv.LogTail())
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
			next, err := influxd.Start(ctx, c.opt)
			if err == nil {
				c.mu.Lock()
				c.srv = next
				c.mu.Unlock()
				log.Info("InfluxDB child restarted", "url", c.URL())
				wait = time.Second
				break
			}
			log.Error("restart InfluxDB child", "err", err)
			wait = min(2*wait, 30*time.Second)
		}
	}
}
