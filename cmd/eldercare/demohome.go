package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/device/gateway"
	"github.com/eldercare-iot/eldercare/device/gateway/spool"
	"github.com/eldercare-iot/eldercare/device/registry"
	firmwaresim "github.com/eldercare-iot/eldercare/firmware-sim"
)

// The demo home (issue 13 item 9): with `up --demo`, the home care bed
// demo-home-li runs its kit (smoke and gas alarms, gas valve, front-door
// contact, pill box, wristband, card reader; firmwaresim.DemoHomeKit)
// behind a simulated home gateway, demoHomeGateway: the real gateway
// runtime (device/gateway, with its spool under the data directory) whose
// source is the simulated devices. The platform sees the gateway's
// heartbeat with the devices behind it, and a staff command (close the
// valve) goes through the gateway to the simulated valve, which answers
// with its new state.

// demoHomeGateway is the id of the demo home's gateway.
const demoHomeGateway = "gw-home-li"

// demoHomeConfig configures runDemoHome.
type demoHomeConfig struct {
	MQTTURL, Root, ClientID string
	// SpoolDir holds the gateway's spool.
	SpoolDir string
	Speed    float64
	Store    *registry.Store
	Reg      prometheus.Registerer
	Log      *slog.Logger
}

// runDemoHome registers the home's gateway (kind gateway, site
// demo-home-li) with the home's devices behind it, and runs the gateway and
// the simulated devices until ctx ends.
func runDemoHome(ctx context.Context, cfg demoHomeConfig) error {
	site := firmwaresim.DemoHome
	// The demo registry has the gateway (with its names); a registry
	// imported without it gets a plain one.
	if _, err := cfg.Store.Device(ctx, demoHomeGateway); errors.Is(err, registry.ErrNotFound) {
		if err := cfg.Store.PutDevice(ctx, registry.Device{ID: demoHomeGateway, SiteID: site, Kind: registry.KindGateway,
			Name: "Home gateway", Power: registry.PowerMains}); err != nil {
			return fmt.Errorf("demo home: register gateway: %w", err)
		}
	} else if err != nil {
		return fmt.Errorf("demo home: %w", err)
	}
	kits := firmwaresim.DemoHomeKit(cfg.Speed)
	var devs []gateway.Device
	for _, k := range kits {
		x, err := cfg.Store.Device(ctx, k.Device)
		if err != nil {
			return fmt.Errorf("demo home: %w", err)
		}
		if x.GatewayID != demoHomeGateway {
			x.GatewayID = demoHomeGateway
			if err := cfg.Store.PutDevice(ctx, x); err != nil {
				return fmt.Errorf("demo home: put %s behind the gateway: %w", x.ID, err)
			}
		}
		devs = append(devs, gateway.Device{ID: k.Device, Kind: k.Kind})
	}
	sp, err := spool.Open(ctx, spool.Config{Path: filepath.Join(cfg.SpoolDir, "spool.db")}, cfg.Reg, cfg.Log)
	if err != nil {
		return fmt.Errorf("demo home: %w", err)
	}
	defer sp.Close()
	gw, err := gateway.New(gateway.Config{ID: demoHomeGateway, Site: site, Root: cfg.Root, MQTTURL: cfg.MQTTURL, ClientID: cfg.ClientID,
		Devices: devs}, sp, cfg.Reg, cfg.Log)
	if err != nil {
		return fmt.Errorf("demo home: %w", err)
	}
	outs := make([]*gatewayKitOutput, len(kits))
	for i, k := range kits {
		outs[i] = &gatewayKitOutput{gw: gw, dev: k.Device}
		if len(device.Actions(k.Kind)) > 1 { // more than ping: the valve, the alarms
			gw.SetActuator(outs[i], k.Device)
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return gw.Run(gctx) })
	for i, k := range kits {
		g.Go(func() error { return firmwaresim.RunKitOn(gctx, k, outs[i]) })
	}
	cfg.Log.Info("demo home running behind its gateway", "site", site, "gateway", demoHomeGateway, "devices", len(kits))
	err = g.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// gatewayKitOutput puts one simulated device behind the gateway: its
// readings and events go into the gateway (its spool and uplink), and the
// gateway's commands for it reach its handler (gateway.Actuator).
type gatewayKitOutput struct {
	gw  *gateway.Gateway
	dev string

	mu     sync.Mutex
	handle func(device.Command) error
}

func (o *gatewayKitOutput) PublishReading(ctx context.Context, ts time.Time, values map[string]float64) error {
	return o.gw.Reading(ctx, o.dev, ts, values)
}

func (o *gatewayKitOutput) PublishEvent(ctx context.Context, ts time.Time, typ device.EventType, attrs map[string]any) error {
	return o.gw.Event(ctx, o.dev, ts, typ, attrs)
}

func (o *gatewayKitOutput) Commands(_ context.Context, handle func(device.Command) error) error {
	o.mu.Lock()
	o.handle = handle
	o.mu.Unlock()
	return nil
}

// Actuate implements gateway.Actuator.
func (o *gatewayKitOutput) Actuate(_ context.Context, cmd device.Command) error {
	o.mu.Lock()
	h := o.handle
	o.mu.Unlock()
	if h == nil {
		if cmd.Action == device.ActionPing {
			return nil
		}
		return device.Refused(device.ReasonUnsupported, "the simulated %s takes no commands", o.dev)
	}
	return h(cmd)
}
