package alerting

import (
	"context"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/device/registry"
)

// fixedPlaces maps "resident/lang" (else "resident") to a place.
type fixedPlaces map[string]Place

func (f fixedPlaces) PlaceOf(a Alert, lang string) Place {
	if p, ok := f[*a.Resident+"/"+lang]; ok {
		return p
	}
	return f[*a.Resident]
}

func testRenderer(t *testing.T) *Renderer {
	sh, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		t.Fatal(err)
	}
	return &Renderer{
		Places: fixedPlaces{
			"res-001":       {Resident: "Wang Xiuying", Room: "101", Bed: "1", Site: "阳光护理站", Zone: sh},
			"res-001/zh-CN": {Resident: "王秀英", Room: "101", Bed: "1", Site: "阳光护理站", Zone: sh},
		},
		Links: func(_ context.Context, alert int64, recipient, channel string) (string, error) {
			return "https://care.example.org/ack/" + channel + "-" + recipient + "-" + strings.Repeat("x", 4), nil
		},
	}
}

func localizedNotice() Notice {
	n := sampleNotice()
	n.Escalation.Recipients = []Contact{
		{ID: "lead", Name: "Lea Nurse", Role: "nurse_lead", Lang: "en", Email: "lead@example.org", WeCom: "lea", DingTalk: "13800000003"},
		{ID: "zhang", Name: "张护士", Role: "caregiver", Lang: "zh-CN", Email: "zhang@example.org", WeCom: "zhangsan", DingTalk: "13800000004"},
	}
	return n
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "messages", name)
	if updateGolden() {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if string(got) != string(want) {
		t.Errorf("%s:\n got %s\nwant %s", name, got, want)
	}
}

// Notification bodies for a zh-CN and an en recipient: language, resident
// with room and bed, time in the site's zone, each person's own link.
func TestMessagesGolden(t *testing.T) {
	t.Parallel()
	r := testRenderer(t)
	n := localizedNotice()
	ctx := context.Background()
	for _, c := range n.Escalation.Recipients {
		m, err := r.ForContact(ctx, n, c, "email")
		if err != nil {
			t.Fatal(err)
		}
		golden(t, "email-"+c.Lang+".txt", []byte("Subject: "+m.Subject+"\n\n"+m.Text()))
		golden(t, "email-"+c.Lang+".html", []byte(m.HTML(c.Lang)))
		want := map[string][]string{
			"en":    {"[CRITICAL] Fall (escalated, not acknowledged): Wang Xiuying, room 101, bed 1", "Time: 2026-01-15 10:00 (Asia/Shanghai)", "/ack/email-lead-"},
			"zh-CN": {"【紧急】跌倒（未确认，已升级）：王秀英，101 房 1 床", "时间：2026-01-15 10:00（Asia/Shanghai）", "/ack/email-zhang-", "确认（我这就去）"},
		}[c.Lang]
		for _, w := range want {
			if !strings.Contains(m.Subject+m.Text(), w) {
				t.Errorf("%s message lacks %q", c.Lang, w)
			}
		}
		if strings.Contains(m.Text(), "/ack/email-"+map[string]string{"en": "zhang", "zh-CN": "lead"}[c.Lang]) {
			t.Errorf("%s message carries the other person's link", c.Lang)
		}
	}
	body, _ := json.Marshal(n)
	for _, lang := range Languages {
		r.Lang = lang
		for _, tpl := range []string{TemplateJSON, TemplateWeCom, TemplateDingTalk} {
			got, err := r.Chat(ctx, tpl, body)
			if err != nil {
				t.Fatal(err)
			}
			if !json.Valid(got) {
				t.Fatalf("%s: not JSON", tpl)
			}
			name := tpl
			if tpl == TemplateJSON {
				name = "webhook"
			}
			golden(t, name+"-"+lang+".json", got)
		}
	}
	r.Lang = "zh-CN"
	got, _ := r.Chat(ctx, TemplateWeCom, body)
	for _, w := range []string{"[Lea Nurse: acknowledge (I am going)](https://care.example.org/ack/wecom-lead-", "[张护士：确认（我这就去）](https://care.example.org/ack/wecom-zhang-", "<@lea><@zhangsan>"} {
		if !strings.Contains(string(got), w) {
			t.Errorf("wecom card lacks %q", w)
		}
	}
	// A settled alert carries no acknowledge link.
	n.Event, n.Alert.Status = EventAcknowledged, StatusAcknowledged
	m, _ := r.ForContact(ctx, n, n.Escalation.Recipients[0], "email")
	if len(m.Links) != 0 {
		t.Errorf("acknowledged notice carries links %v", m.Links)
	}
}

func TestMessageCatalogues(t *testing.T) {
	t.Parallel()
	keys := map[string][]string{}
	for _, l := range Languages {
		b, err := localeFS.ReadFile("locales/" + l + ".json")
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]string
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s: %v", l, err)
		}
		keys[l] = slices.Sorted(maps.Keys(m))
	}
	if !slices.Equal(keys["en"], keys["zh-CN"]) {
		t.Fatalf("catalogues differ:\n en %v\n zh %v", keys["en"], keys["zh-CN"])
	}
	for _, typ := range []string{TypeFall, TypeSOS, TypeSpO2Low, TypeHeartRate, TypeRespiration, TypeDeviceOffline} {
		if !slices.Contains(keys["en"], "type."+typ) {
			t.Errorf("no text for alert type %s", typ)
		}
	}
}

// The registry's places name the resident in the reader's language: the
// display name for zh-CN, the plain name for en and for a language without
// a display name; the same alert renders both ways per recipient.
func TestRegistryPlacesDisplayName(t *testing.T) {
	t.Parallel()
	sn := registry.NewSnapshot(time.Unix(0, 0), []registry.Site{{ID: "s1", Name: "Sunshine", TimeZone: "Asia/Shanghai"}},
		[]registry.Bed{{ID: "b1", SiteID: "s1", RoomID: "101", Name: "1"}},
		[]registry.Resident{{ID: "res-001", SiteID: "s1", BedID: "b1", Name: "Wang Xiuying", Names: registry.Names{"zh-CN": "王秀英"}}},
		nil, nil, nil)
	places := RegistryPlaces(func() *registry.Snapshot { return sn })
	res := "res-001"
	a := Alert{ID: 7, Site: "s1", Resident: &res, Device: "d1", Type: TypeFall, Severity: SeverityCritical, Status: StatusOpen,
		OpenedAt: time.Date(2026, 1, 15, 2, 0, 0, 0, time.UTC)}
	for lang, want := range map[string]string{"zh-CN": "王秀英", "en": "Wang Xiuying", "": "Wang Xiuying"} {
		if got := places.PlaceOf(a, lang).Resident; got != want {
			t.Errorf("PlaceOf(%q).Resident = %q, want %q", lang, got, want)
		}
	}
	r := &Renderer{Places: places}
	n := Notice{Change: Change{ID: "n1", Event: EventOpened, Alert: a}}
	for _, c := range []Contact{{ID: "zhang", Lang: "zh-CN"}, {ID: "lead", Lang: "en"}} {
		m, err := r.ForContact(context.Background(), n, c, "email")
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"zh-CN": "王秀英，101 房 1 床", "en": "Wang Xiuying, room 101, bed 1"}[c.Lang] // a room without a name: its id
		other := map[string]string{"zh-CN": "Wang Xiuying", "en": "王秀英"}[c.Lang]
		if !strings.Contains(m.Subject, want) || strings.Contains(m.Subject+m.Text(), other) {
			t.Errorf("%s subject %q: want %q and not %q", c.Lang, m.Subject, want, other)
		}
	}
	// A named room is written by its name in the reader's language.
	sn.WithRooms([]registry.Room{{ID: "101", SiteID: "s1", Name: "Room 101", Names: registry.Names{"zh-CN": "一楼东 101 室"}}})
	for lang, want := range map[string]string{"zh-CN": "王秀英，一楼东 101 室 1 床", "en": "Wang Xiuying, Room 101, bed 1"} {
		m, err := r.ForContact(context.Background(), n, Contact{ID: "x", Lang: lang}, "email")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(m.Subject, want) {
			t.Errorf("%s subject %q: want %q", lang, m.Subject, want)
		}
	}
}
