package gateway

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/device/gateway/spool"
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
