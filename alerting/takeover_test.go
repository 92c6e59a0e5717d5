package alerting

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/internal/broker"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
	"github.com/eldercare-iot/eldercare/internal/sqldb/sqldbtest"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// TestClientTakeoverAlert: on the embedded broker, a client id taken over
// again and again is signalled as a client_takeover event; the alerting
// service connected to that broker raises one operations alert (warning, no
// resident, device = the client id), and a second signal counts as a repeat
// on it.
func TestClientTakeoverAlert(t *testing.T) {
	t.Parallel()
	root := testenv.TopicRoot(t)
	quiet := slog.New(slog.DiscardHandler)
	b, err := broker.Start(broker.Config{Addr: "127.0.0.1:0", Logger: quiet, Root: root, TakeoverLimit: 2, TakeoverWindow: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	e := &env{t: t, url: b.URL(), root: root, dsn: sqldbtest.SQLiteDSN(t), clientID: testenv.ClientID(t, "alerting"), hook: newHook(t), binding: map[string]string{}}
	pub, err := mqttconn.Connect(context.Background(), mqttconn.Options{URL: e.url, ClientID: testenv.ClientID(t, "pub"), CleanSession: true, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Disconnect(0)
	e.pub = pub
	r := e.start(nil)

	// Three connections with one client id: two takeovers, signalled once.
	takeovers := func() {
		for range 3 {
			c, err := mqttconn.Connect(context.Background(), mqttconn.Options{URL: e.url, ClientID: "gw-dup", CleanSession: true, Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Disconnect(0)
		}
	}
	takeovers()
	testenv.EventuallyTrue(t, 15*time.Second, "client_takeover alert", func() bool { return len(openAlerts(t, r.m, TypeClientTakeover)) == 1 })
	a := openAlerts(t, r.m, TypeClientTakeover)[0]
	if a.Severity != SeverityWarning || a.Resident != nil || a.Device != "gw-dup" || a.Site != device.OpsSite ||
		!strings.Contains(a.Detail, "MQTT client id gw-dup taken over 2 times") {
		t.Errorf("alert %+v", a)
	}
	testenv.EventuallyTrue(t, 15*time.Second, "opened notification", func() bool { return len(e.hook.changes(TypeClientTakeover, EventOpened)) == 1 })

	// The next window's signal repeats the open alert.
	time.Sleep(1100 * time.Millisecond) // past the broker's 1 s signalling window
	takeovers()
	testenv.EventuallyTrue(t, 15*time.Second, "repeat counted", func() bool {
		all := openAlerts(t, r.m, TypeClientTakeover)
		return len(all) == 1 && all[0].Repeats >= 1
	})
	if n := len(openAlerts(t, r.m, TypeClientTakeover)); n != 1 {
		t.Errorf("%d client_takeover alerts, want 1", n)
	}
	if n := len(openAlerts(t, r.m, TypeDeviceOffline)); n != 0 {
		t.Errorf("the operations event opened %d device_offline alerts", n)
	}
	e.hook.check(t)
}
