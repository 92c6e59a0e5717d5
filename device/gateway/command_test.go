package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/device/gateway/spool"
	"github.com/eldercare-iot/eldercare/device/gateway/zigbee"
	"github.com/eldercare-iot/eldercare/device/modbus"
	firmwaresim "github.com/eldercare-iot/eldercare/firmware-sim"
	"github.com/eldercare-iot/eldercare/firmware-sim/modbussim"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// platform is the platform's side of the command protocol in a test: it
// publishes commands and collects acks, readings and events of one site.
type platform struct {
	t          *testing.T
	c          paho.Client
	root, site string
	mu         sync.Mutex
	acks       map[string]device.CommandAck
	values     []map[string]float64 // per device, in arrival order (keyed "dev")
	events     []string
}

func newPlatform(t *testing.T, url, root, site string) *platform {
	p := &platform{t: t, root: root, site: site, acks: map[string]device.CommandAck{}}
	handler := func(_ paho.Client, m paho.Message) {
		tp, err := device.ParseTopic(root, m.Topic())
		if err != nil {
			return
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		switch tp.Channel {
		case device.ChanCommandAck:
			a, err := device.DecodeCommandAck(m.Payload(), device.Limits{})
			if err != nil {
				t.Errorf("invalid ack from the gateway: %v\n%s", err, m.Payload())
				return
			}
			p.acks[a.ID] = *a
		case device.ChanTelemetry:
			tel, err := device.DecodeTelemetry(m.Payload(), time.Now(), device.Limits{})
			if err != nil {
				t.Errorf("invalid telemetry: %v", err)
				return
			}
			for _, r := range tel.Readings {
				v := map[string]float64{}
				for k, x := range r.Values {
					v[tel.Device+"."+k] = x
				}
				p.values = append(p.values, v)
			}
		case device.ChanEvent:
			ev, err := device.DecodeEvent(m.Payload(), time.Now(), device.Limits{})
			if err != nil {
				t.Errorf("invalid event: %v", err)
				return
			}
			p.events = append(p.events, ev.Device+":"+string(ev.Type))
		}
	}
	c, err := mqttconn.Connect(context.Background(), mqttconn.Options{URL: url, ClientID: testenv.ClientID(t, "platform"),
		CleanSession: true, DefaultHandler: handler, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := mqttconn.Wait(context.Background(), c.Subscribe(root+"/v1/#", 1, handler), 5*time.Second, "subscribe"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Disconnect(100) })
	p.c = c
	return p
}

// send publishes a command built with device.NewCommand on its device's
// cmd topic.
func (p *platform) send(id, dev string, a device.Action, params map[string]any, ttl time.Duration) {
	p.t.Helper()
	cmd, err := device.NewCommand(id, dev, a, params, time.Now(), ttl)
	if err != nil {
		p.t.Fatal(err)
	}
	b, _ := json.Marshal(cmd)
	if err := mqttconn.Wait(context.Background(), p.c.Publish(device.CommandTopic(p.root, p.site, dev), 1, false, b), 5*time.Second, "publish command"); err != nil {
		p.t.Fatal(err)
	}
}

// ack waits for the ack of command id.
func (p *platform) ack(id string) device.CommandAck {
	p.t.Helper()
	var a device.CommandAck
	testenv.EventuallyTrue(p.t, 15*time.Second, "the ack of "+id, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		var ok bool
		a, ok = p.acks[id]
		return ok
	})
	return a
}

// reading waits for a reading in which key ("dev.field") has value want.
func (p *platform) reading(key string, want float64, timeout time.Duration) {
	p.t.Helper()
	testenv.EventuallyTrue(p.t, timeout, fmt.Sprintf("a reading %s = %g", key, want), func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, v := range p.values {
			if x, ok := v[key]; ok && x == want {
				return true
			}
		}
		return false
	})
}

// waitCommandsSubscribed waits until the gateway answers a ping on dev's
// cmd topic: its command subscription is in place.
func (p *platform) waitCommandsSubscribed(dev string) {
	p.t.Helper()
	testenv.EventuallyTrue(p.t, 15*time.Second, "the gateway's command subscription", func() bool {
		id := fmt.Sprintf("ping-%d", time.Now().UnixNano())
		p.send(id, dev, device.ActionPing, nil, 0)
		deadline := time.Now().Add(500 * time.Millisecond)
		for time.Now().Before(deadline) {
			p.mu.Lock()
			a, ok := p.acks[id]
			p.mu.Unlock()
			if ok {
				if a.Status != device.AckAccepted {
					p.t.Fatalf("ping: %+v", a)
				}
				return true
			}
			time.Sleep(20 * time.Millisecond)
		}
		return false
	})
}

// valveLines writes the RTX ZVG1 state messages of the real safety-kit
// payloads (zigbee2mqtt.io PR #1538) to a replay file of their own.
func valveLines(t *testing.T) string {
	t.Helper()
	src := filepath.Join(testenv.RealData(t), "zigbee2mqtt", "real_payloads_safety_kit.jsonl")
	f, err := os.Open(src)
	if err != nil {
		t.Skipf("real safety-kit payloads not found: %v", err)
	}
	defer f.Close()
	var out strings.Builder
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	n := 0
	for sc.Scan() {
		if strings.Contains(sc.Text(), `"topic": "zigbee2mqtt/arrosage_2"`) {
			out.WriteString(sc.Text() + "\n")
			n++
		}
	}
	if n != 2 {
		t.Fatalf("%d ZVG1 state lines in %s, want 2", n, src)
	}
	p := filepath.Join(t.TempDir(), "zvg1.jsonl")
	if err := os.WriteFile(p, []byte(out.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCommandZigbeeValve: commands from the platform go through a real
// broker and the real gateway and zigbee2mqtt source to a simulated ZVG1
// valve (firmware-sim's replayer answering /set with its new state, as
// zigbee2mqtt does); each is acknowledged and the valve's next state
// confirms it. A command the valve does not accept, one that expired and a
// retry are answered too.
func TestCommandZigbeeValve(t *testing.T) {
	file := valveLines(t)
	url := testenv.EmbeddedBroker(t).URL()
	root := testenv.TopicRoot(t)
	base := root + "/zigbee2mqtt"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	p := newPlatform(t, url, root, "home-1")
	src, err := zigbee.New(zigbee.Config{MQTTURL: url, BaseTopic: base, ClientID: testenv.ClientID(t, "z2m"),
		Devices: []zigbee.Device{{FriendlyName: "arrosage_2", ID: "valve-1", Kind: device.Valve, Model: "ZVG1"}}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	g, err := New(Config{ID: "gw-1", Site: "home-1", Root: root, MQTTURL: url, ClientID: testenv.ClientID(t, "gw"),
		Devices: []Device{{ID: "valve-1", Kind: device.Valve}}}, openSpool(t, "", spool.Config{}), nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	g.SetActuator(src, "valve-1")
	run(t, g)
	srcDone := make(chan error, 1)
	go func() { srcDone <- src.Run(ctx, g) }()
	defer func() { cancel(); <-srcDone }()
	p.waitCommandsSubscribed("valve-1")

	simDone := make(chan error, 1)
	go func() {
		_, err := firmwaresim.RunZigbee(ctx, firmwaresim.ZigbeeConfig{MQTTURL: url, BaseTopic: base, File: file, Interval: 0,
			Answer: true, Logger: testLogger(t)})
		simDone <- err
	}()
	defer func() { cancel(); <-simDone }()
	// The replayer answers /set once it has subscribed: probe it with a
	// /set of a device of its own until it answers. (The replayed state
	// may come before the zigbee2mqtt source subscribed, so the test does
	// not wait for it.)
	probed := make(chan struct{}, 1)
	p.c.Subscribe(base+"/probe", 1, func(paho.Client, paho.Message) {
		select {
		case probed <- struct{}{}:
		default:
		}
	}).WaitTimeout(5 * time.Second)
	testenv.EventuallyTrue(t, 15*time.Second, "the replayer's /set subscription", func() bool {
		p.c.Publish(base+"/probe/set", 1, false, `{"state":"ON"}`).WaitTimeout(5 * time.Second)
		select {
		case <-probed:
			return true
		case <-time.After(200 * time.Millisecond):
			return false
		}
	})

	p.send("c-open", "valve-1", device.ActionValveOpen, nil, time.Minute)
	if a := p.ack("c-open"); a.Status != device.AckAccepted || a.Action != device.ActionValveOpen || a.Device != "valve-1" {
		t.Fatalf("ack of valve_open: %+v", a)
	}
	p.reading("valve-1.valve_open", 1, 15*time.Second)

	p.send("c-close", "valve-1", device.ActionValveClose, nil, time.Minute)
	if a := p.ack("c-close"); a.Status != device.AckAccepted {
		t.Fatalf("ack of valve_close: %+v", a)
	}
	testenv.EventuallyTrue(t, 15*time.Second, "the valve_closed event", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		// valve_opened too when the replayed closed state arrived first
		// (the first state seen after start raises no event).
		return strings.HasSuffix(strings.Join(p.events, ","), "valve-1:valve_closed")
	})
	p.reading("valve-1.valve_open", 0, 15*time.Second)

	// A valve has no self test: refused, with the reason.
	p.send("c-test", "valve-1", device.ActionAlarmTest, nil, time.Minute)
	if a := p.ack("c-test"); a.Status != device.AckRefused || a.Reason != device.ReasonUnsupported || a.Error == "" {
		t.Errorf("ack of alarm_test on a valve: %+v", a)
	}
	// Expired before it arrived: refused, not executed.
	cmd := device.Command{V: 1, ID: "c-old", TS: time.Now().Add(-2 * time.Minute).UnixMilli(), Device: "valve-1",
		Action: device.ActionValveOpen, Expires: time.Now().Add(-time.Minute).UnixMilli()}
	b, _ := json.Marshal(cmd)
	p.c.Publish(device.CommandTopic(root, "home-1", "valve-1"), 1, false, b).WaitTimeout(5 * time.Second)
	if a := p.ack("c-old"); a.Status != device.AckRefused || a.Reason != device.ReasonExpired {
		t.Errorf("ack of an expired command: %+v", a)
	}
	// A retry of c-close (same id) is answered again, not re-executed.
	p.mu.Lock()
	delete(p.acks, "c-close")
	p.mu.Unlock()
	p.send("c-close", "valve-1", device.ActionValveClose, nil, time.Minute)
	if a := p.ack("c-close"); a.Status != device.AckAccepted {
		t.Errorf("ack of the retry: %+v", a)
	}
	if n := testutil.ToFloat64(g.m.commands.WithLabelValues("repeat")); n != 1 {
		t.Errorf("repeats = %v, want 1", n)
	}
	// A device not behind this gateway (its topic is not subscribed, so
	// only a direct call reaches it).
	if err := g.execute(context.Background(), "valve-9", device.Command{V: 1, ID: "x", TS: 1, Device: "valve-9", Action: device.ActionValveClose}, time.Now()); device.AckFor(device.Command{}, "valve-9", time.Now(), err).Reason != device.ReasonUnknownDevice {
		t.Errorf("command for a device not behind the gateway: %v, want refused unknown_device", err)
	}
}

// TestCommandModbusWrite: a setpoint command goes through a real broker and
// the real gateway to the Modbus poller and firmware-sim's Modbus server:
// a register the profile declares writable is written (the simulator's
// holding register changes, the ack says accepted and the next poll reads
// the new value); a register the profile does not declare writable is
// refused with reason not_writable and a message naming it, and nothing is
// written.
func TestCommandModbusWrite(t *testing.T) {
	url := testenv.EmbeddedBroker(t).URL()
	root := testenv.TopicRoot(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	sim := modbussim.New(modbussim.TCP, testLogger(t))
	if err := sim.AddModel(modbussim.SenseairS8, 1); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	simDone := make(chan error, 1)
	go func() { simDone <- sim.Run(ctx, ln) }()
	defer func() { cancel(); <-simDone }()

	// The shipped Senseair S8 map, polled every 300 ms for the test.
	prof := filepath.Join(t.TempDir(), "s8.yaml")
	os.WriteFile(prof, []byte(`device: Senseair S8
kind: env_sensor
slave: 1
poll_interval: 300ms
registers:
  - {field: co2_ppm, function: 0x04, address: 0x0003, type: i16, unit: ppm, range: [0, 10000]}
  - {field: abc_period_h, function: 0x03, address: 0x001F, type: u16, unit: h, range: [0, 65535], writable: true}
`), 0o644)
	poller, err := modbus.New(modbus.Config{Buses: []modbus.BusConfig{{Name: "bus-1", Transport: modbus.TCP, Address: ln.Addr().String(),
		Devices: []modbus.DeviceConfig{{ID: "co2-1", Profile: prof}}}}}, nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	p := newPlatform(t, url, root, "station-1")
	g, err := New(Config{ID: "gw-2", Site: "station-1", Root: root, MQTTURL: url, ClientID: testenv.ClientID(t, "gw"),
		Devices: []Device{{ID: "co2-1", Kind: device.EnvSensor, Interval: 300 * time.Millisecond}}}, openSpool(t, "", spool.Config{}), nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	g.SetActuator(poller, "co2-1")
	run(t, g)
	pollDone := make(chan error, 1)
	go func() { pollDone <- poller.Run(ctx, g) }()
	defer func() { cancel(); <-pollDone }()
	p.waitCommandsSubscribed("co2-1")
	p.reading("co2-1.abc_period_h", 180, 15*time.Second)

	p.send("w-1", "co2-1", device.ActionSetpoint, map[string]any{"field": "abc_period_h", "value": 0}, time.Minute)
	if a := p.ack("w-1"); a.Status != device.AckAccepted {
		t.Fatalf("ack of the write: %+v", a)
	}
	p.reading("co2-1.abc_period_h", 0, 15*time.Second)

	p.send("w-2", "co2-1", device.ActionSetpoint, map[string]any{"field": "co2_ppm", "value": 400}, time.Minute)
	a := p.ack("w-2")
	wantErr := "register co2_ppm (input registers address 3) is not writable in profile Senseair S8"
	if a.Status != device.AckRefused || a.Reason != device.ReasonNotWritable || a.Error != wantErr {
		t.Errorf("ack of a write to an input register: %+v, want refused not_writable %q", a, wantErr)
	}
	p.send("w-3", "co2-1", device.ActionSetpoint, map[string]any{"field": "abc_period_h", "value": 70000}, time.Minute)
	if a := p.ack("w-3"); a.Status != device.AckRefused || a.Reason != device.ReasonBadParams {
		t.Errorf("ack of an out-of-range write: %+v", a)
	}
	if st := sim.Stats(); st.Writes != 1 {
		t.Errorf("simulator saw %d writes, want 1 (refused commands write nothing)", st.Writes)
	}
}
