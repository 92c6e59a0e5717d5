package alerting

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
	"github.com/eldercare-iot/eldercare/internal/sqldb/sqldbtest"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// TestOneEventOneAlertOnePage: two alerting replicas on one PostgreSQL
// database; every fall event is published twice, by two clients (the
// device and its gateway's spool, or zigbee2mqtt's two topics mapped to one
// event). The first fall opens one alert with one "opened" notification. A
// second, distinct fall (next seq) while it is open is counted on the alert
// (repeats 1, last occurrence = its time) and announced once as "repeated"
// to the recipients paged so far; after an acknowledgement, a third fall is
// announced once to the one who acknowledged it. No notification twice.
func TestOneEventOneAlertOnePage(t *testing.T) {
	t.Parallel()
	dsn := sqldbtest.PostgresDSN(t)
	e := newEnv(t)
	second, err := mqttconn.Connect(context.Background(), mqttconn.Options{URL: e.url, ClientID: testenv.ClientID(t, "pub2"),
		CleanSession: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { second.Disconnect(100) })
	settings := testSettings(t)
	a := e.startReplica(dsn, "replica-a", &settings, nil)
	b := e.startReplica(dsn, "replica-b", nil, nil)

	const dev = "fd-rep"
	twice := func(seq uint64, ts time.Time) {
		t.Helper()
		// Different message ids, same event (device, boot, seq).
		for i, c := range []func(topic string, b []byte){
			e.publishRaw,
			func(topic string, b []byte) {
				if err := mqttconn.Wait(context.Background(), second.Publish(topic, 1, false, b), 10*time.Second, "publish"); err != nil {
					t.Fatal(err)
				}
			},
		} {
			ev := device.Event{V: 1, Device: dev, Boot: 1, ID: seq*10 + uint64(i), Seq: seq, TS: ts.UnixMilli(), Type: device.EventFall}
			b, _ := json.Marshal(ev)
			c(device.Topic{Root: e.root, Site: "demo", Device: dev, Channel: device.ChanEvent}.String(), b)
		}
	}
	notices := func(event string) []Notice {
		e.hook.mu.Lock()
		defer e.hook.mu.Unlock()
		var out []Notice
		for _, c := range e.hook.got {
			if c.Alert.Device == dev && c.Event == event {
				out = append(out, Notice{Change: c})
			}
		}
		return out
	}
	bodies := func(event string) []Notice {
		// The escalation member is in the body the webhook got; re-read it
		// from the outbox, which holds the same bytes.
		rows, err := a.m.db.QueryContext(context.Background(), a.m.db.Rebind(`SELECT payload FROM alert_outbox WHERE event = ? ORDER BY created_ms, seq`), event)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []Notice
		for rows.Next() {
			var p string
			if err := rows.Scan(&p); err != nil {
				t.Fatal(err)
			}
			var n Notice
			if err := json.Unmarshal([]byte(p), &n); err != nil {
				t.Fatal(err)
			}
			if n.Alert.Device == dev {
				out = append(out, n)
			}
		}
		return out
	}

	t1 := time.Now().Add(-2 * time.Second).Truncate(time.Millisecond)
	twice(1, t1)
	testenv.EventuallyTrue(t, 15*time.Second, "opened notification", func() bool { return len(notices(EventOpened)) == 1 })
	opened := bodies(EventOpened)
	if len(opened) != 1 || opened[0].Escalation == nil || len(opened[0].Escalation.Recipients) == 0 {
		t.Fatalf("opened notices %+v, want one paging the on-duty caregiver", opened)
	}

	t2 := t1.Add(time.Second)
	twice(2, t2)
	testenv.EventuallyTrue(t, 15*time.Second, "first repeated notification", func() bool { return len(notices(EventRepeated)) == 1 })
	got, err := a.m.Get(context.Background(), opened[0].Alert.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Repeats != 1 || got.LastOccurredAt == nil || !got.LastOccurredAt.Equal(t2) {
		t.Errorf("after the second fall: repeats %d, last occurred %v; want 1, %v", got.Repeats, got.LastOccurredAt, t2)
	}
	rep := bodies(EventRepeated)
	if len(rep) != 1 || rep[0].Escalation == nil {
		t.Fatalf("repeated notices %+v, want one with the recipients paged so far", rep)
	}
	if rep[0].Escalation.Shift == opened[0].Escalation.Shift && !slices.Equal(contactIDsOf(rep[0].Escalation.Recipients), contactIDsOf(opened[0].Escalation.Recipients)) {
		t.Errorf("repeated pages %v, want those paged at the opening %v", contactIDsOf(rep[0].Escalation.Recipients), contactIDsOf(opened[0].Escalation.Recipients))
	}

	if _, err := a.m.Acknowledge(context.Background(), got.ID, "lead", "dashboard"); err != nil {
		t.Fatal(err)
	}
	t3 := t2.Add(time.Second)
	twice(3, t3)
	testenv.EventuallyTrue(t, 15*time.Second, "second repeated notification", func() bool { return len(notices(EventRepeated)) == 2 })
	rep = bodies(EventRepeated)
	if len(rep) != 2 || rep[1].Escalation == nil || !slices.Equal(contactIDsOf(rep[1].Escalation.Recipients), []string{"lead"}) {
		t.Fatalf("repeated after the acknowledgement: %+v, want one paging lead (who acknowledged)", rep)
	}
	if got, _ = a.m.Get(context.Background(), got.ID); got.Repeats != 2 || got.LastOccurredAt == nil || !got.LastOccurredAt.Equal(t3) {
		t.Errorf("after the third fall: repeats %d, last occurred %v; want 2, %v", got.Repeats, got.LastOccurredAt, t3)
	}

	// A marker fall of another device after them: once both replicas
	// handle it, each has made its decisions on every fall above; then,
	// with the outbox settled, exactly one of each.
	e.fall("fd-marker", 1)
	for _, r := range []*running{a, b} {
		testenv.EventuallyTrue(t, 10*time.Second, "marker handled", func() bool { return r.svc.knows("fd-marker") })
	}
	onceEach(t, e, a.m, dev)
	if n := len(notices(EventRepeated)); n != 2 {
		t.Errorf("%d repeated notifications, want 2", n)
	}
	if n := len(alertsOf(t, a.m, dev, TypeFall)); n != 1 {
		t.Errorf("%d fall alerts of %s, want 1", n, dev)
	}
}

func contactIDsOf(cs []Contact) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.ID)
	}
	return out
}
