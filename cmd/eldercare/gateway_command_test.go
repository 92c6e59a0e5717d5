package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/eldercare-iot/eldercare/device"
	firmwaresim "github.com/eldercare-iot/eldercare/firmware-sim"
	"github.com/eldercare-iot/eldercare/firmware-sim/modbussim"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// TestGatewayCommands runs `eldercare gateway` from a gateway file with a
// Modbus bus (firmware-sim's Senseair S8) and a zigbee2mqtt valve
// (firmware-sim's replayer answering /set), and sends it commands through
// the machine's Mosquitto as the platform would: a valve_close reaches
// zigbee2mqtt and the valve's new state comes back, a setpoint on the S8's
// writable ABC period is written, a setpoint on its CO2 input register is
// refused not_writable.
func TestGatewayCommands(t *testing.T) {
	t.Parallel()
	data := testenv.RealData(t)
	mq := testenv.Mosquitto(t) // not the embedded broker: mochi v2.7.9 races (-race) on retained messages, which zigbee2mqtt uses
	root := testenv.TopicRoot(t)
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	modbusAddr, profile := modbusSimTCP(ctx, t, dir, modbussim.SenseairS8, "300ms")

	// The ZVG1 valve's real state messages (zigbee2mqtt.io PR #1538).
	var valve strings.Builder
	b, err := os.ReadFile(filepath.Join(data, "zigbee2mqtt", "real_payloads_safety_kit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, `"topic": "zigbee2mqtt/arrosage_2"`) {
			valve.WriteString(l + "\n")
		}
	}
	replay := filepath.Join(dir, "zvg1.jsonl")
	os.WriteFile(replay, []byte(valve.String()), 0o600)
	base := root + "/zigbee2mqtt"

	gwFile := filepath.Join(dir, "gateway.yaml")
	os.WriteFile(gwFile, []byte(fmt.Sprintf(`id: gw-1
site: home-1
modbus:
  buses:
    - {name: b, transport: tcp, address: %q, timeout: 1s, devices: [{id: co2-1, profile: %q, slave: 1}]}
zigbee2mqtt:
  mqtt: %s
  base_topic: %s
  client_id: %s
  devices:
    - {friendly_name: arrosage_2, device: valve-1, kind: valve, model: ZVG1}
`, modbusAddr, profile, mq, base, testenv.ClientID(t, "z2m"))), 0o600)

	// The platform's side: acks and readings.
	var mu sync.Mutex
	acks := map[string]device.CommandAck{}
	values := map[string]float64{}
	handler := func(_ paho.Client, m paho.Message) {
		tp, err := device.ParseTopic(root, m.Topic())
		if err != nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		switch tp.Channel {
		case device.ChanCommandAck:
			if a, err := device.DecodeCommandAck(m.Payload(), device.Limits{}); err == nil {
				acks[a.ID] = *a
			} else {
				t.Errorf("invalid ack: %v", err)
			}
		case device.ChanTelemetry:
			if tel, err := device.DecodeTelemetry(m.Payload(), time.Now(), device.Limits{}); err == nil {
				for _, r := range tel.Readings {
					for k, v := range r.Values {
						values[tel.Device+"."+k] = v
					}
				}
			}
		}
	}
	pc, err := mqttconn.Connect(ctx, mqttconn.Options{URL: mq, ClientID: testenv.ClientID(t, "platform"), CleanSession: true, DefaultHandler: handler})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Disconnect(100)
	if err := mqttconn.Wait(ctx, pc.Subscribe(root+"/v1/#", 1, handler), 5*time.Second, "subscribe"); err != nil {
		t.Fatal(err)
	}

	startRole(t, "gateway", "--gateway-config", gwFile, "--mqtt", mq, "--root", root,
		"--client-id", testenv.ClientID(t, "gw-1"), "--spool", filepath.Join(dir, "spool.db"), "--http", "127.0.0.1:0", "--log-level", "warn")
	// No interval: the two recorded states (valve closed) go out at once,
	// before the probe below can be answered, so on the replayer's one
	// connection they precede every answer to a command. With 200 ms
	// between them a recorded "OFF" could follow the answer to valve_open.
	go firmwaresim.RunZigbee(ctx, firmwaresim.ZigbeeConfig{MQTTURL: mq, BaseTopic: base, File: replay,
		Answer: true, Logger: slog.New(slog.DiscardHandler)})

	send := func(id, dev string, a device.Action, params map[string]any) device.CommandAck {
		t.Helper()
		c, err := device.NewCommand(id, dev, a, params, time.Now(), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(c)
		var ack device.CommandAck
		deadline := time.Now().Add(30 * time.Second)
		for {
			// Resend until the gateway's subscription is in place (the
			// gateway answers a repeat from its recent acks).
			pc.Publish(device.CommandTopic(root, "home-1", dev), 1, false, b).WaitTimeout(5 * time.Second)
			for range 25 {
				mu.Lock()
				a, ok := acks[id]
				mu.Unlock()
				if ok {
					return a
				}
				time.Sleep(20 * time.Millisecond)
			}
			if time.Now().After(deadline) {
				t.Fatalf("no ack of %s", id)
				return ack
			}
		}
	}
	waitValue := func(key string, want float64) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			mu.Lock()
			v, ok := values[key]
			mu.Unlock()
			if ok && v == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s = %v (seen %v), want %g", key, v, ok, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	// The replayer answers /set once it has subscribed: probe it with a
	// /set of a device of its own until it answers.
	probed := make(chan struct{}, 1)
	pc.Subscribe(base+"/probe", 1, func(paho.Client, paho.Message) {
		select {
		case probed <- struct{}{}:
		default:
		}
	}).WaitTimeout(5 * time.Second)
	for done := false; !done; {
		pc.Publish(base+"/probe/set", 1, false, `{"state":"ON"}`).WaitTimeout(5 * time.Second)
		select {
		case <-probed:
			done = true
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			t.Fatal("cancelled")
		}
	}
	if a := send("open-1", "valve-1", device.ActionValveOpen, nil); a.Status != device.AckAccepted {
		t.Fatalf("valve_open: %+v", a)
	}
	waitValue("valve-1.valve_open", 1)
	if a := send("close-1", "valve-1", device.ActionValveClose, nil); a.Status != device.AckAccepted {
		t.Fatalf("valve_close: %+v", a)
	}
	waitValue("valve-1.valve_open", 0)

	waitValue("co2-1.abc_period_h", 180)
	if a := send("w-1", "co2-1", device.ActionSetpoint, map[string]any{"field": "abc_period_h", "value": 24}); a.Status != device.AckAccepted {
		t.Fatalf("setpoint abc_period_h: %+v", a)
	}
	waitValue("co2-1.abc_period_h", 24)
	a := send("w-2", "co2-1", device.ActionSetpoint, map[string]any{"field": "co2_ppm", "value": 400})
	if a.Status != device.AckRefused || a.Reason != device.ReasonNotWritable ||
		a.Error != "register co2_ppm (input registers address 3) is not writable in profile Senseair S8" {
		t.Errorf("setpoint co2_ppm: %+v", a)
	}
}
