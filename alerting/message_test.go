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
)

type fixedPlaces map[string]Place

func (f fixedPlaces) PlaceOf(a Alert) Place { return f[*a.Resident] }

func testRenderer(t *testing.T) *Renderer {
	sh, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		t.Fatal(err)
	}
	return &Renderer{
		Places: fixedPlaces{"res-001": {Resident: "王秀英", Room: "101", Bed: "1", Site: "阳光护理站", Zone: sh}},
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
			"en":    {"[CRITICAL] Fall (escalated, not acknowledged): 王秀英, room 101, bed 1", "Time: 2026-01-15 10:00 (Asia/Shanghai)", "/ack/email-lead-"},
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
