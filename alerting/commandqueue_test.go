package alerting

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/internal/sqldb/sqldbtest"
)

// TestRequestedCommand: a command requested through the store (a
// dashboard in another process) is claimed and sent by the running
// service on the device's command topic; its acknowledgement and the
// valve's new state show in Manager.Commands.
func TestRequestedCommand(t *testing.T) {
	e := newEnv(t)
	r := e.start(func(c *Config) { c.Commands = CommandConfig{Tick: 50 * time.Millisecond} })
	got := make(chan device.Command, 4)
	topic := device.CommandTopic(e.root, "demo", "valve-1")
	if tok := e.pub.Subscribe(topic, 1, func(_ paho.Client, m paho.Message) {
		var c device.Command
		if json.Unmarshal(m.Payload(), &c) == nil {
			got <- c
		}
	}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	ctx := context.Background()
	if _, err := r.m.SendCommand(ctx, "demo", "valve-1", device.Action("explode"), nil, 0, "ada"); err == nil {
		t.Error("an unknown action was requested")
	}
	id, err := r.m.SendCommand(ctx, "demo", "valve-1", device.ActionValveClose, nil, 0, "ada")
	if err != nil {
		t.Fatal(err)
	}
	state := func() CommandState {
		for _, c := range r.m.Commands(0) {
			if c.ID == id {
				return c.State
			}
		}
		return ""
	}
	select {
	case c := <-got:
		if c.ID != id || c.Action != device.ActionValveClose {
			t.Fatalf("command %+v", c)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the requested command was not sent (state %q)", state())
	}
	eventually(t, 5*time.Second, "sent", func() bool { return state() == CommandSent })
	now := time.Now()
	e.publish("valve-1", device.ChanCommandAck, device.CommandAck{V: 1, Device: "valve-1", ID: id, TS: now.UnixMilli(), Status: device.AckAccepted})
	eventually(t, 10*time.Second, "acknowledged", func() bool { return state() == CommandAcknowledged })
	e.publish("valve-1", device.ChanTelemetry, device.Telemetry{V: 1, Device: "valve-1", Boot: 1, ID: 1, Seq: 1, TS: now.UnixMilli(),
		Values: map[string]float64{"valve_open": 0}})
	eventually(t, 10*time.Second, "confirmed", func() bool { return state() == CommandConfirmed })
	if cs := r.m.Commands(0); len(cs) != 1 || cs[0].Actor != "ada" || cs[0].Tries != 1 {
		t.Errorf("commands %+v", cs)
	}
}

// TestCommandQueueStore: requesting, claiming once, recording states and
// listing, on SQLite and PostgreSQL.
func TestCommandQueueStore(t *testing.T) {
	sqldbtest.Dialects(t, func(t *testing.T, dsn string) {
		m := openTestManager(t, dsn)
		ctx := context.Background()
		id, err := m.SendCommand(ctx, "s", "valve-1", device.ActionValveClose, map[string]any{"x": 1.0}, 7, "ada")
		if err != nil {
			t.Fatal(err)
		}
		qs, err := m.claimCommands(ctx)
		if err != nil || len(qs) != 1 || qs[0].id != id || qs[0].alertID != 7 || qs[0].params["x"] != 1.0 {
			t.Fatalf("claimed %+v %v", qs, err)
		}
		if again, err := m.claimCommands(ctx); err != nil || len(again) != 0 {
			t.Errorf("claimed twice: %+v %v", again, err)
		}
		st := CommandStatus{ID: id, Site: "s", Device: "valve-1", Action: device.ActionValveClose, AlertID: 7, Actor: "ada",
			State: CommandAcknowledged, Tries: 2, Detail: "gateway answered accepted", Updated: time.Now()}
		if err := m.putCommandState(ctx, st); err != nil {
			t.Fatal(err)
		}
		cs := m.Commands(7)
		if len(cs) != 1 || cs[0].State != CommandAcknowledged || cs[0].Tries != 2 || cs[0].Detail != st.Detail {
			t.Errorf("commands %+v", cs)
		}
		if cs := m.Commands(8); len(cs) != 0 {
			t.Errorf("commands of another alert %+v", cs)
		}
	})
}
