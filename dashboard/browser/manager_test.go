package browser_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	firmwaresim "github.com/eldercare-iot/eldercare/firmware-sim"
)

// TestManagerPages drives the manager's pages (issue 14 item 5) in
// headless Chromium at 390x844 and 1280x900, in English and Chinese: the
// trends page draws its charts with the target line and states the
// target; device health lists a device whose battery reading (12 %,
// written to InfluxDB as ingest writes it) is below 20 %; a handover note
// written by the nurse lead on her phone is read by the manager; every
// page fits the phone and has no serious axe-core violation.
// Screenshots go to $ELDERCARE_ARTIFACTS.
func TestManagerPages(t *testing.T) {
	t.Parallel()
	st := startStack(t)
	root := browser(t)
	dir := artifactsDir(t)
	axe := axeSource(t)

	// A low battery on fd-001 and a good one on fd-003, as ingest writes
	// readings.
	now := time.Now()
	line := fmt.Sprintf("readings,site=%[1]s,device=fd-001,resident=res-001,kind=fall_detector battery_pct=12 %[2]d\n"+
		"readings,site=%[1]s,device=fd-003,resident=res-003,kind=fall_detector battery_pct=87 %[2]d\n", firmwaresim.DemoSite, now.Add(-time.Minute).UnixNano())
	st.writeInflux(t, line)
	// Alerts for the trends: one acknowledged, one left open.
	st.publishFall(t)
	open1 := waitOpen(t, st, 1)
	if _, err := st.mgr.Acknowledge(context.Background(), open1[0].ID, "carer", "dashboard"); err != nil {
		t.Fatal(err)
	}

	note := fmt.Sprintf("Wang Xiuying coughed at night, check SpO2 (%d)", now.Unix()%1000)
	t.Run("lead writes a handover note on the phone", func(t *testing.T) {
		ctx := userContext(t, root, 390, 844)
		login(t, ctx, st, "lead")
		if code := open(t, ctx, st, "/manager/handover?lang=en"); code != 200 {
			t.Fatalf("handover: HTTP %d", code)
		}
		sel := fmt.Sprintf(`form.handover-form:has(input[name="site"][value=%q])`, firmwaresim.DemoSite)
		if code := fillAndSubmit(t, ctx, sel, map[string][]string{"note": {note}}); code != 200 {
			t.Fatalf("save note: HTTP %d", code)
		}
		if got := text(t, ctx, ".handover-notes"); !strings.Contains(got, note) || !strings.Contains(got, "Li Lead") {
			t.Errorf("handover notes after saving: %q", got)
		}
		shot(t, ctx, dir, "manager-phone-lead-en_handover")
	})

	sizes := []struct {
		name string
		w, h int64
	}{{"phone", 390, 844}, {"desktop", 1280, 900}}
	ctxs := make([]context.Context, len(sizes))
	for i, vp := range sizes {
		ctxs[i] = userContext(t, root, vp.w, vp.h)
		login(t, ctxs[i], st, "manager")
	}
	// The phone and the desktop side by side, the languages one after the
	// other (the page's ?lang= sets the account's language).
	for _, lang := range []string{"en", "zh-CN"} {
		t.Run(lang, func(t *testing.T) {
			for i, vp := range sizes {
				t.Run(vp.name, func(t *testing.T) {
					t.Parallel()
					ctx := ctxs[i]
					check := func(p string) {
						t.Helper()
						if vp.w < 600 {
							if w, _ := eval[int64](ctx, `document.documentElement.scrollWidth`); w > vp.w+1 {
								t.Errorf("%s %s at %d px: the page is %d px wide", lang, p, vp.w, w)
							}
						}
						if vs := axeRun(t, ctx, axe); len(vs) > 0 {
							t.Errorf("%s %s %s: axe-core: %s", vp.name, lang, p, strings.Join(vs, "; "))
						}
						shot(t, ctx, dir, fmt.Sprintf("manager-%s-manager-%s%s", vp.name, lang, strings.ReplaceAll(p, "/", "_")))
					}
					if code := open(t, ctx, st, "/manager/trends?lang="+lang); code != 200 {
						t.Fatalf("trends: HTTP %d", code)
					}
					c, cancel := within(ctx, 15*time.Second)
					_, err := chromedp.Run(c, chromedp.Poll[bool](`document.querySelectorAll('[data-trend][data-state="ready"] canvas').length === 2 ? true : null`))
					cancel()
					if err != nil {
						t.Fatalf("%s: the trend charts were not drawn: %v", lang, err)
					}
					// The share chart has the target line as its second series.
					legend := text(t, ctx, `[data-trend="share"] .u-legend`)
					target := text(t, ctx, "#target-text")
					wantTarget := map[string]string{"en": "90 % acknowledged within 2 min", "zh-CN": "90% 的告警在 2 分钟内确认"}[lang]
					if target != wantTarget || !strings.Contains(legend, wantTarget) {
						t.Errorf("%s: target %q, legend %q; want %q in both", lang, target, legend, wantTarget)
					}
					if got := text(t, ctx, "#overall"); !strings.Contains(got, map[string]string{"en": "of 1 alerts", "zh-CN": "1 条告警"}[lang]) {
						t.Errorf("%s: overall figure %q", lang, got)
					}
					check("/manager/trends")

					open(t, ctx, st, "/manager/devices")
					low := text(t, ctx, "#low-battery")
					if !strings.Contains(low, "fd-001") || !strings.Contains(low, "12 %") || strings.Contains(low, "fd-003") {
						t.Errorf("%s: low-battery list %q, want fd-001 at 12 %% and not fd-003", lang, low)
					}
					check("/manager/devices")

					open(t, ctx, st, "/manager/programme")
					if got := text(t, ctx, "#visits"); !strings.Contains(got, "%") {
						t.Errorf("%s: visit coverage %q", lang, got)
					}
					check("/manager/programme")

					open(t, ctx, st, "/manager/handover")
					if got := text(t, ctx, ".handover-notes"); !strings.Contains(got, note) {
						t.Errorf("%s: the manager does not see the lead's note: %q", lang, got)
					}
					if got := text(t, ctx, ".open-alerts"); got == "" {
						t.Errorf("%s: handover shows no open alert", lang)
					}
					check("/manager/handover")
				})
			}
		})
	}
	open(t, ctxs[0], st, "/manager?lang=en")
}
