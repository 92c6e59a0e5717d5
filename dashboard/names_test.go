package dashboard

import (
	"bytes"
	"encoding/json"
	"html"
	"strings"
	"testing"

	"github.com/eldercare-iot/eldercare/device/registry"
	firmwaresim "github.com/eldercare-iot/eldercare/firmware-sim"
)

// namedRegistry is the test registry with Chinese display names for the
// residents, the room and a device.
func namedRegistry() *fakeRegistry {
	r := testRegistry()
	r.residents[0].Names = registry.Names{LangZH: "王秀英"}
	r.residents[1].Names = registry.Names{LangZH: "李秀兰"}
	r.rooms[0].Names = registry.Names{LangZH: "一楼东 101 室"}
	for i := range r.devices {
		if r.devices[i].ID == "vm-101" {
			r.devices[i].Names = registry.Names{LangZH: "床旁监护仪"}
		}
	}
	return r
}

func namesServer(t *testing.T) *testServer {
	t.Helper()
	return newTestServer(t, func(_ *Config, d *Deps) { d.Registry = namedRegistry() })
}

// get fetches path as username and fails unless it answers 200.
func (ts *testServer) getAs(t *testing.T, username, path string) string {
	t.Helper()
	cookie, _ := ts.loginAs(t, username)
	resp, body := ts.do(t, "GET", path, nil, map[string]string{"Cookie": cookie})
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s as %s: status %d", path, username, resp.StatusCode)
	}
	return body
}

// wantNames checks that body shows every want and none of not.
func wantNames(t *testing.T, what string, body string, want, not []string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(body, w) {
			t.Errorf("%s lacks %q", what, w)
		}
	}
	for _, n := range not {
		if strings.Contains(body, n) {
			t.Errorf("%s shows %q", what, n)
		}
	}
}

// The board (triage list and bed cards), the alert list and the resident
// page name the resident, the room and the device in the viewer's
// language: the display name to a zh-CN user ("lead"), the plain name to
// an en user ("nurse").
func TestDisplayNamesStaffPages(t *testing.T) {
	t.Parallel()
	ts := namesServer(t)
	for _, page := range []string{"/board", "/alerts", "/residents/res-001"} {
		zh := ts.getAs(t, "lead", page)
		en := ts.getAs(t, "nurse", page)
		wantNames(t, "zh-CN "+page, zh, []string{"王秀英"}, []string{"Wang Xiuying"})
		wantNames(t, "en "+page, en, []string{"Wang Xiuying"}, []string{"王秀英"})
		if page == "/alerts" {
			continue // the alert list names residents, not rooms or devices
		}
		wantNames(t, "zh-CN "+page, zh, []string{"一楼东 101 室", "床旁监护仪"}, []string{"Room 101", "Vitals monitor 101-1"})
		wantNames(t, "en "+page, en, []string{"Vitals monitor 101-1"}, []string{"一楼东 101 室", "床旁监护仪"})
	}
	// The second resident's card on the board, too.
	wantNames(t, "zh-CN /board", ts.getAs(t, "lead", "/board"), []string{"李秀兰"}, nil)
}

// The family page names the elder in the family member's language.
func TestDisplayNamesFamilyPage(t *testing.T) {
	t.Parallel()
	ts := namesServer(t)
	wantNames(t, "zh-CN family", ts.getAs(t, "daughter", "/family"), []string{"王秀英"}, []string{"Wang Xiuying"})
	wantNames(t, "en family", ts.getAs(t, "otherfamily", "/family"), []string{html.EscapeString(`<b>Li "Bold"</b>`)}, []string{"李秀兰"})
}

// The alarm's notification text (PWA) names resident and room in the
// caregiver's language.
func TestDisplayNamesAlarmInfo(t *testing.T) {
	t.Parallel()
	ts := namesServer(t)
	for user, want := range map[string][2]string{"lead": {"王秀英", "一楼东 101 室"}, "nurse": {"Wang Xiuying", "Room 101"}} {
		var info struct{ Resident, Room string }
		if err := json.Unmarshal([]byte(ts.getAs(t, user, "/alarm/alerts/1")), &info); err != nil {
			t.Fatal(err)
		}
		if info.Resident != want[0] || info.Room != want[1] {
			t.Errorf("%s: alarm names %q in %q, want %q in %q", user, info.Resident, info.Room, want[0], want[1])
		}
	}
}

func TestDeviceNameKeepsDisplayName(t *testing.T) {
	t.Parallel()
	if got := deviceName(LangZH, "vitals_monitor", "床旁监护仪", "vm-101"); got != "床旁监护仪" {
		t.Errorf("a Chinese display name is shown as registered, got %q", got)
	}
	if got := deviceName(LangZH, "vitals_monitor", "Vitals monitor 101-1", "vm-101"); got != "生命体征监测仪 101-1" {
		t.Errorf("an English name is still rendered in Chinese, got %q", got)
	}
}

// The demo registry of "eldercare up --demo" names its residents, rooms
// and devices in Chinese: the board in Chinese shows characters, in
// English pinyin.
func TestDisplayNamesDemoRegistry(t *testing.T) {
	t.Parallel()
	doc, err := registry.ParseYAML(bytes.NewReader(firmwaresim.DemoRegistryYAML))
	if err != nil {
		t.Fatal(err)
	}
	reg := &fakeRegistry{sites: doc.SiteList(), rooms: doc.RoomList(), beds: doc.BedList(), residents: doc.Residents, devices: doc.Devices}
	zhNames := map[string]string{"res-001": "王秀英", "res-002": "李桂兰", "res-003": "张建国", "res-004": "刘淑芬", "res-005": "陈德明", "res-006": "赵玉兰", "res-101": "李桂芳"}
	for _, r := range doc.Residents {
		if got := registry.DisplayName(r.Names, LangZH, ""); got != zhNames[r.ID] {
			t.Errorf("%s (%s): Chinese name %q, want %q", r.ID, r.Name, got, zhNames[r.ID])
		}
	}
	for _, r := range doc.RoomList() {
		if r.Names[LangZH] == "" {
			t.Errorf("room %s has no Chinese name", r.ID)
		}
	}
	for _, d := range doc.Devices {
		if d.SiteID == "demo-home-li" && d.Names[LangZH] == "" {
			t.Errorf("home device %s has no Chinese name", d.ID)
		}
	}
	ts := newTestServer(t, func(_ *Config, d *Deps) { d.Registry = reg })
	zh, en := ts.getAs(t, "lead", "/board"), ts.getAs(t, "nurse", "/board")
	wantNames(t, "zh-CN demo board", zh, []string{"王秀英", "赵玉兰", "102 房"}, []string{"Wang Xiuying", "Zhao Yulan"})
	wantNames(t, "en demo board", en, []string{"Wang Xiuying", "Zhao Yulan", "Room 102"}, []string{"王秀英", "赵玉兰"})
}
