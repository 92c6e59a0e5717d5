package dashboard

import (
	"context"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/eldercare-iot/eldercare/alerting"
	"github.com/eldercare-iot/eldercare/device/registry"
)

// The roster form offers the site's wards (from the registry's rooms); a
// ward the site does not have is refused with the reason (en and zh-CN)
// and nothing is stored; a known ward's roster is stored next to the
// site's, and policy steps can then pick "ward:<ward>".
func TestRosterWardPicker(t *testing.T) {
	t.Parallel()
	m := realSettings(t)
	ts := newTestServer(t, func(_ *Config, d *Deps) {
		d.Alerts = m
		reg := d.Registry.(*fakeRegistry)
		reg.rooms = []registry.Room{{ID: "r101", SiteID: "demo-station", Name: "Room 101", Ward: "East"},
			{ID: "r201", SiteID: "demo-station", Name: "Room 201", Ward: "West"}}
	})
	admin, csrf := ts.loginAs(t, "admin")
	ctx := context.Background()
	if err := m.PutRecipient(ctx, "test", alerting.Recipient{ID: "nurse", Name: "Nurse Zhang", Role: RoleCaregiver, InApp: true}); err != nil {
		t.Fatal(err)
	}
	_, page := ts.do(t, "GET", "/admin", nil, map[string]string{"Cookie": admin})
	if !strings.Contains(page, `<select name="ward"><option value="">`) || !strings.Contains(page, `<option value="East">East (Sunshine Community Care Station)</option>`) ||
		!strings.Contains(page, `<option value="West">`) {
		t.Fatal("the roster form lacks the ward picker with the site's wards")
	}
	roster := func(ward string) (int, string) {
		v := url.Values{"_csrf": {csrf}, "structured": {"1"}, "site": {"demo-station"}, "ward": {ward}, "zone": {"Asia/Shanghai"},
			"shift_name_0": {"all"}, "shift_start_0": {"00:00"}, "shift_end_0": {"00:00"}, "shift_staff_0": {"nurse"}}
		resp, page := ts.postForm(t, admin, "/admin/roster", v)
		return resp.StatusCode, page
	}
	code, page := roster("North")
	if code != 400 || !strings.Contains(page, "Unknown ward &#34;North&#34; at site demo-station: its wards are East, West") {
		t.Fatalf("unknown ward: %d, reason missing", code)
	}
	if zh := trf("zh-CN", "rost.err.unknown_ward", "ward", "North", "site", "demo-station", "wards", "East, West"); zh != "站点 demo-station 没有病区“North”：现有病区为 East, West" {
		t.Errorf("zh-CN reason %q", zh)
	}
	if s, _ := m.Settings(ctx); len(s.Rosters) != 0 {
		t.Fatalf("a refused roster was stored: %+v", s.Rosters)
	}
	if code, _ := roster("East"); code != 303 {
		t.Fatalf("roster of ward East: %d", code)
	}
	if code, _ := roster(""); code != 303 {
		t.Fatalf("site roster: %d", code)
	}
	s, _ := m.Settings(ctx)
	var keys []string
	for _, r := range s.Rosters {
		keys = append(keys, r.Key())
	}
	slices.Sort(keys)
	if !slices.Equal(keys, []string{"demo-station", "demo-station/East"}) {
		t.Fatalf("rosters %v, want the site's and East's", keys)
	}
	_, page = ts.do(t, "GET", "/admin", nil, map[string]string{"Cookie": admin})
	if !strings.Contains(page, `<option value="ward:East">ward:East</option>`) || !strings.Contains(page, "demo-station · Ward East") {
		t.Fatal("the policy picker lacks ward:East, or the roster list its ward")
	}
	v := url.Values{"_csrf": {csrf}, "structured": {"1"}, "id": {"w"}, "step_after_0": {"0s"}, "step_target_0": {"ward:East"}}
	if resp, _ := ts.postForm(t, admin, "/admin/policy", v); resp.StatusCode != 303 {
		t.Fatalf("policy with ward:East: %d", resp.StatusCode)
	}
	v.Set("step_target_0", "ward:North")
	if resp, page := ts.postForm(t, admin, "/admin/policy", v); resp.StatusCode != 400 || !strings.Contains(page, "unknown ward &#34;North&#34;") {
		t.Fatalf("policy with ward:North: %d", resp.StatusCode)
	}
}
