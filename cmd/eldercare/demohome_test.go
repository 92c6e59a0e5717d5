package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/device/registry"
	firmwaresim "github.com/eldercare-iot/eldercare/firmware-sim"
	"github.com/eldercare-iot/eldercare/internal/broker"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
	"github.com/eldercare-iot/eldercare/internal/sqldb"
	"github.com/eldercare-iot/eldercare/internal/sqldb/sqldbtest"
)

// TestDemoHomeBehindGateway: `up --demo`'s home runs behind its simulated
// gateway: the gateway is registered with the home's devices behind it,
// its heartbeat lists them, their readings arrive on their topics, and a
// valve_close command is acknowledged by the gateway and confirmed by the
// valve's new state.
func TestDemoHomeBehindGateway(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := slog.New(slog.DiscardHandler)
	brk, err := broker.Start(broker.Config{Addr: "127.0.0.1:0", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer brk.Close()
	db, err := sqldb.Open(ctx, sqldbtest.SQLiteDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	store, err := registry.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := registry.ParseYAML(strings.NewReader(string(firmwaresim.DemoRegistryYAML)))
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Import(ctx, doc); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[string]string{} // topic -> last payload
	sub, err := mqttconn.Connect(ctx, mqttconn.Options{URL: brk.URL(), ClientID: "demohome-test", CleanSession: true})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Disconnect(100)
	root := "demohome-test"
	if tok := sub.Subscribe(root+"/v1/"+firmwaresim.DemoHome+"/#", 1, func(_ paho.Client, m paho.Message) {
		mu.Lock()
		seen[m.Topic()] = string(m.Payload())
		mu.Unlock()
	}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	done := make(chan error, 1)
	go func() {
		done <- runDemoHome(ctx, demoHomeConfig{MQTTURL: brk.URL(), Root: root, ClientID: demoHomeGateway, SpoolDir: t.TempDir(),
			Speed: 600, Store: store, Reg: prometheus.NewRegistry(), Log: log})
	}()
	topic := func(dev string, ch device.Channel) string {
		return device.Topic{Root: root, Site: firmwaresim.DemoHome, Device: dev, Channel: ch}.String()
	}
	wait := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				mu.Lock()
				t.Fatalf("%s: not within 15 s; seen %v", what, seen)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	has := func(tp, sub string) func() bool {
		return func() bool { mu.Lock(); defer mu.Unlock(); return strings.Contains(seen[tp], sub) }
	}
	wait("the gateway's status lists the valve", has(topic(demoHomeGateway, device.ChanStatus), "valve-home-li"))
	wait("the valve's reading", has(topic("valve-home-li", device.ChanTelemetry), `"valve_open":1`))
	// Every device of the kit is heard from before its first event (a
	// door contact or card reader that sent nothing until its first
	// opening or check-in stayed "unknown" on the board for minutes).
	for _, dev := range []string{"door-home-li", "cr-home-li"} {
		wait(dev+"'s battery reading", has(topic(dev, device.ChanTelemetry), `"battery_pct"`))
	}
	if x, err := store.Device(ctx, "valve-home-li"); err != nil || x.GatewayID != demoHomeGateway {
		t.Errorf("valve in the registry: %+v %v", x, err)
	}
	cmd, err := device.NewCommand("c-demo-1", "valve-home-li", device.ActionValveClose, nil, time.Now(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(cmd)
	if err := mqttconn.Wait(ctx, sub.Publish(topic("valve-home-li", device.ChanCommand), 1, false, b), 5*time.Second, "publish command"); err != nil {
		t.Fatal(err)
	}
	wait("the gateway's ack", has(topic("valve-home-li", device.ChanCommandAck), `"accepted"`))
	wait("the valve closed", has(topic("valve-home-li", device.ChanTelemetry), `"valve_open":0`))
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("runDemoHome: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("runDemoHome did not stop")
	}
}
