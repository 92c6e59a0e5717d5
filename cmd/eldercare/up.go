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
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"

	"github.com/eldercare-iot/eldercare/alerting"
	"github.com/eldercare-iot/eldercare/dashboard"
	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/device/registry"
	firmwaresim "github.com/eldercare-iot/eldercare/firmware-sim"
	"github.com/eldercare-iot/eldercare/internal/backup"
	"github.com/eldercare-iot/eldercare/internal/broker"
	"github.com/eldercare-iot/eldercare/internal/cliconfig"
	"github.com/eldercare-iot/eldercare/internal/influxd"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
	"github.com/eldercare-iot/eldercare/internal/realdata"
)

func newUpCmd() *cobra.Command {
	var roles upRoles
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run every role in one process: embedded broker, SQLite and a child InfluxDB unless given URLs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := loadSettings(cmd)
			if err != nil {
				return err
			}
			return runUp(cmd.Context(), s, &roles)
		},
	}
	f := cmd.Flags()
	f.String("data", "./data", "data directory: SQLite file, child InfluxDB data, generated API token")
	f.String("http", "127.0.0.1:8080", "dashboard, API, /healthz (liveness), /readyz (503 while any role, broker connection, the database or InfluxDB is not ready) and /metrics listen address")
	f.String("mqtt", "", "external MQTT broker URL (tcp://host:1883); empty runs the embedded broker")
	f.String("mqtt-listen", "127.0.0.1:1883", "listen address of the embedded broker (when --mqtt is empty)")
	f.String("mqtt-auth", "", "embedded broker authentication: on (the default without --demo: devices need registry credentials), registry (the default with --demo: on when the registry has device credentials, else open) or off (open)")
	f.Bool("mqtt-allow-anonymous", false, "allow an open (unauthenticated) embedded broker on a non-loopback --mqtt-listen address; without it such a start is refused")
	f.Bool("mqtt-store-fsync", true, "fsync each write of the embedded broker's store (DATA/broker/store.db): survives a power loss; false survives a crash of the process only, and writes faster")
	f.String("root", device.DefaultRoot, "MQTT topic root")
	f.String("influx", "", "external InfluxDB URL (http://host:8086); empty starts InfluxDB 1.8 as a child process")
	f.String("influxd", "", "influxd binary for the child InfluxDB (default: $ELDERCARE_INFLUXD, PATH, $GOPATH/bin)")
	f.String("influx-listen", "127.0.0.1:8086", "HTTP listen address of the child InfluxDB (when --influx is empty); authentication is on, accounts in DATA/influxdb-credentials")
	f.String("influx-rpc-listen", "127.0.0.1:8088", "RPC (backup and restore) listen address of the child InfluxDB (when --influx is empty); 'eldercare backup' reads it from DATA/influxdb/influxd.conf")
	f.String("influx-token", "", "InfluxDB token or user:password (secret)")
	f.String("influx-db", "eldercare", "InfluxDB database")
	f.String("influx-rp", "autogen", "InfluxDB retention policy")
	f.String("db", "", "alert store and registry database: sqlite:PATH or postgres://...; empty uses DATA/eldercare.db")
	f.String("registry", "", "registry YAML file (sites, beds, residents, devices, bindings) to import at start")
	f.String("api-token", "", "bearer token of /api/v1 for machine clients (secret); empty reads or generates DATA/api-token")
	f.Bool("demo", false, "also run the demo care station: 6 beds replaying recordings, and create demo dashboard accounts (one per role) into DATA/demo-accounts.txt when there are none")
	f.String("recordings", "", "recordings for the demo (default $ELDERCARE_REALDATA, else ../shared/data beside the repository)")
	f.Float64("speed", 1, "demo replay speed, 1 = real time (0.1 to 1000)")
	roles.bind(f)
	return cmd
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

func runUp(ctx context.Context, s *settings, roles *upRoles) error {
	log, err := s.logger()
	if err != nil {
		return err
	}
	dataDir := s.String("data")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("--data %s: %w", dataDir, err)
	}
	unlock, err := backup.LockDataDir(dataDir) // one process per data directory; restore refuses a running one
	if err != nil {
		return fmt.Errorf("--data: %w", err)
	}
	defer unlock()
	httpAddr := s.String("http")
	httpLn, err := listen("--http", httpAddr)
	if err != nil {
		return err
	}
	defer httpLn.Close()
	if s.String("mqtt") == "" {
		// The embedded broker starts after the registry; find a clash now,
		// before InfluxDB has started.
		ln, err := listen("--mqtt-listen", s.String("mqtt-listen"))
		if err != nil {
			return err
		}
		ln.Close()
	}
	if s.Bool("demo") {
		if err := firmwaresim.CheckSpeed(s.Float("speed")); err != nil {
			return fmt.Errorf("--speed: %w", err)
		}
	}
	reg := newMetrics()

	// InfluxDB.
	var child *influxChild
	influxURL := s.String("influx")
	influxToken, ingestInfluxURL := s.String("influx-token"), influxURL
	if influxURL == "" {
		bin := s.String("influxd")
		if bin == "" {
			if bin, err = influxd.Find(); err != nil {
				return err
			}
		}
		log.Info("starting InfluxDB 1.8 as a child process", "bin", bin, "data", filepath.Join(dataDir, "influxdb"))
		creds, err := influxd.LoadOrCreateCredentials(filepath.Join(dataDir, influxCredentialsFile), s.String("influx-db"))
		if err != nil {
			return err
		}
		child, err = startInfluxChild(ctx, influxd.Options{Bin: bin, DataDir: filepath.Join(dataDir, "influxdb"), Logger: log,
			HTTPAddr: s.String("influx-listen"), BindAddr: s.String("influx-rpc-listen"), Auth: &creds})
		if err != nil {
			return fmt.Errorf("start InfluxDB (--influx-listen %s, --influx-rpc-listen %s): %w", s.String("influx-listen"), s.String("influx-rpc-listen"), err)
		}
		defer child.Stop()
		influxURL = child.URL()
		influxToken, ingestInfluxURL = managedInfluxAccess(influxURL, creds)
	}

	// Store and registry.
	dsn := s.String("db")
	if dsn == "" {
		dsn = "sqlite:" + filepath.Join(dataDir, "eldercare.db")
	}
	var docs [][]byte
	if s.Bool("demo") {
		docs = append(docs, firmwaresim.DemoRegistryYAML)
	}
	db, store, cache, err := openRegistry(ctx, dsn, s.String("registry"), docs...)
	if err != nil {
		return err
	}
	defer db.Close()

	// Broker, after the registry: its credentials decide whether it
	// authenticates (docs/security.md).
	mqttURL := s.String("mqtt")
	publicMQTT := mqttURL
	var brk *broker.Broker
	if mqttURL == "" {
		mode := s.String("mqtt-auth")
		if mode == "" {
			mode = "on"
			if s.Bool("demo") {
				mode = "registry"
			}
		}
		auth, err := upBrokerAuth(ctx, mode, s.String("root"), store)
		if err != nil {
			return err
		}
		if auth == nil {
			if err := checkOpenBroker(s.String("mqtt-listen"), s.Bool("mqtt-allow-anonymous")); err != nil {
				return err
			}
			log.Warn("the embedded broker is open: any client may connect, publish and subscribe (--mqtt-auth)", "listen", s.String("mqtt-listen"))
		} else {
			if auth.InternalPassword, err = internalMQTTPassword(dataDir); err != nil {
				return err
			}
			// alerting also holds a second session for readings and status.
			auth.ServiceClientIDs = append(slices.Clone(upClientIDs), alerting.StatusTelemetryClientID(upClientIDs[1]))
		}
		storeDir := filepath.Join(dataDir, "broker")
		if err := os.MkdirAll(storeDir, 0o700); err != nil {
			return fmt.Errorf("--data %s: %w", dataDir, err)
		}
		brk, err = broker.Start(broker.Config{Addr: s.String("mqtt-listen"), Logger: log, Auth: auth, Registerer: reg,
			Root: s.String("root"), StorePath: filepath.Join(storeDir, "store.db"), StoreNoSync: !s.Bool("mqtt-store-fsync")})
		if err != nil {
			if errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "listen") {
				return flagErr("--mqtt-listen", s.String("mqtt-listen"), err)
			}
			return err
		}
		defer brk.Close()
		mqttURL, publicMQTT = brk.URL(), brk.URL()
		if auth != nil {
			// The platform's own services (and the in-process demo) log in
			// with a credential generated for this run, never printed.
			mqttURL = "tcp://" + auth.InternalUser + ":" + auth.InternalPassword + "@" + strings.TrimPrefix(brk.URL(), "tcp://")
			publicMQTT += " with authentication and topic ACL"
		}
	}

	token, tokenFile, err := apiToken(s.String("api-token"), dataDir)
	if err != nil {
		return err
	}

	root := s.String("root")
	roles.set(upInfra{mqttURL: mqttURL, root: root, influxURL: influxURL, ingestInfluxURL: ingestInfluxURL, influxToken: influxToken,
		influxDB: s.String("influx-db"), influxRP: s.String("influx-rp"), httpAddr: httpAddr, apiToken: token})
	if err := errors.Join(roles.ingest.Validate(), roles.alerting.Validate(), roles.dashboard.Validate()); err != nil {
		return err
	}
	deps := roleDeps{DB: db, Store: store, Cache: cache, Reg: reg, Log: log}
	ing, _, err := newIngest(ctx, &roles.ingest, deps)
	if err != nil {
		return err
	}
	mgr, err := alerting.OpenManager(ctx, db, log.With("role", "alerting"))
	if err != nil {
		return err
	}
	clientIDs := append(slices.Clone(upClientIDs), alerting.StatusTelemetryClientID(upClientIDs[1]))
	reg.MustRegister(mqttconn.Collector(clientIDs...))
	accounts, err := dashboard.OpenAccounts(ctx, db, nil)
	if err != nil {
		return err
	}
	loginHelp, err := upAccounts(ctx, accounts, s.Bool("demo"), dataDir, dsn)
	if err != nil {
		return err
	}
	alr, err := newAlerting(ctx, &roles.alerting, mgr, deps.with(log.With("role", "alerting")))
	if err != nil {
		return err
	}
	// Readiness of the whole install (/readyz and eldercare_ready on
	// --http): every role's, the broker connections, the database and
	// InfluxDB.
	var dash *dashboard.Server
	ready := allReady(
		func(context.Context) error {
			if !ing.Ready() {
				return errors.New("ingest: not subscribed yet")
			}
			return nil
		},
		func(context.Context) error { return alr.Ready() },
		func(context.Context) error { return dash.Feed().Healthy() },
		mqttReady(clientIDs...), dbReady(db), influxReady(influxURL))
	if err := registerReady(reg, ready); err != nil {
		return err
	}
	dash, err = newDashboard(&roles.dashboard, mgr, accounts, dashboard.Deps{Ready: ready, Commands: alr}, deps.with(log.With("role", "dashboard")))
	if err != nil {
		return err
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return cache.Run(gctx) })
	if child != nil {
		g.Go(func() error { return child.Supervise(gctx, log) })
	}
	g.Go(func() error { return ing.Run(gctx) })
	g.Go(func() error { return alr.Run(gctx) })
	g.Go(func() error { return dash.Serve(gctx, httpLn) })
	if s.Bool("demo") {
		rec := s.String("recordings")
		if rec == "" {
			rec, _ = realdata.Find()
		}
		g.Go(func() error {
			return firmwaresim.RunDemo(gctx, firmwaresim.DemoConfig{
				MQTTURL: mqttURL, Root: root, Recordings: rec, Speed: s.Float("speed"), Logger: log.With("role", "sim"),
				HomeBehindGateway: true, // the demo home runs behind its gateway (demohome.go)
			})
		})
		g.Go(func() error {
			return runDemoHome(gctx, demoHomeConfig{MQTTURL: mqttURL, Root: root, ClientID: demoHomeGateway, SpoolDir: filepath.Join(dataDir, "demo-home-gateway"),
				Speed: s.Float("speed"), Store: store, Reg: reg, Log: log.With("role", "demo-home")})
		})
	}

	host := httpAddr
	if h, p, err := net.SplitHostPort(httpAddr); err == nil && (h == "" || h == "0.0.0.0" || h == "::") {
		host = net.JoinHostPort("127.0.0.1", p)
	}
	broker := publicMQTT + " (external)"
	if brk != nil {
		broker = publicMQTT + " (embedded broker)"
	}
	fmt.Printf("\neldercare is up\n  dashboard:  http://%s/login   %s\n  API:        http://%s/api/v1 (Authorization: Bearer; token in %s)\n  MQTT:       %s\n  InfluxDB:   %s\n  database:   %s\nCtrl-C stops everything.\n\n",
		host, loginHelp, host, tokenFile, broker, influxURL, redactDSN(dsn))

	err = g.Wait()
	if errors.Is(err, context.Canceled) || ctx.Err() != nil {
		log.Info("stopped")
		return nil
	}
	return err
}

// demoAccounts are the accounts "up --demo" creates, one per role, on the
// demo care station (firmware-sim/demo/registry.yaml).
var demoAccounts = []dashboard.User{
	{Username: "admin", Name: "Demo Admin", Role: dashboard.RoleAdmin, Lang: "en"},
	{Username: "manager", Name: "Manager Liu", Role: dashboard.RoleManager, Lang: "en", Sites: []string{"demo-station"}},
	{Username: "lead", Name: "Nurse lead Chen", Role: dashboard.RoleNurseLead, Lang: "zh-CN", Sites: []string{"demo-station"}},
	{Username: "carer", Name: "Caregiver Zhang", Role: dashboard.RoleCaregiver, Lang: "en", Sites: []string{"demo-station"}},
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
