package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/device/gateway"
	"github.com/eldercare-iot/eldercare/device/gateway/spool"
	"github.com/eldercare-iot/eldercare/device/gateway/zigbee"
	"github.com/eldercare-iot/eldercare/device/modbus"
)

func newGatewayCmd() *cobra.Command {
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
		RunE: runGateway,
	}
	f := cmd.Flags()
	f.String("gateway-config", "", "gateway YAML file: id, site, devices, modbus buses and zigbee2mqtt section (required; see docs/gateway.md)")
	f.String("mqtt", "tcp://127.0.0.1:1883", "platform MQTT broker URL for the uplink (tcp://, ssl:// or ws://; user:password@ allowed)")
	f.String("tls-ca", "", `PEM file of the CA that signed the platform broker's certificate, for ssl:// URLs (default "": the system CA pool)`)
	f.String("tls-cert", "", `PEM client certificate for brokers that require one (with --tls-key; default none)`)
	f.String("tls-key", "", `PEM key of --tls-cert (default none)`)
	f.String("tls-server-name", "", `name checked in the broker's certificate (default "": the URL's host)`)
	f.String("root", device.DefaultRoot, "MQTT topic root of the platform")
	f.String("client-id", "", "uplink MQTT client id; keep it stable, the session is persistent (default the gateway id)")
	f.String("spool", "./data/gateway-spool.db", "spool file (SQLite); readings and events wait here until the broker acknowledges them")
	f.Int64("spool-max-bytes", spool.DefaultMaxBytes, "spool bound in bytes; when full the oldest readings are dropped first, events only when no reading remains (default 256 MiB)")
	f.Int("spool-max-entries", spool.DefaultMaxEntries, "spool bound in entries (readings + events), same drop policy as --spool-max-bytes")
	f.Bool("spool-sync", false, "fsync every spool commit (SQLite synchronous=FULL) so it survives a power cut, not only a crash; slower on SD cards (default false)")
	f.Int("max-message-bytes", gateway.DefaultMaxMessageBytes, "largest MQTT PUBLISH packet sent on the uplink in bytes (topic + payload + header); set to the broker's limit if lower (default 262144 = 256 KiB, the protocol limit)")
	f.Duration("publish-timeout", gateway.DefaultPublishTimeout, "longest wait for a PUBACK or SUBACK on the uplink")
	f.Int("in-flight", gateway.DefaultInFlight, "uplink messages awaiting PUBACK at once (1-65535)")
	f.String("local-mqtt", "", `local broker URL for local alarms (a station sounder or display); "" = log only (default none)`)
	f.String("local-alarm-topic", "", `topic of local alarms on --local-mqtt (default "<root>/local/alarm")`)
	f.String("ntp", "", `NTP server host:port to check the gateway clock against, e.g. pool.ntp.org:123; "" = no check (default none)`)
	f.Duration("clock-check-interval", gateway.DefaultClockCheckInterval, "how often the clock is checked against --ntp")
	f.Duration("heartbeat-interval", device.HeartbeatInterval, "how often the gateway publishes its heartbeat (its status with the devices behind it and their state); the platform takes the gateway for lost after three missed")
	f.String("http", "127.0.0.1:9104", "listen address of /healthz and /metrics (host:port)")
	return cmd
}

// modbusConfig turns the modbus section of the gateway file into the
// poller's configuration.
func modbusConfig(m *gateway.FileModbus) modbus.Config {
	var c modbus.Config
	for _, b := range m.Buses {
		bc := modbus.BusConfig{Name: b.Name, Transport: modbus.Transport(b.Transport), Address: b.Address, Timeout: b.Timeout,
			Serial: modbus.SerialConfig{Port: b.Serial.Port, BaudRate: b.Serial.BaudRate, DataBits: b.Serial.DataBits, Parity: b.Serial.Parity, StopBits: b.Serial.StopBits}}
		for _, d := range b.Devices {
			bc.Devices = append(bc.Devices, modbus.DeviceConfig{ID: d.ID, Profile: d.Profile, Slave: d.Slave})
		}
		c.Buses = append(c.Buses, bc)
	}
	return c
}

func runGateway(cmd *cobra.Command, _ []string) error {
	s, log, err := loadSettingsAndLogger(cmd)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	path := s.String("gateway-config")
	if path == "" {
		return errors.New("gateway: --gateway-config FILE is required (see docs/gateway.md)")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--gateway-config: %w", err)
	}
	gf, err := gateway.ParseFile(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("--gateway-config %s: %w", path, err)
	}
	reg := newMetrics()

	// Sources first: their devices are the gateway's devices.
	// Each source's Run takes its own Sink interface; *gateway.Gateway
	// satisfies all of them.
	var sources []func(context.Context, *gateway.Gateway) error
	// actuators carry commands to the devices of the sources that can.
	type actuated struct {
		a    gateway.Actuator
		devs []string
	}
	var actuators []actuated
	var devices []gateway.Device
	index := map[string]int{}
	addDevice := func(d gateway.Device) {
		if i, ok := index[d.ID]; ok {
			if d.Kind != "" {
				devices[i].Kind = d.Kind
			}
			if d.Interval != 0 {
				devices[i].Interval = d.Interval
			}
			return
		}
		index[d.ID] = len(devices)
		devices = append(devices, d)
	}
	if gf.Modbus != nil {
		mc := modbusConfig(gf.Modbus)
		if err := mc.Validate(); err != nil {
			return fmt.Errorf("--gateway-config %s: %w", path, err)
		}
		p, err := modbus.New(mc, reg, log)
		if err != nil {
			return fmt.Errorf("--gateway-config %s: %w", path, err)
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
			addDevice(gateway.Device{ID: id, Kind: prof.Kind, Interval: iv})
		}
		actuators = append(actuators, actuated{p, slices.Sorted(maps.Keys(profiles))})
		sources = append(sources, func(ctx context.Context, gw *gateway.Gateway) error { return p.Run(ctx, gw) })
	}
	if gf.Zigbee != nil {
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
			return fmt.Errorf("--gateway-config %s: zigbee2mqtt: %w", path, err)
		}
		var ids []string
		for _, d := range zdevs {
			addDevice(gateway.Device{ID: d.ID, Kind: d.Kind})
			ids = append(ids, d.ID)
		}
		actuators = append(actuators, actuated{src, ids})
		sources = append(sources, func(ctx context.Context, gw *gateway.Gateway) error { return src.Run(ctx, gw) })
	}
	if gf.Accel != nil {
		src, err := gateway.NewAccelSource(func() gateway.AccelConfig {
			c := gf.Accel.Config(gf.ID + "-accel")
			c.Logger, c.Registerer = log, reg
			return c
		}())
		if err != nil {
			return fmt.Errorf("--gateway-config %s: accel: %w", path, err)
		}
		for _, d := range gf.Accel.Devices {
			addDevice(gateway.Device{ID: d.Device, Kind: device.FallDetector})
		}
		sources = append(sources, func(ctx context.Context, gw *gateway.Gateway) error { return src.Run(ctx, gw) })
	}
	for _, d := range gf.Devices {
		addDevice(gateway.Device(d))
	}

	cfg := gateway.Config{
		ID: gf.ID, Site: gf.Site, Root: s.String("root"), MQTTURL: s.String("mqtt"), ClientID: s.String("client-id"),
		TLSCAFile: s.String("tls-ca"), TLSCertFile: s.String("tls-cert"), TLSKeyFile: s.String("tls-key"), TLSServerName: s.String("tls-server-name"),
		LocalMQTTURL: s.String("local-mqtt"), LocalAlarmTopic: s.String("local-alarm-topic"), Devices: devices,
		MaxMessageBytes: s.Int("max-message-bytes"), PublishTimeout: s.Duration("publish-timeout"), InFlight: s.Int("in-flight"),
		NTPServer: s.String("ntp"), ClockCheckInterval: s.Duration("clock-check-interval"),
		HeartbeatInterval: s.Duration("heartbeat-interval"),
	}
	scfg := spool.Config{Path: s.String("spool"), MaxBytes: s.v.GetInt64("spool-max-bytes"), MaxEntries: s.Int("spool-max-entries"), Sync: s.Bool("spool-sync")}
	if err := errors.Join(cfg.Validate(), scfg.Validate()); err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	ln, err := listen("--http", s.String("http"))
	if err != nil {
		return err
	}
	defer ln.Close()
	sp, err := spool.Open(ctx, scfg, reg, log)
	if err != nil {
		return fmt.Errorf("--spool: %w", err)
	}
	defer sp.Close()
	gw, err := gateway.New(cfg, sp, reg, log)
	if err != nil {
		return err
	}
	for _, a := range actuators {
		gw.SetActuator(a.a, a.devs...)
	}
	registerGatewayOps(reg, sp) // opsgateway.go: spool age, MQTT connection state
	entries, bytes := sp.Len()
	log.Info("gateway starting", "id", cfg.ID, "site", cfg.Site, "mqtt", cfg.MQTTURL, "root", cfg.Root, "boot", sp.Boot(),
		"spool", scfg.Path, "spooled_entries", entries, "spooled_bytes", bytes, "devices", len(devices), "sources", len(sources),
		"local_mqtt", cfg.LocalMQTTURL, "http", ln.Addr().String())

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return gw.Run(gctx) })
	for _, src := range sources {
		g.Go(func() error { return src(gctx, gw) })
	}
	g.Go(func() error {
		// Healthy while running: an uplink outage is normal for a gateway
		// (it spools); eldercare_gateway_uplink_connected tells it apart.
		return serveOps(gctx, ln, reg, func(context.Context) error { return nil })
	})
	return g.Wait()
}
