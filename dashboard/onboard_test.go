package dashboard

import (
	"context"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/device/registry"
	"github.com/eldercare-iot/eldercare/internal/sqldb"
	"github.com/eldercare-iot/eldercare/internal/sqldb/sqldbtest"
)

// TestOnboardForms drives /admin/onboard against a real registry (SQLite):
// a gateway's password is shown once and works, a resident with a
// medication schedule and safe zones, a bed type change with its history,
// hostile input escaped, retiring a room in use refused, a family or
// caregiver account refused.
func TestOnboardForms(t *testing.T) {
	t.Parallel()
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
	ts := newTestServer(t, func(_ *Config, d *Deps) { d.Registry = store })
	cookie, csrf := ts.loginAs(t, "admin")
	post := func(kind string, v url.Values) (int, string) {
		t.Helper()
		v.Set("_csrf", csrf)
		resp, page := ts.postForm(t, cookie, "/admin/onboard/"+kind, v)
		return resp.StatusCode, body(page)
	}

	code, page := post("gateway", url.Values{"id": {"gw-home"}, "site": {"demo-station"}, "name": {"Home gateway"}})
	m := regexp.MustCompile(`<code class="password">([^<]+)</code>`).FindStringSubmatch(page)
	if code != 200 || m == nil {
		t.Fatalf("gateway: %d, no password shown: %.400s", code, page)
	}
	acc, err := store.Account(ctx, "gw-home")
	if err != nil || !registry.CheckPassword(acc.PasswordHash, m[1]) {
		t.Errorf("the shown password does not log the gateway in: %v", err)
	}
	if _, page := ts.do(t, "GET", "/admin/onboard", nil, map[string]string{"Cookie": cookie}); strings.Contains(page, m[1]) {
		t.Error("the password is shown again")
	}

	code, page = post("resident", url.Values{"id": {"res-9"}, "site": {"demo-station"}, "bed": {"b101-1"}, "name": {"<script>x</script>"},
		"name_zh": {"李桂芳"}, "vulnerable": {"on"}, "visit_cadence_days": {"14"},
		"medication": {"08:00 1h amlodipine 5 mg"}, "safe_zones": {"home circle 31.2304 121.4737 300"}})
	if code != 303 {
		t.Fatalf("resident: %d %.600s", code, page)
	}
	r, err := store.Resident(ctx, "res-9")
	if err != nil || len(r.Medication) != 1 || len(r.SafeZones) != 1 || r.VisitCadenceDays != 14 || r.Names["zh-CN"] != "李桂芳" {
		t.Errorf("resident %+v %v", r, err)
	}
	if _, page := ts.do(t, "GET", "/admin/onboard", nil, map[string]string{"Cookie": cookie}); strings.Contains(page, "<script>x") {
		t.Error("hostile name not escaped")
	}
	// The registry's message for a bad dose time, next to the field.
	code, page = post("resident", url.Values{"id": {"res-9"}, "site": {"demo-station"}, "name": {"X"}, "medication": {"25:00 1h x"}})
	if code != 400 || !strings.Contains(page, "25:00") {
		t.Errorf("bad dose time: %d %.300s", code, page)
	}

	if code, page := post("bed", url.Values{"id": {"b101-1"}, "room": {"r101"}, "name": {"Bed 1"}, "type": {"nursing"}, "reason": {"converted in December"}}); code != 303 {
		t.Fatalf("bed type change: %d %.400s", code, page)
	}
	hist, err := store.BedTypeHistory(ctx, "b101-1", time.Time{}, time.Time{})
	if err != nil || len(hist) != 1 || hist[0].By != "Admin Ada" || hist[0].Reason != "converted in December" {
		t.Errorf("bed history %+v %v", hist, err)
	}

	if code, page := post("retire", url.Values{"kind": {"room"}, "id": {"r101"}}); code != 400 || !strings.Contains(page, "still in use") {
		t.Errorf("retire a room in use: %d %.300s", code, page)
	}
	if code, _ := post("card", url.Values{"id": {"04A1"}, "resident": {"res-9"}}); code != 303 {
		t.Errorf("card: %d", code)
	}
	if code, _ := post("retire", url.Values{"kind": {"card"}, "id": {"04A1"}, "reason": {"lost"}}); code != 303 {
		t.Errorf("retire card: %d", code)
	}
	if code, _ := post("planet", url.Values{}); code != 404 {
		t.Errorf("unknown form: %d", code)
	}
	// Editing a device on the form keeps its limits (the form has none).
	limit := 8.0
	if err := store.PutDevice(ctx, registry.Device{ID: "fridge-1", SiteID: "demo-station", Kind: registry.KindEnvSensor,
		Limits: []registry.Limit{{Field: "appliance_temp_c", Max: &limit}}}); err != nil {
		t.Fatal(err)
	}
	if code, page := post("device", url.Values{"id": {"fridge-1"}, "site": {"demo-station"}, "kind": {"env_sensor"}, "name": {"Kitchen fridge"}}); code != 303 {
		t.Fatalf("edit device: %d %.300s", code, page)
	}
	if x, err := store.Device(ctx, "fridge-1"); err != nil || x.Name != "Kitchen fridge" || len(x.Limits) != 1 {
		t.Errorf("edited device %+v %v", x, err)
	}
	carer, ccsrf := ts.loginAs(t, "nurse")
	resp, _ := ts.postForm(t, carer, "/admin/onboard/device", url.Values{"_csrf": {ccsrf}, "id": {"x"}, "site": {"demo-station"}, "kind": {"other"}})
	if resp.StatusCode == 303 || resp.StatusCode == 200 {
		t.Errorf("a caregiver added a device: %d", resp.StatusCode)
	}
}
