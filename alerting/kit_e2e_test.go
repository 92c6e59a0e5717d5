package alerting

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/device/gateway"
	"github.com/eldercare-iot/eldercare/device/gateway/spool"
	"github.com/eldercare-iot/eldercare/device/gateway/zigbee"
	"github.com/eldercare-iot/eldercare/device/registry"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// kitDevicesFile maps the friendly names of the real safety-kit messages
// onto device ids, kinds and models (the gateway's golden cases use it).
const kitDevicesFile = "../device/gateway/zigbee/testdata/safety_kit/devices.yaml"

type kitMsg struct {
	Device    string          `json:"device"`
	Class     string          `json:"class"`
	Topic     string          `json:"topic"`
	Payload   json.RawMessage `json:"payload"`
	Direction string          `json:"direction"`
}

// gatewayDir is a registry view for the kit: every device behind gw-1.
type gatewayDir struct {
	testDirectory
	devices map[string]registry.Device
}

func (d gatewayDir) Device(id string) (registry.Device, bool) {
	x, ok := d.devices[id]
	return x, ok
}
func (d gatewayDir) DevicesBehind(gw string) []string {
	var out []string
	for id, x := range d.devices {
		if x.GatewayID == gw {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// TestSafetyKitRealPayloadsToAlerts: every real zigbee2mqtt state message
// of a smoke, gas, water-leak and SOS device (real_payloads_safety_kit.jsonl)
// goes through a real broker, the real zigbee2mqtt source and gateway
// (device/gateway) and the alerting service to its alert; the golden map
// below is one case per mapped model. The Xiaomi gas alarm's gas event
// closes the RTX ZVG1 valve behind the same gateway: the command reaches
// the gateway, which publishes zigbee2mqtt's /set; the test answers as
// zigbee2mqtt with the valve's real "state":"OFF" message, and the
// gateway's ack and the valve's new state are in the gas alert's history.
func TestSafetyKitRealPayloadsToAlerts(t *testing.T) {
	t.Parallel()
	f, err := os.Open(filepath.Join(testenv.RealData(t), "zigbee2mqtt", "real_payloads_safety_kit.jsonl"))
	if err != nil {
		t.Skipf("real safety-kit payloads not found: %v", err)
	}
	var msgs []kitMsg
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var m kitMsg
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, m)
	}
	f.Close()
	df, err := os.Open(kitDevicesFile)
	if err != nil {
		t.Fatal(err)
	}
	devs, err := zigbee.ParseDevices(df)
	df.Close()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]zigbee.Device{}
	dir := gatewayDir{testDirectory: testDirectory{loc: time.UTC}, devices: map[string]registry.Device{}}
	var gwDevs []gateway.Device
	var ids []string
	for _, d := range devs {
		byName[d.FriendlyName] = d
		dir.devices[d.ID] = registry.Device{ID: d.ID, SiteID: "demo", Kind: string(d.Kind), GatewayID: "gw-1"}
		gwDevs = append(gwDevs, gateway.Device{ID: d.ID, Kind: d.Kind})
		ids = append(ids, d.ID)
	}

	e := newEnv(t)
	r := e.start(func(c *Config) {
		c.Rules.Directory = func() Directory { return dir }
		c.Commands = CommandConfig{AckTimeout: 5 * time.Second, ConfirmTimeout: 10 * time.Second, Tick: 100 * time.Millisecond}
	})
	base := e.root + "/zigbee2mqtt"
	log := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src, err := zigbee.New(zigbee.Config{MQTTURL: e.url, BaseTopic: base, ClientID: testenv.ClientID(t, "z2m"), Devices: devs, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	sp, err := spool.Open(ctx, spool.Config{Path: filepath.Join(t.TempDir(), "spool.db")}, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	g, err := gateway.New(gateway.Config{ID: "gw-1", Site: "demo", Root: e.root, MQTTURL: e.url, ClientID: testenv.ClientID(t, "gw"),
		Devices: gwDevs}, sp, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	g.SetActuator(src, ids...)
	gwDone, srcDone := make(chan error, 1), make(chan error, 1)
	go func() { gwDone <- g.Run(ctx) }()
	go func() { srcDone <- src.Run(ctx, g) }()
	defer func() { cancel(); <-srcDone; <-gwDone }()

	// zigbee2mqtt's side: the valve answers /set with its real state.
	var valveOff json.RawMessage
	for _, m := range msgs {
		if m.Topic == "zigbee2mqtt/arrosage_2" && strings.Contains(string(m.Payload), `"state": "OFF"`) {
			valveOff = m.Payload
			break
		}
	}
	z2m, err := mqttconn.Connect(ctx, mqttconn.Options{URL: e.url, ClientID: testenv.ClientID(t, "z2m-bus"), CleanSession: true, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer z2m.Disconnect(100)
	sets := make(chan string, 16)
	if err := mqttconn.Wait(ctx, z2m.Subscribe(base+"/arrosage_2/set", 1, func(c paho.Client, m paho.Message) {
		sets <- string(m.Payload())
		if strings.Contains(string(m.Payload()), `"OFF"`) {
			c.Publish(base+"/arrosage_2", 1, false, []byte(valveOff))
		}
	}), 10*time.Second, "subscribe /set"); err != nil {
		t.Fatal(err)
	}
	// Wait until the gateway takes commands for the valve (a ping acked).
	testenv.EventuallyTrue(t, 20*time.Second, "gateway subscribed to the valve's commands", func() bool {
		id, err := r.svc.SendCommand(ctx, "demo", "valve-zvg1", device.ActionPing, nil, 0, "test")
		if err != nil {
			return false
		}
		deadline := time.Now().Add(time.Second)
		for time.Now().Before(deadline) {
			for _, c := range r.svc.Commands(0) {
				if c.ID == id && c.State == CommandConfirmed {
					return true
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		return false
	})

	// Every real state message of the alarm classes, in file order.
	for _, m := range msgs {
		switch m.Class {
		case "smoke", "gas", "water_leak", "call_button":
		default:
			continue
		}
		if m.Direction == "set" {
			continue
		}
		_, name, _ := strings.Cut(m.Topic, "/")
		if _, ok := byName[name]; !ok {
			t.Fatalf("%s: friendly name not in %s", m.Topic, kitDevicesFile)
		}
		e.publishRaw(base+"/"+name, m.Payload)
	}
	// The golden map: device (model) -> the alert types its real messages
	// raise. HS1CG-E reports gas:false while alarming (a device bug noted in
	// the data's README): no gas alert from it.
	// (The same events as the gateway's golden files
	// device/gateway/zigbee/testdata/safety_kit/*.golden.) "" = the model's
	// real messages raise no alert: no alarm in them.
	want := map[string]string{
		"smoke-heiman": "smoke",      // Heiman, model not stated
		"smoke-x3":     "smoke",      // JTYJ-GD-01LM/BW (smoke: true)
		"smoke-x1":     "",           // JTYJ-GD-01LM/BW, no smoke in its messages
		"smoke-x2":     "",           // JTYJ-GD-01LM/BW, no smoke in its messages
		"gas-x1":       "gas",        // JTQJ-BF-01LM/BW
		"gas-h1":       "",           // HS1CG-E: gas:false while alarming (device bug)
		"gas-h2":       "",           // HS1CG-E
		"leak-st1":     "water_leak", // IM6001-WLP01
		"leak-st2":     "water_leak", // IM6001-WLP01 (second unit)
		"leak-e13":     "water_leak", // NOUS E13
		"leak-hb":      "water_leak", // model not stated
		"leak-t1":      "",           // SJCGQ12LM, dry in its messages
		"leak-aq":      "",           // SJCGQ11LM, dry in its messages
		"call-1":       "sos",        // TS0215A_sos (bathroom)
		"call-2":       "sos",        // TS0601_sos (bedroom)
	}
	raising := 0
	for _, typ := range want {
		if typ != "" {
			raising++
		}
	}
	got := func() map[string]string {
		out := map[string]string{}
		for _, a := range allAlerts(t, r.m) {
			switch a.Type {
			case TypeSmoke, TypeGas, TypeWaterLeak, TypeSOS, TypeTamper:
				out[a.Device] += a.Type
			}
		}
		return out
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && len(got()) < raising {
		time.Sleep(100 * time.Millisecond)
	}
	g1 := got()
	for dev, typ := range want {
		if g1[dev] != typ {
			t.Errorf("%s: alerts %q, want %q", dev, g1[dev], typ)
		}
	}
	for dev, typ := range g1 {
		if want[dev] == "" {
			t.Errorf("unexpected alert %s of %s", typ, dev)
		}
	}
	for _, a := range openAlerts(t, r.m, TypeSOS) {
		if a.Device == "call-1" && !strings.Contains(a.Detail, "SOS button pressed in the bathroom") {
			t.Errorf("pull cord SOS: %+v", a)
		}
	}
	gas := openAlerts(t, r.m, TypeGas)
	if len(gas) != 1 {
		t.Fatalf("gas alerts: %+v", gas)
	}
	if gas[0].Severity != SeverityCritical {
		t.Errorf("gas alert severity %s", gas[0].Severity)
	}
	testenv.EventuallyTrue(t, 30*time.Second, "valve close confirmed", func() bool {
		for _, c := range r.svc.Commands(gas[0].ID) {
			if c.Device == "valve-zvg1" && c.State == CommandConfirmed {
				return true
			}
		}
		return false
	})
	select {
	case s := <-sets:
		if !strings.Contains(s, `"OFF"`) {
			t.Errorf("zigbee2mqtt got /set %s", s)
		}
	default:
		t.Error("no /set reached zigbee2mqtt")
	}
	historyWith(t, r.m, gas[0].ID, "to valve-zvg1: sent (try 1 of 3", "gateway answered accepted", "to valve-zvg1: confirmed: the device reports")
}
