package gateway

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/device/gateway/spool"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// TestLocalAlarmSurvivesRestart: an SOS held as a local alarm is kept in
// the spool file, so a gateway restarted (or powered off) before the
// platform's call_acknowledged still holds it, with its first type and
// time; the acknowledgement after the restart clears it for good, and a
// later restart does not bring it back. Before the fix the held alarms
// lived in memory only: a restart silenced an unacknowledged fall.
func TestLocalAlarmSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool.db")
	cfg := Config{ID: "gw-1", Site: "home-1", MQTTURL: "tcp://127.0.0.1:1",
		Devices: []Device{{ID: "sos-2", Kind: device.SOSButton}, {ID: "pir-1", Kind: device.Other}}}
	start := func() (*Gateway, *spool.Spool) {
		sp, err := spool.Open(context.Background(), spool.Config{Path: path}, nil, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		g, err := New(cfg, sp, nil, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		return g, sp
	}
	g, sp := start()
	ts := tbase
	if err := g.Event(context.Background(), "sos-2", ts, device.EventSOS, nil); err != nil {
		t.Fatal(err)
	}
	// A fall of the same device while held keeps the first type and time.
	if err := g.Event(context.Background(), "sos-2", ts.Add(time.Second), device.EventFall, nil); err != nil {
		t.Fatal(err)
	}
	before := g.LocalAlarms()
	if len(before) != 1 || before[0].Type != device.EventSOS {
		t.Fatalf("held before the restart: %+v", before)
	}
	sp.Close()

	g, sp = start()
	after := g.LocalAlarms()
	if len(after) != 1 || after[0].Device != "sos-2" || after[0].Type != device.EventSOS || !after[0].Since.Equal(before[0].Since.Truncate(time.Millisecond)) {
		t.Fatalf("held after the restart: %+v, want %+v", after, before)
	}
	// An acknowledgement for another device leaves it.
	if n := g.callAcknowledged("pir-1", device.Command{ID: "assure-1", Action: device.ActionCallAcknowledged}); n != 0 {
		t.Fatalf("call_acknowledged of pir-1 cleared %d alarms", n)
	}
	if n := g.callAcknowledged("sos-2", device.Command{ID: "assure-2", Action: device.ActionCallAcknowledged}); n != 1 {
		t.Fatalf("call_acknowledged of sos-2 cleared %d alarms, want 1", n)
	}
	sp.Close()

	g, sp = start()
	defer sp.Close()
	if got := g.LocalAlarms(); len(got) != 0 {
		t.Fatalf("held after an acknowledgement and a restart: %+v, want none", got)
	}
}

// TestLateCallAcknowledged: the uplink was down past the call_acknowledged
// command's expiry. The late command still clears the local alarm held
// from before it (someone did acknowledge the call; before the fix the
// alarm was held for ever, and with it kept on disk, across restarts too),
// while the ack says expired (the device does not show "help is coming"
// late). A call_acknowledged whose ts is older than an alarm by more than
// CallAckSkew (a new fall after the acknowledged one, then a stale or
// redelivered command) leaves that alarm held.
func TestLateCallAcknowledged(t *testing.T) {
	g := newTestGateway(t, Config{ID: "gw-1", Site: "home-1", MQTTURL: "tcp://127.0.0.1:1",
		Devices: []Device{{ID: "sos-2", Kind: device.SOSButton}}})
	now := tbase
	g.now = func() time.Time { return now }
	g.holdAlarm("sos-2", device.EventSOS)
	ackAt := tbase.Add(40 * time.Second)
	cmd := device.Command{V: 1, ID: "assure-7", TS: ackAt.UnixMilli(), Device: "sos-2", Action: device.ActionCallAcknowledged,
		Params: map[string]any{"alert": 7.0, "type": "sos", "by": "nurse"}, Expires: ackAt.Add(10 * time.Minute).UnixMilli()}
	now = tbase.Add(25 * time.Minute)
	err := g.execute(context.Background(), "sos-2", cmd, now)
	if a := device.AckFor(cmd, "sos-2", now, err); a.Status != device.AckRefused || a.Reason != device.ReasonExpired {
		t.Errorf("late call_acknowledged answered %+v, want refused expired", a)
	}
	if got := g.LocalAlarms(); len(got) != 0 {
		t.Fatalf("held after a late call_acknowledged: %+v, want none", got)
	}

	// A new SOS at +25 min; then the same acknowledgement again (a
	// redelivery under a new id, or after the gateway forgot its acks).
	g.holdAlarm("sos-2", device.EventSOS)
	cmd.ID = "assure-7-again"
	now = tbase.Add(26 * time.Minute)
	g.execute(context.Background(), "sos-2", cmd, now)
	if got := g.LocalAlarms(); len(got) != 1 || !got[0].Since.Equal(tbase.Add(25*time.Minute)) {
		t.Fatalf("held after a stale call_acknowledged for an earlier call: %+v, want the new SOS still held", got)
	}
	// Its own acknowledgement clears it.
	ack2 := now.Add(10 * time.Second)
	cmd = device.Command{V: 1, ID: "assure-8", TS: ack2.UnixMilli(), Device: "sos-2", Action: device.ActionCallAcknowledged,
		Expires: ack2.Add(10 * time.Minute).UnixMilli()}
	now = ack2.Add(time.Second)
	g.execute(context.Background(), "sos-2", cmd, now)
	if got := g.LocalAlarms(); len(got) != 0 {
		t.Fatalf("held after its own call_acknowledged: %+v", got)
	}
}

// failingSpool refuses every event (a full or broken disk).
type failingSpool struct{ *spool.Spool }

func (failingSpool) AddEvent(context.Context, string, time.Time, device.EventType, map[string]any) (spool.Entry, error) {
	return spool.Entry{}, errors.New("disk I/O error")
}

// TestUnspooledSOSHeldAsLocalAlarm: an SOS the spool cannot take (disk
// error) is refused to the source and raised on the local alarm path, and
// also held as an active local alarm, so the gateway's heartbeat and
// eldercare_gateway_local_alarms_active show it: the platform may never
// hear of it. Before the fix only a spooled event was held.
func TestUnspooledSOSHeldAsLocalAlarm(t *testing.T) {
	cfg := Config{ID: "gw-1", Site: "home-1", MQTTURL: "tcp://127.0.0.1:1", Devices: []Device{{ID: "sos-2", Kind: device.SOSButton}}}
	g, err := New(cfg, failingSpool{openSpool(t, "", spool.Config{})}, nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Event(context.Background(), "sos-2", tbase, device.EventSOS, nil); err == nil {
		t.Fatal("an unspooled event was accepted")
	}
	if got := g.LocalAlarms(); len(got) != 1 || got[0].Device != "sos-2" || got[0].Type != device.EventSOS {
		t.Fatalf("local alarms %+v, want the unspooled SOS held", got)
	}
}

// TestUnlistedDeviceCallAcknowledged: a device not in the gateway's config
// (paired later) raises an SOS while the uplink is up. The gateway holds
// its local alarm and subscribes to its command topic at once, so the
// platform's call_acknowledged stops the alarm. Before the fix the topic
// was subscribed only at the next reconnect: the alarm stayed on.
func TestUnlistedDeviceCallAcknowledged(t *testing.T) {
	url := testenv.EmbeddedBroker(t).URL()
	root := testenv.TopicRoot(t)
	p := newPlatform(t, url, root, "home-1")
	g, err := New(Config{ID: "gw-1", Site: "home-1", Root: root, MQTTURL: url, ClientID: testenv.ClientID(t, "gw"),
		Devices: []Device{{ID: "pir-1", Kind: device.Other}}}, openSpool(t, "", spool.Config{}), nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	run(t, g)
	p.waitCommandsSubscribed("pir-1")
	if err := g.Event(context.Background(), "sos-new", time.Now(), device.EventSOS, nil); err != nil {
		t.Fatal(err)
	}
	if got := g.LocalAlarms(); len(got) != 1 || got[0].Device != "sos-new" {
		t.Fatalf("local alarms %+v", got)
	}
	testenv.EventuallyTrue(t, 15*time.Second, "call_acknowledged of the unlisted device answered", func() bool {
		id := fmt.Sprintf("assure-%d", time.Now().UnixNano())
		p.send(id, "sos-new", device.ActionCallAcknowledged, map[string]any{"by": "nurse"}, time.Minute)
		deadline := time.Now().Add(500 * time.Millisecond)
		for time.Now().Before(deadline) {
			p.mu.Lock()
			_, ok := p.acks[id]
			p.mu.Unlock()
			if ok {
				return true
			}
			time.Sleep(20 * time.Millisecond)
		}
		return false
	})
	if got := g.LocalAlarms(); len(got) != 0 {
		t.Fatalf("local alarms after call_acknowledged: %+v", got)
	}
}

// The heartbeat's report carries a held alarm's type and since (ms), the
// time alerting needs to tell a call it never received from one it has.
func TestReportLocalAlarmSince(t *testing.T) {
	g := newTestGateway(t, Config{ID: "gw-1", Site: "home-1", MQTTURL: "tcp://127.0.0.1:1",
		Devices: []Device{{ID: "sos-2", Kind: device.SOSButton}}})
	g.now = func() time.Time { return tbase }
	if err := g.Event(context.Background(), "sos-2", tbase, device.EventSOS, nil); err != nil {
		t.Fatal(err)
	}
	var got *device.DeviceReport
	for _, r := range g.report(tbase.Add(time.Minute)) {
		if r.Device == "sos-2" {
			got = &r
		}
	}
	if got == nil || got.LocalAlarm != device.EventSOS || got.LocalAlarmSince != tbase.UnixMilli() {
		t.Fatalf("report %+v, want local_alarm sos since %d", got, tbase.UnixMilli())
	}
}
