package alerting

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/device/registry"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
	"github.com/eldercare-iot/eldercare/internal/sqldb/sqldbtest"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// simValve is a valve with its own MQTT connection (docs/protocol.md: "a
// device with its own MQTT connection answers for itself"): it answers each
// command on cmd/ack and reports its new state valve_open, as a gateway
// carrying the command to a zigbee2mqtt valve does.
type simValve struct {
	e        *env
	dev      string
	received atomic.Int32
	seq      atomic.Uint64
}

func startSimValve(t *testing.T, e *env, dev string) *simValve {
	v := &simValve{e: e, dev: dev}
	c, err := mqttconn.Connect(context.Background(), mqttconn.Options{URL: e.url, ClientID: testenv.ClientID(t, "valve-"+dev), CleanSession: true,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Disconnect(100) })
	topic := device.CommandTopic(e.root, "demo", dev)
	tok := c.Subscribe(topic, 1, func(c paho.Client, m paho.Message) {
		v.received.Add(1)
		cmd, err := device.DecodeCommand(m.Payload(), device.Limits{})
		if err != nil {
			t.Errorf("valve %s: bad command %s: %v", dev, m.Payload(), err)
			return
		}
		ack, _ := json.Marshal(device.AckFor(*cmd, dev, time.Now(), nil))
		c.Publish(device.CommandAckTopic(e.root, "demo", dev), 1, false, ack)
		open := 1.0
		if cmd.Action == device.ActionValveClose {
			open = 0
		}
		n := v.seq.Add(1)
		tel, _ := json.Marshal(device.Telemetry{V: 1, Device: dev, Boot: 1, ID: n, Seq: n, TS: time.Now().UnixMilli(),
			Values: map[string]float64{"valve_open": open}})
		c.Publish(device.Topic{Root: e.root, Site: "demo", Device: dev, Channel: device.ChanTelemetry}.String(), 1, false, tel)
	})
	if err := mqttconn.Wait(context.Background(), tok, 10*time.Second, "subscribe valve"); err != nil {
		t.Fatal(err)
	}
	return v
}

// historyWith waits until the history of alert id holds every one of
// wants (a command's state changes before its history entry is written)
// and returns it as historyText does.
func historyWith(t *testing.T, m *Manager, id int64, wants ...string) string {
	t.Helper()
	var h string
	testenv.Eventually(t, 10*time.Second, func() string {
		h = historyText(t, m, id)
		for _, w := range wants {
			if !strings.Contains(h, w) {
				return fmt.Sprintf("history lacks %q:\n%s", w, h)
			}
		}
		return ""
	})
	return h
}

func historyText(t *testing.T, m *Manager, id int64) string {
	t.Helper()
	h, err := m.History(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, x := range h {
		b.WriteString(x.Action + " [" + x.Channel + "] " + x.Detail + "\n")
	}
	return b.String()
}

// TestGasClosesValves: a gas event (real broker, real SQLite store) opens a
// critical gas alert and closes both valves of the site. valve-ok answers:
// its command is sent, acknowledged and confirmed by valve_open = 0, all in
// the alert's history. valve-dead never answers: it is sent MaxTries times
// with the same id and then marked failed, and the history says the valve
// is not confirmed closed. An alarm_test opens nothing; smoke is critical;
// a water leak and a tamper open their alerts.
func TestGasClosesValves(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// The service's clock runs with the wall clock plus skew: valve-ok
	// answers well within the timeouts; the test moves the clock past
	// them for valve-dead's next try.
	const timeout = 20 * time.Second
	var skew atomic.Int64
	r := e.start(func(c *Config) {
		c.Commands = CommandConfig{AckTimeout: timeout, ConfirmTimeout: timeout, MaxTries: 3, Tick: 50 * time.Millisecond}
		c.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	})
	ok := startSimValve(t, e, "valve-ok")
	// Both valves report their state once, so the service knows them.
	now := time.Now()
	for _, v := range []string{"valve-ok", "valve-dead"} {
		e.publish(v, device.ChanTelemetry, device.Telemetry{V: 1, Device: v, Boot: 9, ID: 1, Seq: 1, TS: now.UnixMilli(),
			Values: map[string]float64{"valve_open": 1}})
	}
	testenv.EventuallyTrue(t, 10*time.Second, "valves known", func() bool { return len(r.svc.valvesFor("demo", "gas-1")) == 2 })

	e.publish("gas-1", device.ChanEvent, device.Event{V: 1, Device: "gas-1", Boot: 1, ID: 1, Seq: 1, TS: time.Now().UnixMilli(),
		Type: device.EventAlarmTest, Attrs: map[string]any{"result": "ok"}})
	e.publish("gas-1", device.ChanEvent, device.Event{V: 1, Device: "gas-1", Boot: 1, ID: 2, Seq: 2, TS: time.Now().UnixMilli(),
		Type: device.EventGas, Attrs: map[string]any{"gas_lel_pct": 12.0}})
	var gas Alert
	testenv.EventuallyTrue(t, 10*time.Second, "gas alert", func() bool {
		a := openAlerts(t, r.m, TypeGas)
		if len(a) == 1 {
			gas = a[0]
		}
		return len(a) == 1
	})
	if gas.Severity != SeverityCritical || gas.Device != "gas-1" || !strings.Contains(gas.Detail, "12 %LEL") {
		t.Fatalf("gas alert = %+v", gas)
	}
	command := func(dev string) CommandStatus {
		for _, c := range r.svc.Commands(gas.ID) {
			if c.Device == dev {
				return c
			}
		}
		return CommandStatus{}
	}
	testenv.EventuallyTrue(t, 10*time.Second, "valve-ok confirmed, valve-dead sent once", func() bool {
		return command("valve-ok").State == CommandConfirmed && command("valve-dead").State == CommandSent && command("valve-dead").Tries == 1
	})
	for try := 2; try <= 3; try++ {
		skew.Add(int64(timeout + time.Second))
		testenv.EventuallyTrue(t, 10*time.Second, fmt.Sprintf("valve-dead try %d", try), func() bool {
			c := command("valve-dead")
			return c.State == CommandSent && c.Tries == try
		})
	}
	skew.Add(int64(timeout + time.Second))
	testenv.EventuallyTrue(t, 20*time.Second, "both commands final", func() bool {
		cs := r.svc.Commands(gas.ID)
		final := 0
		for _, c := range cs {
			if c.State == CommandConfirmed || c.State == CommandFailed {
				final++
			}
		}
		return len(cs) == 2 && final == 2
	})
	for _, c := range r.svc.Commands(gas.ID) {
		switch c.Device {
		case "valve-ok":
			if c.State != CommandConfirmed || c.Tries != 1 || !strings.Contains(c.Detail, "valve_open = 0") {
				t.Errorf("valve-ok command = %+v", c)
			}
		case "valve-dead":
			if c.State != CommandFailed || c.Tries != 3 {
				t.Errorf("valve-dead command = %+v", c)
			}
		default:
			t.Errorf("unexpected command %+v", c)
		}
	}
	if n := ok.received.Load(); n != 1 {
		t.Errorf("valve-ok received %d commands, want 1", n)
	}
	h := historyWith(t, r.m, gas.ID,
		"valve_close", "to valve-ok: sent (try 1 of 3", "to valve-ok: acknowledged: gateway answered accepted",
		"to valve-ok: confirmed: the device reports valve_open = 0",
		"to valve-dead: sent (try 3 of 3", "to valve-dead: failed: no acknowledgement after 3 tries; the valve is NOT confirmed closed")
	if strings.Contains(h, "to valve-dead: sent (try 4") {
		t.Errorf("more than MaxTries tries:\n%s", h)
	}
	// One id for every try of valve-dead.
	var deadID string
	for _, c := range r.svc.Commands(gas.ID) {
		if c.Device == "valve-dead" {
			deadID = c.ID
		}
	}
	if strings.Count(h, deadID+" to valve-dead: sent") != 3 {
		t.Errorf("want 3 tries of %s:\n%s", deadID, h)
	}

	// The alarm test opened nothing; smoke is critical; leak and tamper.
	e.publish("smoke-1", device.ChanEvent, device.Event{V: 1, Device: "smoke-1", Boot: 1, ID: 1, Seq: 1, TS: time.Now().UnixMilli(), Type: device.EventAlarmTest})
	e.publish("smoke-1", device.ChanEvent, device.Event{V: 1, Device: "smoke-1", Boot: 1, ID: 2, Seq: 2, TS: time.Now().UnixMilli(), Type: device.EventSmoke})
	e.publish("leak-1", device.ChanEvent, device.Event{V: 1, Device: "leak-1", Boot: 1, ID: 1, Seq: 1, TS: time.Now().UnixMilli(), Type: device.EventWaterLeak})
	e.publish("leak-1", device.ChanEvent, device.Event{V: 1, Device: "leak-1", Boot: 1, ID: 2, Seq: 2, TS: time.Now().UnixMilli(), Type: device.EventTamper})
	testenv.EventuallyTrue(t, 10*time.Second, "smoke, leak and tamper alerts", func() bool {
		return len(openAlerts(t, r.m, TypeSmoke)) == 1 && len(openAlerts(t, r.m, TypeWaterLeak)) == 1 && len(openAlerts(t, r.m, TypeTamper)) == 1
	})
	if a := openAlerts(t, r.m, TypeSmoke)[0]; a.Severity != SeverityCritical {
		t.Errorf("smoke alert = %+v", a)
	}
	if a := openAlerts(t, r.m, TypeWaterLeak)[0]; a.Severity != SeverityHigh {
		t.Errorf("leak alert = %+v", a)
	}
	if n := len(allAlerts(t, r.m)); n != 4 {
		t.Errorf("%d alerts, want 4 (gas, smoke, leak, tamper; the alarm tests open none): %+v", n, allAlerts(t, r.m))
	}
}

// TestSendCommandRefused: a refused ack ends the command at once (no retry)
// and an action the device's kind lacks is refused before sending.
func TestSendCommandRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.start(func(c *Config) {
		c.Commands = CommandConfig{AckTimeout: 5 * time.Second, MaxTries: 3, Tick: 50 * time.Millisecond}
		c.Rules.Directory = func() Directory {
			return testDirectory{loc: time.UTC, kinds: map[string]string{"leak-9": string(device.WaterLeakSensor), "siren-9": string(device.Siren)}}
		}
	})
	if _, err := r.svc.SendCommand(context.Background(), "demo", "leak-9", device.ActionValveClose, nil, 0, "nurse-1"); err == nil {
		t.Fatal("valve_close to a water-leak sensor was sent")
	}
	id, err := r.svc.SendCommand(context.Background(), "demo", "siren-9", device.ActionSirenSilence, nil, 0, "nurse-1")
	if err != nil {
		t.Fatal(err)
	}
	// The gateway answers the command it got: wait for its first try (a
	// command sent before the command loop is up is queued for its first
	// tick, with no try yet).
	testenv.EventuallyTrue(t, 10*time.Second, "command sent", func() bool {
		cs := r.svc.Commands(0)
		return len(cs) == 1 && cs[0].Tries >= 1
	})
	ack, _ := json.Marshal(device.CommandAck{V: 1, Device: "siren-9", ID: id, TS: time.Now().UnixMilli(), Status: device.AckRefused,
		Reason: device.ReasonUnknownDevice, Error: "no device siren-9 behind gw-1"})
	e.publishRaw(device.CommandAckTopic(e.root, "demo", "siren-9"), ack)
	testenv.EventuallyTrue(t, 10*time.Second, "command failed", func() bool {
		cs := r.svc.Commands(0)
		return len(cs) == 1 && cs[0].State == CommandFailed
	})
	c := r.svc.Commands(0)[0]
	if c.Tries != 1 || !strings.Contains(c.Detail, "unknown_device") || c.Actor != "nurse-1" {
		t.Errorf("command = %+v", c)
	}
}

// The registry's snapshot gives the rules the valves behind a gateway and
// the residents' safe zones.
var (
	_ gatewayDevices = (*registry.Snapshot)(nil)
	_ residentByID   = (*registry.Snapshot)(nil)
)

// TestCommandQueuedBeforeConnect: a command asked for before the command
// loop has a broker connection (a gas event from the persistent session at
// start) is queued and sent at the first tick, not dropped.
func TestCommandQueuedBeforeConnect(t *testing.T) {
	t.Parallel()
	m := openTestManager(t, sqldbtest.SQLiteDSN(t))
	svc, err := New(Config{MQTTURL: "tcp://127.0.0.1:1", ClientID: "q"}, m, nil, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	id, err := svc.SendCommand(context.Background(), "demo", "valve-1", device.ActionValveClose, nil, 0, "")
	if err != nil || id == "" {
		t.Fatalf("SendCommand before Run: %q, %v", id, err)
	}
	if cs := svc.Commands(0); len(cs) != 1 || cs[0].Tries != 0 || cs[0].State != CommandSent {
		t.Fatalf("queued = %+v", cs)
	}
	var sent []string
	svc.cmds.mu.Lock()
	svc.cmds.publish = func(topic string, b []byte) error { sent = append(sent, topic+" "+string(b)); return nil }
	svc.cmds.mu.Unlock()
	if err := svc.commandTimeouts(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(sent) != 1 || !strings.Contains(sent[0], `"id":"`+id+`"`) || !strings.Contains(sent[0], `"action":"valve_close"`) ||
		!strings.HasSuffix(strings.Fields(sent[0])[0], "/demo/valve-1/cmd") {
		t.Fatalf("sent = %q", sent)
	}
}
