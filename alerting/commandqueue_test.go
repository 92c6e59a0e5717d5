package alerting

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/internal/sqldb/sqldbtest"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// TestRequestedCommand: a command requested through the store (a
// dashboard in another process) is claimed and sent by the running
// service on the device's command topic; its acknowledgement and the
// valve's new state show in Manager.Commands.
func TestRequestedCommand(t *testing.T) {
	t.Parallel()
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
	testenv.EventuallyTrue(t, 5*time.Second, "sent", func() bool { return state() == CommandSent })
	now := time.Now()
	e.publish("valve-1", device.ChanCommandAck, device.CommandAck{V: 1, Device: "valve-1", ID: id, TS: now.UnixMilli(), Status: device.AckAccepted})
	testenv.EventuallyTrue(t, 10*time.Second, "acknowledged", func() bool { return state() == CommandAcknowledged })
	e.publish("valve-1", device.ChanTelemetry, device.Telemetry{V: 1, Device: "valve-1", Boot: 1, ID: 1, Seq: 1, TS: now.UnixMilli(),
		Values: map[string]float64{"valve_open": 0}})
	testenv.EventuallyTrue(t, 10*time.Second, "confirmed", func() bool { return state() == CommandConfirmed })
	if cs := r.m.Commands(0); len(cs) != 1 || cs[0].Actor != "ada" || cs[0].Tries != 1 {
		t.Errorf("commands %+v", cs)
	}
}

// TestCommandQueueStore: requesting, claiming once, recording states and
// listing, on SQLite and PostgreSQL.
func TestCommandQueueStore(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, dsn string) {
		t.Parallel()
		m := openTestManager(t, dsn)
		ctx := context.Background()
		id, err := m.SendCommand(ctx, "s", "valve-1", device.ActionValveClose, map[string]any{"x": 1.0}, 7, "ada")
		if err != nil {
			t.Fatal(err)
		}
		qs, err := m.claimCommands(ctx, time.Now().Add(-time.Minute))
		if err != nil || len(qs) != 1 || qs[0].id != id || qs[0].alertID != 7 || qs[0].params["x"] != 1.0 {
			t.Fatalf("claimed %+v %v", qs, err)
		}
		if again, err := m.claimCommands(ctx, time.Now().Add(-time.Minute)); err != nil || len(again) != 0 {
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

// TestCommandsLeftBehindSettled, on SQLite and PostgreSQL: commands that
// no alerting service will finish are failed with a reason instead of
// staying pending for ever or being sent late. A request nobody sent within
// the TTL (alerting was down), and one claimed by a service that stopped
// before sending, fail "not sent"; they are never claimed afterwards. A
// command left "sent" by a service that stopped mid-flight fails "outcome
// unknown" once it has gone longer than any live try without an update. A
// fresh request is still claimed, once.
func TestCommandsLeftBehindSettled(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, dsn string) {
		t.Parallel()
		ctx := context.Background()
		m := openTestManager(t, dsn)
		t0 := time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)
		now := t0
		m.now = func() time.Time { return now }
		late, err := m.SendCommand(ctx, "s", "siren-1", device.ActionAlarmTest, nil, 0, "ada")
		if err != nil {
			t.Fatal(err)
		}
		crashed, err := m.SendCommand(ctx, "s", "valve-1", device.ActionValveClose, nil, 0, "ada")
		if err != nil {
			t.Fatal(err)
		}
		if qs, err := m.claimCommands(ctx, t0.Add(-time.Minute)); err != nil || len(qs) != 2 {
			t.Fatalf("claimed %+v %v", qs, err)
		}
		// late is requested again as if unclaimed: only crashed stays claimed.
		if _, err := m.db.ExecContext(ctx, m.db.Rebind(`UPDATE alert_commands SET claimed = FALSE WHERE id = ?`), late); err != nil {
			t.Fatal(err)
		}
		inflight := CommandStatus{ID: "c-inflight", Site: "s", Device: "valve-2", Action: device.ActionValveClose, Actor: "bob",
			State: CommandSent, Tries: 1, Updated: t0}
		if err := m.putCommandState(ctx, inflight); err != nil {
			t.Fatal(err)
		}
		now = t0.Add(50 * time.Second)
		fresh, err := m.SendCommand(ctx, "s", "valve-3", device.ActionValveClose, nil, 0, "ada")
		if err != nil {
			t.Fatal(err)
		}
		now = t0.Add(61 * time.Second)
		// Before any sweep the stale request is not claimed (not sent late).
		qs, err := m.claimCommands(ctx, now.Add(-time.Minute))
		if err != nil || len(qs) != 1 || qs[0].id != fresh {
			t.Fatalf("claimed %+v %v, want only the fresh request", qs, err)
		}
		cfg := CommandConfig{}.withDefaults()
		n, err := m.expireCommands(ctx, now, cfg.TTL, cfg.abandonAfter())
		if err != nil || n != 2 {
			t.Fatalf("expired %d %v, want the 2 requests nobody sent", n, err)
		}
		state := func(id string) CommandStatus {
			for _, c := range m.Commands(0) {
				if c.ID == id {
					return c
				}
			}
			t.Fatalf("command %s not listed", id)
			return CommandStatus{}
		}
		for _, id := range []string{late, crashed} {
			if c := state(id); c.State != CommandFailed || !strings.Contains(c.Detail, "not sent") {
				t.Errorf("%s: %+v, want failed, not sent", id, c)
			}
		}
		if c := state("c-inflight"); c.State != CommandSent {
			t.Errorf("in flight for 61 s: %+v, want still sent", c)
		}
		if qs, err := m.claimCommands(ctx, time.Time{}); err != nil || len(qs) != 0 {
			t.Errorf("claimed after the sweep %+v %v, want none", qs, err)
		}
		now = t0.Add(cfg.abandonAfter() + time.Second)
		if n, err := m.expireCommands(ctx, now, cfg.TTL, cfg.abandonAfter()); err != nil || n != 1 {
			t.Fatalf("expired %d %v, want the abandoned one", n, err)
		}
		if c := state("c-inflight"); c.State != CommandFailed || !strings.Contains(c.Detail, "outcome unknown") {
			t.Errorf("abandoned: %+v, want failed, outcome unknown", c)
		}
		if c := state(fresh); c.State != CommandRequested {
			t.Errorf("fresh request claimed but not yet sent: %+v", c)
		}
	})
}

// TestStaleRequestNotSentAfterRestart: a test alarm requested by a
// dashboard while no alerting service ran (two minutes before one starts)
// is not sounded late by the service that then starts: it is marked failed
// and nothing is published on the device's command topic.
func TestStaleRequestNotSentAfterRestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m0 := openTestManager(t, e.dsn)
	m0.now = func() time.Time { return time.Now().Add(-2 * time.Minute) }
	id, err := m0.SendCommand(context.Background(), "demo", "siren-1", device.ActionAlarmTest, nil, 0, "ada")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 4)
	if tok := e.pub.Subscribe(device.CommandTopic(e.root, "demo", "siren-1"), 1, func(_ paho.Client, m paho.Message) {
		got <- string(m.Payload())
	}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	r := e.start(func(c *Config) { c.Commands = CommandConfig{Tick: 50 * time.Millisecond} })
	testenv.EventuallyTrue(t, 10*time.Second, "stale request failed", func() bool {
		for _, c := range r.m.Commands(0) {
			if c.ID == id {
				return c.State == CommandFailed
			}
		}
		return false
	})
	select {
	case p := <-got:
		t.Fatalf("a stale request was sent: %s", p)
	case <-time.After(500 * time.Millisecond):
	}
}
