package browser_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/eldercare-iot/eldercare/alerting"
	"github.com/eldercare-iot/eldercare/device/registry"
	firmwaresim "github.com/eldercare-iot/eldercare/firmware-sim"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
)

// TestOnboardDevices (issue 13, onboarding): on a real stack, an admin adds
// a device and adopts an unknown one (a device that sends telemetry but is
// not registered) from /admin/onboard, on a phone and a desktop, in English
// and Chinese; the page has no serious axe-core violation; the site form
// refuses an invalid time zone with the message the YAML import gives; the
// audit log has the changes.
func TestOnboardDevices(t *testing.T) {
	t.Parallel()
	st := startStack(t)
	root := browser(t)
	axe := axeSource(t)
	dir := artifactsDir(t)
	ctx0 := context.Background()

	// The YAML import's message for the invalid zone.
	doc, err := registry.ParseYAML(strings.NewReader("sites:\n  - {id: mars-1, name: Mars, timezone: Mars/Base}\n"))
	if err == nil {
		err = doc.Validate()
	}
	var yamlMsg string
	for _, fe := range registry.FieldErrors(err) {
		if fe.Field == "timezone" {
			yamlMsg = fe.Message
		}
	}
	if yamlMsg == "" {
		t.Fatal("the YAML import accepted Mars/Base")
	}

	// The phone and the desktop side by side, the languages one after the
	// other (the page's ?lang= sets the account's language); each adds its
	// own devices.
	n := 0
	for _, lang := range []string{"en", "zh-CN"} {
		t.Run(lang, func(t *testing.T) {
			for _, vp := range []struct {
				name string
				w, h int64
			}{{"phone", 390, 844}, {"desktop", 1280, 900}} {
				n++
				n := n
				t.Run(vp.name, func(t *testing.T) {
					t.Parallel()
					ctx := userContext(t, root, vp.w, vp.h)
					openIn(t, ctx, st, "admin", "/admin/onboard", lang)
					if vs := axeRun(t, ctx, axe); len(vs) > 0 {
						t.Errorf("axe-core: %s", strings.Join(vs, "; "))
					}
					if vp.w < 600 {
						if w, _ := eval[int64](ctx, `document.documentElement.scrollWidth`); w > vp.w+1 {
							wide, _ := eval[[]string](ctx, `[...document.querySelectorAll("body *")].filter(e => e.getBoundingClientRect().right > innerWidth + 1 && !e.closest(".table-wrap")).slice(0, 8).map(e => e.tagName + "." + e.className + "#" + e.id + " " + (e.getAttribute("name") || "") + " " + Math.round(e.getBoundingClientRect().right))`)
							t.Errorf("the page is %d px wide at %d px: %q", w, vp.w, wide)
						}
					}

					// Add a device.
					dev := fmt.Sprintf("smoke-new-%d", n)
					if code := fillAndSubmit(t, ctx, "#device-form", map[string][]string{"id": {dev}, "site": {firmwaresim.DemoSite},
						"kind": {registry.KindSmokeAlarm}, "name": {"Smoke alarm " + dev}, "name_zh": {"烟感 " + dev}, "power": {"battery"}}); code != http.StatusOK {
						t.Fatalf("add device: HTTP %d: %s", code, text(t, ctx, "main"))
					}
					if x, err := st.store.Device(ctx0, dev); err != nil || x.Kind != registry.KindSmokeAlarm || x.Names["zh-CN"] != "烟感 "+dev {
						t.Fatalf("device %s: %+v %v", dev, x, err)
					}
					if row := text(t, ctx, fmt.Sprintf(`#device-table tr[data-device=%q]`, dev)); row == "" {
						t.Error("the new device is not listed")
					}

					// A stray device sends telemetry; it is listed with its last
					// message and adopted.
					stray := fmt.Sprintf("stray-%d", n)
					st.telemetry(t, stray, time.Now(), `{"temp_c":21.5,"humidity_pct":40}`)
					sel := fmt.Sprintf(`#unknown-table tr[data-device=%q]`, stray)
					// The page lists what the store holds (Deps.Unknown): wait
					// for the store, then load the page once.
					waitFor(t, 20*time.Second, "the stray device in the store's unknown devices", func() bool {
						us, err := st.mgr.UnknownDevices(ctx0)
						if err != nil {
							t.Fatal(err)
						}
						for _, u := range us {
							if u.Device == stray && u.Messages > 0 {
								return true
							}
						}
						return false
					})
					open(t, ctx, st, "/admin/onboard")
					row := text(t, ctx, sel)
					if !strings.Contains(row, "humidity_pct=40 temp_c=21.5") || !strings.Contains(row, firmwaresim.DemoSite) {
						t.Fatalf("unknown device row %q", row)
					}
					shot(t, ctx, dir, fmt.Sprintf("onboard-%s-%s-unknown", vp.name, lang))
					href, err := eval[string](ctx, fmt.Sprintf(`document.querySelector(%q).getAttribute("href")`, sel+" a.adopt"))
					if err != nil {
						t.Fatal(err)
					}
					if code := open(t, ctx, st, href); code != http.StatusOK {
						t.Fatalf("adopt form: HTTP %d", code)
					}
					if got, _ := eval[string](ctx, `document.querySelector('#adopt-form input[name="id"]').value`); got != stray {
						t.Errorf("adopt form id %q", got)
					}
					if vs := axeRun(t, ctx, axe); len(vs) > 0 {
						t.Errorf("axe-core (adopt form): %s", strings.Join(vs, "; "))
					}
					if code := fillAndSubmit(t, ctx, "#adopt-form", map[string][]string{"kind": {registry.KindEnvSensor}, "name": {"Room sensor " + stray},
						"resident": {"res-002"}}); code != http.StatusOK {
						t.Fatalf("adopt: HTTP %d: %s", code, text(t, ctx, "main"))
					}
					if x, err := st.store.Device(ctx0, stray); err != nil || x.Kind != registry.KindEnvSensor || x.SiteID != firmwaresim.DemoSite {
						t.Fatalf("adopted %s: %+v %v", stray, x, err)
					}
					if bs, _ := st.store.Bindings(ctx0, stray); len(bs) != 1 || bs[0].ResidentID != "res-002" {
						t.Errorf("adopted device bindings %+v", bs)
					}
					if row := text(t, ctx, sel); row != "" {
						t.Errorf("the adopted device is still unknown: %q", row)
					}
					shot(t, ctx, dir, fmt.Sprintf("onboard-%s-%s-adopted", vp.name, lang))

					// The form refuses what the YAML import refuses, with its
					// message (said in Chinese on the Chinese page).
					if code := fillAndSubmit(t, ctx, "#site-form", map[string][]string{"id": {"mars-1"}, "name": {"Mars"}, "timezone": {"Mars/Base"}}); code != http.StatusBadRequest {
						t.Errorf("invalid site: HTTP %d", code)
					}
					want := yamlMsg
					if lang == "zh-CN" {
						want = "未知时区 Mars/Base：请填写 IANA 时区名，例如 Asia/Shanghai。"
					}
					if got := text(t, ctx, `#site-form .field-error`); got != want {
						t.Errorf("form message %q, want %q (YAML import %q)", got, want, yamlMsg)
					}
				})
			}
		})
	}
	if _, err := st.store.Site(ctx0, "mars-1"); err == nil {
		t.Error("the invalid site was stored")
	}
	// The changes are in the audit log.
	ctx := userContext(t, root, 1280, 900)
	login(t, ctx, st, "admin")
	open(t, ctx, st, "/manager/audit?lang=en")
	page := text(t, ctx, "main")
	for _, want := range []string{"added or changed a device", "adopted an unregistered device", "device:stray-1", "device:smoke-new-1"} {
		if !strings.Contains(page, want) {
			t.Errorf("audit log lacks %q", want)
		}
	}
}

// TestResidentCommandInBrowser (issue 13, staff commands): staff (here the admin, in Chinese, on a phone)
// closes the gas valve of a home from the resident page; the command goes
// out on the valve's command topic; the gateway's acknowledgement and the
// valve's new state move it to confirmed, which the page shows.
func TestResidentCommandInBrowser(t *testing.T) {
	t.Parallel()
	st := startStack(t)
	root := browser(t)
	dir := artifactsDir(t)
	topic := st.root + "/v1/" + firmwaresim.DemoHome + "/valve-home-li/cmd"
	got := make(chan []byte, 4)
	if tok := st.pub.Subscribe(topic, 1, func(_ paho.Client, m paho.Message) { got <- m.Payload() }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", topic, tok.Error())
	}
	ctx := userContext(t, root, 390, 844)
	login(t, ctx, st, "admin")
	if code := open(t, ctx, st, "/residents/res-101?lang=zh-CN"); code != http.StatusOK {
		t.Fatalf("resident page: HTTP %d", code)
	}
	c, cancel := within(ctx, 20*time.Second)
	defer cancel()
	if _, err := chromedp.RunResponse(c, chromedp.Click(`button[data-device="valve-home-li"][data-action="valve_close"]`)); err != nil {
		t.Fatalf("click close valve: %v", err)
	}
	var cmd struct {
		ID     string `json:"id"`
		Device string `json:"device"`
		Action string `json:"action"`
	}
	select {
	case b := <-got:
		if err := json.Unmarshal(b, &cmd); err != nil || cmd.Device != "valve-home-li" || cmd.Action != "valve_close" {
			t.Fatalf("command %s: %v", b, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no command on " + topic)
	}
	state := func() string {
		s, _ := eval[string](ctx, fmt.Sprintf(`(document.querySelector('#command-table tr[data-command=%q]') || {dataset: {}}).dataset.state || ""`, cmd.ID))
		return s
	}
	if s := state(); s != string(alerting.CommandSent) {
		t.Errorf("state shown %q, want sent", s)
	}
	// The gateway acknowledges; the valve reports it closed.
	st.publishAt(t, firmwaresim.DemoHome, "valve-home-li", "cmd/ack", fmt.Sprintf(`{"v":1,"id":%q,"device":"valve-home-li","ts":%d,"status":"accepted"}`, cmd.ID, time.Now().UnixMilli()))
	id := st.nextID()
	st.publishAt(t, firmwaresim.DemoHome, "valve-home-li", "telemetry", fmt.Sprintf(`{"v":1,"device":"valve-home-li","boot":1,"id":%d,"seq":%d,"ts":%d,"values":{"valve_open":0}}`,
		id, id, time.Now().UnixMilli()))
	// The page shows what the engine tracks (Deps.Commands): wait for the
	// engine, then reload the page once.
	waitFor(t, 15*time.Second, "command "+cmd.ID+" confirmed in the engine", func() bool {
		for _, c := range st.alr.Commands(0) {
			if c.ID == cmd.ID && c.State == alerting.CommandConfirmed {
				return true
			}
		}
		return false
	})
	open(t, ctx, st, "/residents/res-101")
	if s := state(); s != string(alerting.CommandConfirmed) {
		t.Errorf("state shown %q, want confirmed", s)
	}
	shot(t, ctx, dir, "resident-command-phone-zh")

	// Medication adherence: the pill box reports a dose; the resident page
	// and the manager's adherence page count it.
	id = st.nextID()
	st.publishAt(t, firmwaresim.DemoHome, "pill-home-li", "event", fmt.Sprintf(`{"v":1,"device":"pill-home-li","boot":1,"id":%d,"seq":%d,"ts":%d,"type":"dose_taken","attrs":{"slot":"08:00"}}`,
		id, id, time.Now().UnixMilli()))
	taken := func() int64 {
		n, _ := eval[int64](ctx, `[...document.querySelectorAll("#adherence tbody tr")].reduce((s, tr) => s + (+tr.cells[1].innerText) + (+tr.cells[2].innerText), 0)`)
		return n
	}
	// The page counts the store's doses (Deps.Doses): wait for the store,
	// then reload the page once.
	waitFor(t, 15*time.Second, "the dose taken in the store", func() bool {
		recs, err := st.mgr.Doses(context.Background(), []string{"res-101"}, time.Now().AddDate(0, 0, -30), time.Now().Add(24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if !r.Taken.IsZero() {
				return true
			}
		}
		return false
	})
	open(t, ctx, st, "/residents/res-101")
	if n := taken(); n != 1 {
		t.Errorf("resident page adherence counts %d doses taken, want 1", n)
	}
	if code := open(t, ctx, st, "/manager/adherence"); code != http.StatusOK {
		t.Fatalf("/manager/adherence: HTTP %d", code)
	}
	if row := text(t, ctx, `#adherence-table tr[data-resident="res-101"]`); !strings.Contains(row, "100 %") {
		t.Errorf("manager adherence row %q", row)
	}
	shot(t, ctx, dir, "manager-adherence-phone-zh")

	// The safe zone and the wristband's positions (from InfluxDB) drawn.
	var lp strings.Builder
	now := time.Now()
	for i := range 5 {
		fmt.Fprintf(&lp, "readings,site=%s,device=band-home-li,resident=res-101,kind=locator lat_deg=%f,lon_deg=%f %d\n",
			firmwaresim.DemoHome, 31.2304+0.0004*float64(i), 121.4737+0.0003*float64(i), now.Add(-time.Duration(5-i)*time.Minute).UnixNano())
	}
	st.writeInflux(t, lp.String())
	open(t, ctx, st, "/residents/res-101")
	pts, err := eval[int64](ctx, `(() => { const p = document.querySelector("#zones svg polyline.track"); return p ? p.getAttribute("points").trim().split(/\s+/).length : 0 })()`)
	if err != nil || pts != 5 {
		t.Errorf("track drawn with %d points (%v), want 5", pts, err)
	}
	if z, _ := eval[int64](ctx, `document.querySelectorAll('#zones svg [data-zone="home"]').length`); z != 1 {
		t.Errorf("safe zone drawn %d times", z)
	}
	shot(t, ctx, dir, "resident-zones-phone-zh")
}

// publishAt publishes payload on dev's channel kind of site.
func (st *stack) publishAt(t *testing.T, site, dev, kind, payload string) {
	t.Helper()
	topic := st.root + "/v1/" + site + "/" + dev + "/" + kind
	if err := mqttconn.Wait(context.Background(), st.pub.Publish(topic, 1, false, payload), 5*time.Second, "publish "+kind); err != nil {
		t.Fatal(err)
	}
}
