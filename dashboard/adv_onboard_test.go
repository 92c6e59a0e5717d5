package dashboard

import (
	"context"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

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
	t.Parallel()
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

// TestOnboardRefusalsWriteNothing: a device form refused for its binding
// (an unknown resident, or one of another site) used to save the device
// and then show the error; it now saves nothing. The device and adoption
// forms refuse kind gateway (no credential would be issued) and do not
// offer it. Names with a right-to-left override or a line separator are
// refused with the field's message; HTML in names is shown escaped.
func TestOnboardRefusalsWriteNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ts, store := advOnboardServer(t)
	if err := store.PutSite(ctx, registry.Site{ID: "far", Name: "Far", TimeZone: "UTC"}); err != nil {
		t.Fatal(err)
	}
	if err := store.PutResident(ctx, registry.Resident{ID: "res-far", SiteID: "far", Name: "Far Away"}); err != nil {
		t.Fatal(err)
	}
	cookie, csrf := ts.loginAs(t, "admin")
	post := func(kind string, v url.Values) (int, string) {
		t.Helper()
		v.Set("_csrf", csrf)
		resp, page := ts.postForm(t, cookie, "/admin/onboard/"+kind, v)
		return resp.StatusCode, body(page)
	}
	for _, c := range []struct {
		name, kind string
		v          url.Values
		want       string
	}{
		{"unknown resident", "device", url.Values{"id": {"d1"}, "site": {"demo-station"}, "kind": {"valve"}, "resident": {"nosuch"}}, "There is no resident nosuch."},
		{"resident of another site", "device", url.Values{"id": {"d2"}, "site": {"demo-station"}, "kind": {"valve"}, "resident": {"res-far"}}, "Resident res-far lives on site far"},
		{"adopt, unknown resident", "adopt", url.Values{"id": {"d3"}, "site": {"demo-station"}, "kind": {"valve"}, "resident": {"nosuch"}}, "There is no resident nosuch."},
		{"gateway by the device form", "device", url.Values{"id": {"d4"}, "site": {"demo-station"}, "kind": {"gateway"}}, "Add a gateway with the gateway form"},
		{"gateway by adoption", "adopt", url.Values{"id": {"d5"}, "site": {"demo-station"}, "kind": {"gateway"}}, "Add a gateway with the gateway form"},
	} {
		code, page := post(c.kind, c.v)
		if code != 400 || !strings.Contains(page, c.want) {
			t.Errorf("%s: %d, message %q shown %v", c.name, code, c.want, strings.Contains(page, c.want))
		}
		if _, err := store.Device(ctx, c.v.Get("id")); err == nil {
			t.Errorf("%s: device %s was saved", c.name, c.v.Get("id"))
		}
	}
	_, page := ts.do(t, "GET", "/admin/onboard", nil, map[string]string{"Cookie": cookie})
	if strings.Contains(page, `<option value="gateway"`) {
		t.Error("the device forms offer kind gateway")
	}

	for _, c := range []struct {
		kind string
		v    url.Values
	}{
		{"site", url.Values{"id": {"s2"}, "name": {"Home \u202Eemoh"}, "timezone": {"UTC"}}},
		{"room", url.Values{"id": {"r2"}, "site": {"demo-station"}, "name": {"R"}, "ward": {"north\u2066"}}},
		{"resident", url.Values{"id": {"res-2"}, "site": {"demo-station"}, "name": {"A\u2028B"}}},
	} {
		code, page := post(c.kind, c.v)
		if code != 400 || !strings.Contains(page, "invisible direction or line control") {
			t.Errorf("%s %v: %d", c.kind, c.v, code)
		}
	}
	if code, _ := post("room", url.Values{"id": {"r3"}, "site": {"demo-station"}, "name": {`<img src=x onerror=alert(1)>`}, "ward": {`<b>w</b>`}}); code != 303 {
		t.Fatalf("room with HTML in its name: %d", code)
	}
	_, page = ts.do(t, "GET", "/admin/onboard", nil, map[string]string{"Cookie": cookie})
	if strings.Contains(page, "<img src=x") || strings.Contains(page, "<b>w</b>") || !strings.Contains(page, "&lt;img src=x") {
		t.Error("HTML in a room's name or ward is not escaped")
	}
}

// TestAdoptConcurrently: two admins adopting the same unknown device at
// the same moment: one adoption is saved, the other is refused on the id
// field (the registry inserts without overwriting).
func TestAdoptConcurrently(t *testing.T) {
	t.Parallel()
	ts, store := advOnboardServer(t)
	cookie, csrf := ts.loginAs(t, "admin")
	codes := make([]int, 4)
	var wg sync.WaitGroup
	for i := range codes {
		wg.Go(func() {
			v := url.Values{"_csrf": {csrf}, "id": {"env-race"}, "site": {"demo-station"}, "kind": {"env_sensor"}, "name": {fmt.Sprint("Kitchen ", i)}}
			resp, _ := ts.postForm(t, cookie, "/admin/onboard/adopt", v)
			codes[i] = resp.StatusCode
		})
	}
	wg.Wait()
	saved := 0
	for _, c := range codes {
		switch c {
		case 303:
			saved++
		case 400:
		default:
			t.Errorf("adoption answered %d", c)
		}
	}
	if saved != 1 {
		t.Errorf("%d adoptions saved, want 1 (%v)", saved, codes)
	}
	if _, err := store.Device(context.Background(), "env-race"); err != nil {
		t.Error(err)
	}
}

// TestMoveBoundDevice: a device bound to a resident cannot be moved to
// another site by the device form (its alerts would be filed under the
// new site, away from the resident's staff), nor the resident by the
// resident form; unbound, a device can.
func TestMoveBoundDevice(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ts, store := advOnboardServer(t)
	if err := store.PutSite(ctx, registry.Site{ID: "far", Name: "Far", TimeZone: "UTC"}); err != nil {
		t.Fatal(err)
	}
	if err := store.PutResident(ctx, registry.Resident{ID: "res-1", SiteID: "demo-station", Name: "A"}); err != nil {
		t.Fatal(err)
	}
	if err := store.Bind(ctx, "fd-1", "res-1", testNow.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	cookie, csrf := ts.loginAs(t, "admin")
	v := url.Values{"_csrf": {csrf}, "id": {"fd-1"}, "site": {"far"}, "kind": {"fall_detector"}, "name": {"W"}}
	resp, page := ts.postForm(t, cookie, "/admin/onboard/device", v)
	if resp.StatusCode != 400 || !strings.Contains(body(page), "is bound to resident res-1 of site demo-station") {
		t.Errorf("move a bound device: %d", resp.StatusCode)
	}
	if x, err := store.Device(ctx, "fd-1"); err != nil || x.SiteID != "demo-station" {
		t.Errorf("the device moved: %+v %v", x, err)
	}
	rv := url.Values{"_csrf": {csrf}, "id": {"res-1"}, "site": {"far"}, "name": {"A"}}
	resp, page = ts.postForm(t, cookie, "/admin/onboard/resident", rv)
	if resp.StatusCode != 400 || !strings.Contains(body(page), "has device fd-1 of site demo-station bound") {
		t.Errorf("move a resident with a bound device: %d", resp.StatusCode)
	}
	if r, err := store.Resident(ctx, "res-1"); err != nil || r.SiteID != "demo-station" {
		t.Errorf("the resident moved: %+v %v", r, err)
	}
	v.Set("id", "fd-2")
	if err := store.PutDevice(ctx, registry.Device{ID: "fd-2", SiteID: "demo-station", Kind: registry.KindFallDetector}); err != nil {
		t.Fatal(err)
	}
	if resp, _ := ts.postForm(t, cookie, "/admin/onboard/device", v); resp.StatusCode != 303 {
		t.Errorf("move an unbound device: %d", resp.StatusCode)
	}
}

// TestGatewayPasswordNotKept: the page that shows a new gateway's
// password is not cached by the browser (a back button or a shared
// station does not show it again) and the password is in no audit row.
func TestGatewayPasswordNotKept(t *testing.T) {
	t.Parallel()
	ts, _ := advOnboardServer(t)
	cookie, csrf := ts.loginAs(t, "admin")
	resp, page := ts.postForm(t, cookie, "/admin/onboard/gateway", url.Values{"_csrf": {csrf}, "id": {"gw-9"}, "site": {"demo-station"}, "name": {"GW"}})
	m := regexp.MustCompile(`<code class="password">([^<]+)</code>`).FindStringSubmatch(page)
	if resp.StatusCode != 200 || m == nil {
		t.Fatalf("gateway: %d", resp.StatusCode)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", cc)
	}
	es, err := ts.acc.Audit(context.Background(), AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if strings.Contains(e.Detail+e.Target, m[1]) {
			t.Errorf("the password is in the audit log: %+v", e)
		}
	}
}
