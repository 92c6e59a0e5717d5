package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/eldercare-iot/eldercare/alerting"
	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/device/gateway/spool"
	"github.com/eldercare-iot/eldercare/device/gateway/zigbee"
	"github.com/eldercare-iot/eldercare/device/registry"
	firmwaresim "github.com/eldercare-iot/eldercare/firmware-sim"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
	"github.com/eldercare-iot/eldercare/internal/sqldb"
	"github.com/eldercare-iot/eldercare/internal/sqldb/sqldbtest"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// sosLine writes the real Tuya TS0215A_sos "emergency" message
// (zigbee-herdsman-converters #2797) to a replay file of its own.
func sosLine(t *testing.T) string {
	t.Helper()
	src := filepath.Join(testenv.RealData(t), "zigbee2mqtt", "real_payloads_from_github_issues.jsonl")
	f, err := os.Open(src)
	if err != nil {
		t.Skipf("real zigbee2mqtt payloads not found: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), `"topic":"zigbee2mqtt/0x847127fffe0542eb"`) && strings.Contains(sc.Text(), `"action":"emergency"`) {
			p := filepath.Join(t.TempDir(), "sos.jsonl")
			if err := os.WriteFile(p, []byte(sc.Text()+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			return p
		}
	}
	t.Fatalf("no TS0215A_sos emergency line in %s", src)
	return ""
}

// TestCallAssuranceEndToEnd: real broker, real alerting engine and store,
// real gateway runtime with its zigbee2mqtt source, firmware-sim devices.
//
//   - sos-1, firmware-sim's SOS button on its own MQTT connection: its
//     press opens an SOS alert; acknowledging the alert (as the API does,
//     naming the nurse) publishes call_acknowledged on its cmd topic, and
//     the button shows "help is coming" and answers accepted.
//   - sos-2, a Tuya TS0215A_sos behind the gateway (firmware-sim replays
//     its real zigbee2mqtt "emergency" message): the gateway holds a local
//     alarm (heartbeat report local_alarm "sos", metric 1) until the
//     acknowledgement's call_acknowledged reaches it; then the alarm clears
//     (report without it, metric 0, "call_acknowledged" on the local alarm
//     topic) and the ack says the button cannot show it (unsupported).
func TestCallAssuranceEndToEnd(t *testing.T) {
	replay := sosLine(t)
	url := testenv.EmbeddedBroker(t).URL()
	root := testenv.TopicRoot(t)
	const site = "home-1"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := testLogger(t)

	// The platform: alerting on SQLite.
	db, err := sqldb.Open(ctx, sqldbtest.SQLiteDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	m, err := alerting.OpenManager(ctx, db, log)
	if err != nil {
		t.Fatal(err)
	}
	residents := alerting.ResidentsFunc(func(dev string, _ time.Time) (registry.Resident, bool) {
		id := map[string]string{"sos-1": "res-1", "sos-2": "res-2"}[dev]
		return registry.Resident{ID: id, SiteID: site}, id != ""
	})
	svc, err := alerting.New(alerting.Config{MQTTURL: url, Root: root, ClientID: testenv.ClientID(t, "alerting")}, m, residents, prometheus.NewRegistry(), log)
	if err != nil {
		t.Fatal(err)
	}
	svcDone := make(chan error, 1)
	go func() { svcDone <- svc.Run(ctx) }()
	defer func() { cancel(); <-svcDone }()
	testenv.EventuallyTrue(t, 15*time.Second, "alerting subscribed", func() bool { return svc.Ready() == nil })

	p := newPlatform(t, url, root, site) // collects the acks
	var smu sync.Mutex
	var reports []device.DeviceReport
	var cleared []LocalAlarm
	obs, err := mqttconn.Connect(ctx, mqttconn.Options{URL: url, ClientID: testenv.ClientID(t, "observer"), CleanSession: true, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { obs.Disconnect(100) })
	localTopic := root + "/local/alarm"
	if err := mqttconn.Wait(ctx, obs.SubscribeMultiple(map[string]byte{device.Topic{Root: root, Site: site, Device: "gw-1", Channel: device.ChanStatus}.String(): 1, localTopic: 1},
		func(_ paho.Client, msg paho.Message) {
			smu.Lock()
			defer smu.Unlock()
			if msg.Topic() == localTopic {
				var a LocalAlarm
				if json.Unmarshal(msg.Payload(), &a) == nil && a.Reason == ReasonCallAcknowledged {
					cleared = append(cleared, a)
				}
				return
			}
			var st device.Status
			if json.Unmarshal(msg.Payload(), &st) == nil {
				reports = append(reports, st.Report...)
			}
		}), 5*time.Second, "subscribe"); err != nil {
		t.Fatal(err)
	}
	reported := func(alarm device.EventType) bool {
		smu.Lock()
		defer smu.Unlock()
		for i := len(reports) - 1; i >= 0; i-- {
			if reports[i].Device == "sos-2" {
				return reports[i].LocalAlarm == alarm
			}
		}
		return false
	}

	// The gateway with sos-2 behind it, through zigbee2mqtt.
	base := root + "/zigbee2mqtt"
	src, err := zigbee.New(zigbee.Config{MQTTURL: url, BaseTopic: base, ClientID: testenv.ClientID(t, "z2m"),
		Devices: []zigbee.Device{{FriendlyName: "0x847127fffe0542eb", ID: "sos-2", Kind: device.SOSButton, Model: "TS0215A_sos"}}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	g, err := New(Config{ID: "gw-1", Site: site, Root: root, MQTTURL: url, ClientID: testenv.ClientID(t, "gw"), LocalMQTTURL: url,
		LocalAlarmTopic: localTopic, Devices: []Device{{ID: "sos-2", Kind: device.SOSButton}}}, openSpool(t, "", spool.Config{}), nil, log)
	if err != nil {
		t.Fatal(err)
	}
	g.SetActuator(src, "sos-2")
	run(t, g)
	srcDone := make(chan error, 1)
	go func() { srcDone <- src.Run(ctx, g) }()
	defer func() { cancel(); <-srcDone }()
	p.waitCommandsSubscribed("sos-2")

	// sos-2 pressed: the replayer publishes the real message until the
	// gateway took it (the source may subscribe after the first replay).
	testenv.EventuallyTrue(t, 20*time.Second, "the gateway's local alarm for sos-2", func() bool {
		if len(g.LocalAlarms()) == 0 {
			if _, err := firmwaresim.RunZigbee(ctx, firmwaresim.ZigbeeConfig{MQTTURL: url, BaseTopic: base, File: replay, Logger: log}); err != nil {
				t.Fatal(err)
			}
			time.Sleep(200 * time.Millisecond)
		}
		return len(g.LocalAlarms()) == 1
	})
	if a := g.LocalAlarms()[0]; a.Device != "sos-2" || a.Type != device.EventSOS {
		t.Fatalf("local alarms %+v", g.LocalAlarms())
	}
	if n := testutil.ToFloat64(g.m.alarmsActive); n != 1 {
		t.Errorf("eldercare_gateway_local_alarms_active = %v, want 1", n)
	}
	testenv.EventuallyTrue(t, 10*time.Second, "local_alarm sos in the gateway's status report", func() bool { return reported(device.EventSOS) })

	// sos-1 pressed: firmware-sim's button, waiting for help.
	help := &firmwaresim.HelpState{}
	simDone := make(chan error, 1)
	go func() {
		simDone <- firmwaresim.RunSOS(ctx, firmwaresim.SOSConfig{DeviceConfig: firmwaresim.DeviceConfig{MQTTURL: url, Root: root, Site: site,
			Device: "sos-1", Logger: log}, AwaitHelp: time.Minute, Help: help})
	}()

	alertOf := func(dev string) alerting.Alert {
		var out alerting.Alert
		testenv.EventuallyTrue(t, 15*time.Second, "the sos alert of "+dev, func() bool {
			as, err := m.List(ctx, alerting.Filter{Status: []string{alerting.StatusOpen}})
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range as {
				if a.Device == dev && a.Type == alerting.TypeSOS {
					out = a
					return true
				}
			}
			return false
		})
		return out
	}
	a1, a2 := alertOf("sos-1"), alertOf("sos-2")
	if help.Coming() {
		t.Fatal("help is coming before anyone acknowledged")
	}

	// A nurse acknowledges both (the store operation of the API's
	// acknowledge, with the acting person named).
	for _, a := range []alerting.Alert{a1, a2} {
		if _, err := m.Acknowledge(ctx, a.ID, "nurse-li", "api"); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-simDone:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the SOS button got no call_acknowledged within 20 s")
	}
	if !help.Coming() || help.Last() == nil || help.Last().Params["by"] != "nurse-li" {
		t.Fatalf("sos-1 shows help coming %v, command %+v", help.Coming(), help.Last())
	}
	if ack := p.ack("assure-" + strconv.FormatInt(a1.ID, 10)); ack.Status != device.AckAccepted || ack.Device != "sos-1" {
		t.Errorf("sos-1's ack %+v, want accepted", ack)
	}

	ack := p.ack("assure-" + strconv.FormatInt(a2.ID, 10))
	if ack.Status != device.AckRefused || ack.Reason != device.ReasonUnsupported || ack.Device != "sos-2" {
		t.Errorf("sos-2's ack %+v, want refused unsupported (a TS0215A_sos cannot show it)", ack)
	}
	if n := len(g.LocalAlarms()); n != 0 {
		t.Errorf("local alarms after call_acknowledged: %+v", g.LocalAlarms())
	}
	if n := testutil.ToFloat64(g.m.alarmsActive); n != 0 {
		t.Errorf("eldercare_gateway_local_alarms_active = %v, want 0", n)
	}
	testenv.EventuallyTrue(t, 10*time.Second, "the status report without the local alarm", func() bool { return reported("") })
	testenv.EventuallyTrue(t, 10*time.Second, "call_acknowledged on the local alarm topic", func() bool {
		smu.Lock()
		defer smu.Unlock()
		return len(cleared) == 1 && cleared[0].Device == "sos-2" && cleared[0].Attrs["by"] == "nurse-li"
	})
}
