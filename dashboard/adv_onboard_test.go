package dashboard

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/eldercare-iot/eldercare/device/registry"
	"github.com/eldercare-iot/eldercare/internal/sqldb"
	"github.com/eldercare-iot/eldercare/internal/sqldb/sqldbtest"
)

// advOnboardServer is a test server over a real registry (SQLite) with
// one site, room and bed, and a fall detector fd-1.
func advOnboardServer(t *testing.T) (*testServer, *registry.Store) {
	t.Helper()
	ctx := context.Background()
	db, err := sqldb.Open(ctx, sqldbtest.SQLiteDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	store, err := registry.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	doc := &registry.Document{Sites: []registry.SiteSpec{{ID: "demo-station", Name: "Station", TimeZone: "Asia/Shanghai",
		Rooms: []registry.RoomSpec{{ID: "r101", Name: "Room 101", Beds: []registry.BedSpec{{ID: "b101-1", Name: "Bed 1"}}}}}}}
	if err := store.Import(ctx, doc); err != nil {
		t.Fatal(err)
	}
	if err := store.PutDevice(ctx, registry.Device{ID: "fd-1", SiteID: "demo-station", Kind: registry.KindFallDetector, Name: "Wristband", BedID: "b101-1"}); err != nil {
		t.Fatal(err)
	}
	return newTestServer(t, func(_ *Config, d *Deps) { d.Registry = store }), store
}

// TestOnboardDeviceIdentity: a form cannot change what a registered
// device is. Adopting a registered device again (a second admin, or a
// double submit) is refused and the first adoption stays; the gateway form
// refuses a sensor's id (it used to turn the sensor into a gateway with a
// password); the device form refuses a gateway's id.
func TestOnboardDeviceIdentity(t *testing.T) {
	ctx := context.Background()
	ts, store := advOnboardServer(t)
	cookie, csrf := ts.loginAs(t, "admin")
	post := func(kind string, v url.Values) (int, string) {
		t.Helper()
		v.Set("_csrf", csrf)
		resp, page := ts.postForm(t, cookie, "/admin/onboard/"+kind, v)
		return resp.StatusCode, body(page)
	}
	if code, page := post("adopt", url.Values{"id": {"env-9"}, "site": {"demo-station"}, "kind": {"env_sensor"}, "name": {"Kitchen"}}); code != 303 {
		t.Fatalf("first adoption: %d %.400s", code, page)
	}
	code, page := post("adopt", url.Values{"id": {"env-9"}, "site": {"demo-station"}, "kind": {"smoke_alarm"}, "name": {"Hall"}})
	if code != 400 || !strings.Contains(page, "registered already") {
		t.Errorf("second adoption: %d %.400s", code, page)
	}
	if x, err := store.Device(ctx, "env-9"); err != nil || x.Kind != "env_sensor" || x.Name != "Kitchen" {
		t.Errorf("the first adoption was overwritten: %+v %v", x, err)
	}

	code, page = post("gateway", url.Values{"id": {"fd-1"}, "site": {"demo-station"}, "name": {"gw"}})
	if code != 400 || !strings.Contains(page, "not a gateway") || strings.Contains(page, `class="password"`) {
		t.Errorf("gateway form on a sensor: %d %.400s", code, page)
	}
	if x, err := store.Device(ctx, "fd-1"); err != nil || x.Kind != registry.KindFallDetector || x.BedID != "b101-1" {
		t.Errorf("the sensor changed: %+v %v", x, err)
	}
	if _, err := store.Account(ctx, "fd-1"); err == nil {
		t.Error("the sensor got a gateway credential")
	}

	if code, _ := post("gateway", url.Values{"id": {"gw-1"}, "site": {"demo-station"}, "name": {"Gateway"}}); code != 200 {
		t.Fatalf("new gateway: %d", code)
	}
	code, page = post("device", url.Values{"id": {"gw-1"}, "site": {"demo-station"}, "kind": {"env_sensor"}, "name": {"x"}})
	if code != 400 || !strings.Contains(page, "is a gateway") {
		t.Errorf("device form on a gateway: %d %.400s", code, page)
	}
	if x, err := store.Device(ctx, "gw-1"); err != nil || x.Kind != registry.KindGateway {
		t.Errorf("the gateway changed: %+v %v", x, err)
	}
	// Its own form still edits it (and issues a new password, as it says).
	if code, page := post("gateway", url.Values{"id": {"gw-1"}, "site": {"demo-station"}, "name": {"Gateway 2"}}); code != 200 || !strings.Contains(page, `class="password"`) {
		t.Errorf("gateway edit: %d", code)
	}
}
