package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/device/gateway"
	"github.com/eldercare-iot/eldercare/device/gateway/spool"
	"github.com/eldercare-iot/eldercare/device/gateway/zigbee"
	"github.com/eldercare-iot/eldercare/device/modbus"
)

func newGatewayCmd() *cobra.Command {
	var cfg gatewayConfig
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "Run an edge gateway: Modbus and zigbee2mqtt devices -> spool on disk -> MQTT uplink, with local alarms",
		Long: `gateway runs in a home care bed or care station. It polls Modbus devices and
maps zigbee2mqtt devices (listed in --gateway-config), commits every reading
and event to a spool on disk (--spool) before acknowledging it, and drains the
spool to the platform broker (--mqtt) in protocol v1 messages, deleting an
entry only after the broker's PUBACK. While the uplink is down a fall or SOS
is raised on the local broker (--local-mqtt, topic --local-alarm-topic) and
in the log within 1 s. Each device's status (online, or offline with reason
no_readings) follows its real readings, or zigbee2mqtt's availability where
it is on; a heartbeat every --heartbeat-interval lists the devices and their
state. See docs/gateway.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runGateway(cmd, &cfg) },
	}
	cfg.bind(cmd.Flags())
	return cmd
}

// gatewayConfig is the gateway role's configuration, one field per flag
// of `eldercare gateway` (bind); cliconfig.Load fills it from the command
// line, the environment and the config file. The uplink's id, site and
// devices come from the --gateway-config file (loadGatewayFile).
type gatewayConfig struct {
	File   string         // --gateway-config
	Uplink gateway.Config // the platform uplink and local alarms
	Spool  spool.Config
	HTTP   string
}

// bind registers the gateway role's flags on f, bound to c's fields.
func (c *gatewayConfig) bind(f *pflag.FlagSet) {
	u := &c.Uplink
	f.StringVar(&c.File, "gateway-config", "", "gateway YAML file: id, site, devices, modbus buses and zigbee2mqtt section (required; see docs/gateway.md)")
	f.StringVar(&u.MQTTURL, "mqtt", "tcp://127.0.0.1:1883", "platform MQTT broker URL for the uplink (tcp://, ssl:// or ws://; user:password@ allowed)")
	f.StringVar(&u.TLSCAFile, "tls-ca", "", `PEM file of the CA that signed the platform broker's certificate, for ssl:// URLs (default "": the system CA pool)`)
	f.StringVar(&u.TLSCertFile, "tls-cert", "", `PEM client certificate for brokers that require one (with --tls-key; default none)`)
	f.StringVar(&u.TLSKeyFile, "tls-key", "", `PEM key of --tls-cert (default none)`)
	f.StringVar(&u.TLSServerName, "tls-server-name", "", `name checked in the broker's certificate (default "": the URL's host)`)
	f.StringVar(&u.Root, "root", device.DefaultRoot, "MQTT topic root of the platform")
	f.StringVar(&u.ClientID, "client-id", "", "uplink MQTT client id; keep it stable, the session is persistent (default the gateway id)")
	f.StringVar(&c.Spool.Path, "spool", "./data/gateway-spool.db", "spool file (SQLite); readings and events wait here until the broker acknowledges them")
	f.Int64Var(&c.Spool.MaxBytes, "spool-max-bytes", spool.DefaultMaxBytes, "spool bound in bytes; when full the oldest readings are dropped first, events only when no reading remains (default 256 MiB)")
	f.IntVar(&c.Spool.MaxEntries, "spool-max-entries", spool.DefaultMaxEntries, "spool bound in entries (readings + events), same drop policy as --spool-max-bytes")
	f.BoolVar(&c.Spool.Sync, "spool-sync", false, "fsync every spool commit (SQLite synchronous=FULL) so it survives a power cut, not only a crash; slower on SD cards (default false)")
	f.IntVar(&u.MaxMessageBytes, "max-message-bytes", gateway.DefaultMaxMessageBytes, "largest MQTT PUBLISH packet sent on the uplink in bytes (topic + payload + header); set to the broker's limit if lower (default 262144 = 256 KiB, the protocol limit)")
	f.DurationVar(&u.PublishTimeout, "publish-timeout", gateway.DefaultPublishTimeout, "longest wait for a PUBACK or SUBACK on the uplink")
	f.IntVar(&u.InFlight, "in-flight", gateway.DefaultInFlight, "uplink messages awaiting PUBACK at once (1-65535)")
	f.StringVar(&u.LocalMQTTURL, "local-mqtt", "", `local broker URL for local alarms (a station sounder or display); "" = log only (default none)`)
	f.StringVar(&u.LocalAlarmTopic, "local-alarm-topic", "", `topic of local alarms on --local-mqtt (default "<root>/local/alarm")`)
	f.StringVar(&u.NTPServer, "ntp", "", `NTP server host:port to check the gateway clock against, e.g. pool.ntp.org:123; "" = no check (default none)`)
	f.DurationVar(&u.ClockCheckInterval, "clock-check-interval", gateway.DefaultClockCheckInterval, "how often the clock is checked against --ntp")
	f.DurationVar(&u.HeartbeatInterval, "heartbeat-interval", device.HeartbeatInterval, "how often the gateway publishes its heartbeat (its status with the devices behind it and their state); the platform takes the gateway for lost after three missed")
	f.StringVar(&c.HTTP, "http", "127.0.0.1:9104", "listen address of /healthz and /metrics (host:port)")
}

// Validate reports every bad value of c: no --gateway-config, and what
// gateway.Config and spool.Config refuse. The uplink's id, site and
// devices are checked once loadGatewayFile has set them.
func (c *gatewayConfig) Validate() error {
	if c.File == "" {
		return errors.New("gateway: --gateway-config FILE is required (see docs/gateway.md)")
	}
	if err := errors.Join(c.Uplink.Validate(), c.Spool.Validate()); err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	return nil
}

// loadGatewayFile reads --gateway-config and sets the uplink's id and site
// from it.
func (c *gatewayConfig) loadGatewayFile() (*gateway.File, error) {
	if c.File == "" {
		return nil, errors.New("gateway: --gateway-config FILE is required (see docs/gateway.md)")
	}
	b, err := os.ReadFile(c.File)
	if err != nil {
		return nil, fmt.Errorf("--gateway-config: %w", err)
	}
	gf, err := gateway.ParseFile(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("--gateway-config %s: %w", c.File, err)
	}
	c.Uplink.ID, c.Uplink.Site = gf.ID, gf.Site
	return gf, nil
}

// gatewaySources are the device sources of a gateway file: their Run
// functions, the actuators that carry commands to their devices, and the
// devices (from the sources, then the file's own list).
type gatewaySources struct {
	runs      []func(context.Context, *gateway.Gateway) error
	actuators []actuated
	devices   []gateway.Device
	index     map[string]int
}

// actuated is an actuator and the devices it reaches.
type actuated struct {
	a    gateway.Actuator
	devs []string
}

// add lists d, or fills in the kind and interval of a device listed before.
func (g *gatewaySources) add(d gateway.Device) {
	if i, ok := g.index[d.ID]; ok {
		if d.Kind != "" {
			g.devices[i].Kind = d.Kind
		}
		if d.Interval != 0 {
			g.devices[i].Interval = d.Interval
		}
		return
	}
	g.index[d.ID] = len(g.devices)
	g.devices = append(g.devices, d)
}

// newGatewaySources builds the Modbus poller, zigbee2mqtt and
// accelerometer sources the file gf describes. Each source's Run takes its
// own Sink interface; *gateway.Gateway satisfies all of them.
func newGatewaySources(gf *gateway.File, reg *prometheus.Registry, log *slog.Logger) (*gatewaySources, error) {
	g := &gatewaySources{index: map[string]int{}}
	for _, add := range []func(*gateway.File, *prometheus.Registry, *slog.Logger) error{g.addModbus, g.addZigbee, g.addAccel} {
		if err := add(gf, reg, log); err != nil {
			return nil, err
		}
	}
	for _, d := range gf.Devices {
		g.add(gateway.Device(d))
	}
	return g, nil
}

func (g *gatewaySources) addModbus(gf *gateway.File, reg *prometheus.Registry, log *slog.Logger) error {
	if gf.Modbus == nil {
		return nil
	}
	mc := modbus.Config{Buses: gf.Modbus.Buses}
	if err := mc.Validate(); err != nil {
		return err
	}
	p, err := modbus.New(mc, reg, log)
	if err != nil {
		return err
	}
	profiles := p.Devices()
	for _, id := range slices.Sorted(maps.Keys(profiles)) {
		prof := profiles[id]
		iv := prof.PollInterval
		for _, r := range prof.Registers {
			if r.PollInterval > 0 && (iv == 0 || r.PollInterval < iv) {
				iv = r.PollInterval
			}
		}
		g.add(gateway.Device{ID: id, Kind: prof.Kind, Interval: iv})
	}
	g.actuators = append(g.actuators, actuated{p, slices.Sorted(maps.Keys(profiles))})
	g.runs = append(g.runs, func(ctx context.Context, gw *gateway.Gateway) error { return p.Run(ctx, gw) })
	return nil
}

func (g *gatewaySources) addZigbee(gf *gateway.File, reg *prometheus.Registry, log *slog.Logger) error {
	if gf.Zigbee == nil {
		return nil
	}
	clientID := gf.Zigbee.ClientID
	if clientID == "" {
		clientID = gf.ID + "-zigbee2mqtt"
	}
	var zdevs []zigbee.Device
	for _, d := range gf.Zigbee.Devices {
		zdevs = append(zdevs, zigbee.Device{FriendlyName: d.FriendlyName, ID: d.Device, Kind: d.Kind, Model: d.Model, Location: d.Location})
	}
	src, err := zigbee.New(zigbee.Config{MQTTURL: gf.Zigbee.MQTT, BaseTopic: gf.Zigbee.BaseTopic, ClientID: clientID,
		MappingFile: gf.Zigbee.MappingFile, Devices: zdevs, Logger: log, Registerer: reg})
	if err != nil {
		return fmt.Errorf("zigbee2mqtt: %w", err)
	}
	var ids []string
	for _, d := range zdevs {
		g.add(gateway.Device{ID: d.ID, Kind: d.Kind})
		ids = append(ids, d.ID)
	}
	g.actuators = append(g.actuators, actuated{src, ids})
	g.runs = append(g.runs, func(ctx context.Context, gw *gateway.Gateway) error { return src.Run(ctx, gw) })
	return nil
}

func (g *gatewaySources) addAccel(gf *gateway.File, reg *prometheus.Registry, log *slog.Logger) error {
	if gf.Accel == nil {
		return nil
	}
	c := gf.Accel.Config(gf.ID + "-accel")
	c.Logger, c.Registerer = log, reg
	src, err := gateway.NewAccelSource(c)
	if err != nil {
		return fmt.Errorf("accel: %w", err)
	}
	for _, d := range gf.Accel.Devices {
		g.add(gateway.Device{ID: d.Device, Kind: device.FallDetector})
	}
	g.runs = append(g.runs, func(ctx context.Context, gw *gateway.Gateway) error { return src.Run(ctx, gw) })
	return nil
}

func runGateway(cmd *cobra.Command, cfg *gatewayConfig) error {
	_, log, err := loadSettingsAndLogger(cmd)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	gf, err := cfg.loadGatewayFile()
	if err != nil {
		return err
	}
	reg := newMetrics()
	// Sources first: their devices are the gateway's devices.
	src, err := newGatewaySources(gf, reg, log)
	if err != nil {
		return fmt.Errorf("--gateway-config %s: %w", cfg.File, err)
	}
	cfg.Uplink.Devices = src.devices
	if err := cfg.Validate(); err != nil {
		return err
	}
	ln, err := listen("--http", cfg.HTTP)
	if err != nil {
		return err
	}
	defer ln.Close()
	sp, err := spool.Open(ctx, cfg.Spool, reg, log)
	if err != nil {
		return fmt.Errorf("--spool: %w", err)
	}
	defer sp.Close()
	gw, err := gateway.New(cfg.Uplink, sp, reg, log)
	if err != nil {
		return err
	}
	for _, a := range src.actuators {
		gw.SetActuator(a.a, a.devs...)
	}
	registerGatewayOps(reg, sp) // opsgateway.go: spool age, MQTT connection state
	entries, bytes := sp.Len()
	u := cfg.Uplink
	log.Info("gateway starting", "id", u.ID, "site", u.Site, "mqtt", u.MQTTURL, "root", u.Root, "boot", sp.Boot(),
		"spool", cfg.Spool.Path, "spooled_entries", entries, "spooled_bytes", bytes, "devices", len(src.devices), "sources", len(src.runs),
		"local_mqtt", u.LocalMQTTURL, "http", ln.Addr().String())

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return gw.Run(gctx) })
	for _, run := range src.runs {
		g.Go(func() error { return run(gctx, gw) })
	}
	g.Go(func() error {
		// Healthy while running: an uplink outage is normal for a gateway
		// (it spools); eldercare_gateway_uplink_connected tells it apart.
		return serveOps(gctx, ln, reg, func(context.Context) error { return nil })
	})
	return g.Wait()
}
