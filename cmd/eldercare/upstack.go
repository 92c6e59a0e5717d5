package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/eldercare-iot/eldercare/device/registry"
	firmwaresim "github.com/eldercare-iot/eldercare/firmware-sim"
	"github.com/eldercare-iot/eldercare/internal/backup"
	"github.com/eldercare-iot/eldercare/internal/broker"
	"github.com/eldercare-iot/eldercare/internal/influxd"
	"github.com/eldercare-iot/eldercare/internal/realdata"
	"github.com/eldercare-iot/eldercare/internal/sqldb"
)

// upStack is what up opens for all of its roles, in this order: the data
// directory's lock and the listener (prepare), InfluxDB (startInflux), the
// database and registry (openStore), the broker (startBroker). close
// releases them in reverse.
type upStack struct {
	cfg     *upConfig
	log     *slog.Logger
	dataDir string
	reg     *prometheus.Registry
	closers []func()

	httpLn                                  net.Listener
	child                                   *influxChild
	influxURL, influxToken, ingestInfluxURL string
	dsn                                     string
	db                                      *sqldb.DB
	store                                   *registry.Store
	cache                                   *registry.Cache
	brk                                     *broker.Broker
	mqttURL, publicMQTT                     string
	tokenFile                               string
}

func (u *upStack) close() {
	for i := len(u.closers) - 1; i >= 0; i-- {
		u.closers[i]()
	}
}

func (u *upStack) onClose(f func()) { u.closers = append(u.closers, f) }

// prepare checks up's flags, locks the data directory, listens on --http
// and checks that --mqtt-listen is free, before InfluxDB starts.
func (u *upStack) prepare(context.Context) error {
	if err := u.cfg.Validate(); err != nil {
		return err
	}
	if err := os.MkdirAll(u.dataDir, 0o700); err != nil {
		return fmt.Errorf("--data %s: %w", u.dataDir, err)
	}
	unlock, err := backup.LockDataDir(u.dataDir) // one process per data directory; restore refuses a running one
	if err != nil {
		return fmt.Errorf("--data: %w", err)
	}
	u.onClose(unlock)
	if u.httpLn, err = listen("--http", u.cfg.HTTP); err != nil {
		return err
	}
	u.onClose(func() { u.httpLn.Close() })
	if u.cfg.MQTT == "" {
		// The embedded broker starts after the registry; find a clash now,
		// before InfluxDB has started.
		ln, err := listen("--mqtt-listen", u.cfg.MQTTListen)
		if err != nil {
			return err
		}
		ln.Close()
	}
	return nil
}

// startInflux uses --influx, or starts the child InfluxDB with generated
// credentials when it is empty.
func (u *upStack) startInflux(ctx context.Context) error {
	c := u.cfg
	u.influxURL = c.Influx
	u.influxToken, u.ingestInfluxURL = c.InfluxToken, u.influxURL
	if u.influxURL != "" {
		return nil
	}
	bin := c.Influxd
	if bin == "" {
		var err error
		if bin, err = influxd.Find(); err != nil {
			return err
		}
	}
	u.log.Info("starting InfluxDB 1.8 as a child process", "bin", bin, "data", filepath.Join(u.dataDir, "influxdb"))
	creds, err := influxd.LoadOrCreateCredentials(filepath.Join(u.dataDir, influxCredentialsFile), c.InfluxDB)
	if err != nil {
		return err
	}
	u.child, err = startInfluxChild(ctx, influxd.Options{Bin: bin, DataDir: filepath.Join(u.dataDir, "influxdb"), Logger: u.log,
		HTTPAddr: c.InfluxListen, BindAddr: c.InfluxRPCListen, Auth: &creds})
	if err != nil {
		return fmt.Errorf("start InfluxDB (--influx-listen %s, --influx-rpc-listen %s): %w", c.InfluxListen, c.InfluxRPCListen, err)
	}
	u.onClose(func() { u.child.Stop() })
	u.influxURL = u.child.URL()
	u.influxToken, u.ingestInfluxURL = managedInfluxAccess(u.influxURL, creds)
	return nil
}

// openStore opens --db (default DATA/eldercare.db) and the registry in it,
// with the demo station's registry under --demo.
func (u *upStack) openStore(ctx context.Context) error {
	u.dsn = u.cfg.DB
	if u.dsn == "" {
		u.dsn = "sqlite:" + filepath.Join(u.dataDir, "eldercare.db")
	}
	var docs [][]byte
	if u.cfg.Demo {
		docs = append(docs, firmwaresim.DemoRegistryYAML)
	}
	var err error
	if u.db, u.store, u.cache, err = openRegistry(ctx, u.dsn, u.cfg.Registry, docs...); err != nil {
		return err
	}
	u.onClose(func() { u.db.Close() })
	return nil
}

// startBroker uses --mqtt, or starts the embedded broker when it is empty.
// It runs after the registry: its credentials decide whether the broker
// authenticates (docs/security.md).
func (u *upStack) startBroker(ctx context.Context) error {
	c := u.cfg
	u.mqttURL, u.publicMQTT = c.MQTT, c.MQTT
	if u.mqttURL != "" {
		return nil
	}
	auth, err := u.brokerAuth(ctx)
	if err != nil {
		return err
	}
	storeDir := filepath.Join(u.dataDir, "broker")
	if err := os.MkdirAll(storeDir, 0o700); err != nil {
		return fmt.Errorf("--data %s: %w", u.dataDir, err)
	}
	u.brk, err = broker.Start(broker.Config{Addr: c.MQTTListen, Logger: u.log, Auth: auth, Registerer: u.reg,
		Root: c.Root, StorePath: filepath.Join(storeDir, "store.db"), StoreNoSync: !c.MQTTStoreFsync})
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "listen") {
			return flagErr("--mqtt-listen", c.MQTTListen, err)
		}
		return err
	}
	u.onClose(func() { u.brk.Close() })
	u.mqttURL, u.publicMQTT = u.brk.URL(), u.brk.URL()
	if auth != nil {
		// The platform's own services (and the in-process demo) log in
		// with a credential generated for this run, never printed.
		u.mqttURL = "tcp://" + auth.InternalUser + ":" + auth.InternalPassword + "@" + strings.TrimPrefix(u.brk.URL(), "tcp://")
		u.publicMQTT += " with authentication and topic ACL"
	}
	return nil
}

// brokerAuth is the embedded broker's authentication from --mqtt-auth
// (default on, registry with --demo); nil is an open broker, refused on a
// non-loopback address without --mqtt-allow-anonymous.
func (u *upStack) brokerAuth(ctx context.Context) (*broker.Auth, error) {
	c := u.cfg
	mode := c.MQTTAuth
	if mode == "" {
		mode = "on"
		if c.Demo {
			mode = "registry"
		}
	}
	auth, err := upBrokerAuth(ctx, mode, c.Root, u.store)
	if err != nil {
		return nil, err
	}
	if auth == nil {
		if err := checkOpenBroker(c.MQTTListen, c.MQTTAllowAnonymous); err != nil {
			return nil, err
		}
		u.log.Warn("the embedded broker is open: any client may connect, publish and subscribe (--mqtt-auth)", "listen", c.MQTTListen)
		return nil, nil
	}
	if auth.InternalPassword, err = internalMQTTPassword(u.dataDir); err != nil {
		return nil, err
	}
	// alerting also holds a second session for readings and status.
	auth.ServiceClientIDs = upServiceClientIDs()
	return auth, nil
}

// runDemo runs the demo care station and the demo home (behind its
// gateway) in g.
func (u *upStack) runDemo(ctx context.Context, g *errgroup.Group) {
	c := u.cfg
	rec := c.Recordings
	if rec == "" {
		rec, _ = realdata.Find()
	}
	g.Go(func() error {
		return firmwaresim.RunDemo(ctx, firmwaresim.DemoConfig{
			MQTTURL: u.mqttURL, Root: c.Root, Recordings: rec, Speed: c.Speed, Logger: u.log.With("role", "sim"),
			HomeBehindGateway: true, // the demo home runs behind its gateway (demohome.go)
		})
	})
	g.Go(func() error {
		return runDemoHome(ctx, demoHomeConfig{MQTTURL: u.mqttURL, Root: c.Root, ClientID: demoHomeGateway, SpoolDir: filepath.Join(u.dataDir, "demo-home-gateway"),
			Speed: c.Speed, Store: u.store, Reg: u.reg, Log: u.log.With("role", "demo-home")})
	})
}

// printBanner prints where the dashboard, API, broker, InfluxDB and
// database are.
func (u *upStack) printBanner(loginHelp string) {
	httpAddr := u.cfg.HTTP
	host := httpAddr
	if h, p, err := net.SplitHostPort(httpAddr); err == nil && (h == "" || h == "0.0.0.0" || h == "::") {
		host = net.JoinHostPort("127.0.0.1", p)
	}
	influx := u.influxURL + " (external)"
	if u.child != nil {
		influx = u.influxURL + " (managed, authentication on; accounts in " + filepath.Join(u.dataDir, influxCredentialsFile) + ")"
	}
	broker := u.publicMQTT + " (external)"
	if u.brk != nil {
		broker = u.publicMQTT + " (embedded broker)"
	}
	fmt.Printf("\neldercare is up\n  dashboard:  http://%s/login   %s\n  API:        http://%s/api/v1 (Authorization: Bearer; token in %s)\n  MQTT:       %s\n  InfluxDB:   %s\n  database:   %s\nCtrl-C stops everything.\n\n",
		host, loginHelp, host, u.tokenFile, broker, influx, redactDSN(u.dsn))
}
