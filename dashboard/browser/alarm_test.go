package browser_test

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/eldercare-iot/eldercare/alerting"
)

// alarmBrowser is a full Chromium of its own (the autoplay policy is a
// switch of the process, and the headless shell shows no notifications) with the autoplay policy of a phone on which the user has
// already tapped (--autoplay-policy=no-user-gesture-required) and the
// notification permission granted to the stack's origin through the
// DevTools protocol (Browser.grantPermissions). The product still asks for
// one tap ("Enable alarm"), which the test makes.
func alarmBrowser(t *testing.T, origin string) context.Context {
	t.Helper()
	needChromium(t)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), chromeOptions(chromiumPath, chromedp.Flag("autoplay-policy", "no-user-gesture-required"))...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); acancel() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	params := map[string]any{"permissions": []string{"notifications"}, "origin": origin}
	if err := chromedp.FromContext(ctx).Browser.Call(ctx, "Browser.grantPermissions", params, nil); err != nil {
		t.Fatalf("Browser.grantPermissions: %v", err)
	}
	return ctx
}

// poll waits (up to d) until the JavaScript expression expr is truthy.
func poll(t *testing.T, ctx context.Context, d time.Duration, expr, what string) {
	t.Helper()
	c, cancel := within(ctx, d)
	defer cancel()
	if _, err := chromedp.Run(c, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(20*time.Millisecond))); err != nil {
		state, _ := eval[string](ctx, `JSON.stringify({alarm: document.documentElement.dataset.alarm, tones: (window.eldercareAlarm||{}).tones, last: (window.eldercareAlarm||{}).lastTone, ringing: (window.eldercareAlarm||{}).ringing, notified: (window.eldercareAlarm||{}).notified, bar: (document.getElementById('alarm-bar')||{}).innerText})`)
		t.Fatalf("%s: not within %v: %v (state %s)", what, d, err, state)
	}
}

// TestBoardAlarm (issue 11 item 3): a new critical alert in the nurse
// lead's scope makes the open board sound its alarm (Web Audio oscillator
// started, counted by alarm.js) and show a system notification naming the
// resident, room and bed; the alarm can be tested and muted; a
// colleague's acknowledgement stops it.
func TestBoardAlarm(t *testing.T) {
	t.Parallel()
	st := startStack(t)
	ctx := alarmBrowser(t, st.base)
	if p := login(t, ctx, st, "lead"); p != "/board" {
		t.Fatalf("nurse lead landed on %s, want /board", p)
	}
	// An installable web app: manifest and an active service worker.
	poll(t, ctx, 10*time.Second, `!!document.querySelector('link[rel="manifest"]') && !!(window.eldercareAlarm && window.eldercareAlarm.swReg && window.eldercareAlarm.swReg.active)`, "service worker active")
	if v, err := eval[string](ctx, `fetch('/assets/pwa/manifest.webmanifest').then(r => r.json()).then(m => m.display + ' ' + m.start_url)`, chromedp.EvalAwaitPromise); err != nil || v != "standalone /board" {
		t.Errorf("manifest: %q %v", v, err)
	}
	// Sound needs one tap, as on a phone.
	if s, _ := eval[string](ctx, `document.documentElement.dataset.alarm`); s != "off" {
		t.Errorf("alarm state before the tap = %q, want off", s)
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#alarm-bar .alarm-enable`))); err != nil {
		t.Fatal(err)
	}
	poll(t, ctx, 5*time.Second, `document.documentElement.dataset.alarm === 'ready'`, "alarm ready after the tap")

	// The test button sounds the critical alarm once.
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`#alarm-bar .alarm-settings summary`)),
		chromedp.Click(chromedp.CSS(`#alarm-bar .alarm-test`))); err != nil {
		t.Fatal(err)
	}
	poll(t, ctx, 5*time.Second, `window.eldercareAlarm.tones === 1 && window.eldercareAlarm.lastTone.severity === 'critical' && window.eldercareAlarm.notified.length === 1`, "test alarm")

	waitSubscribers(t, st, 1)
	st.publishFall(t)
	a := openAlert(t, st)
	if a.Severity != alerting.SeverityCritical {
		t.Fatalf("fall alert severity %q, want critical", a.Severity)
	}
	id := strconv.FormatInt(a.ID, 10)
	poll(t, ctx, 10*time.Second, `document.documentElement.dataset.alarm === 'ringing' && window.eldercareAlarm.tones >= 2 && window.eldercareAlarm.lastTone.severity === 'critical' && window.eldercareAlarm.lastTone.gain >= 0.9`, "critical alarm ringing")
	// It repeats.
	poll(t, ctx, 10*time.Second, `window.eldercareAlarm.tones >= 3`, "alarm repeating")
	// The system notification, through the service worker, names the
	// resident, room and bed.
	poll(t, ctx, 10*time.Second, `window.eldercareAlarm.notified.length === 2`, "notification shown")
	notes, err := eval[string](ctx, `window.eldercareAlarm.swReg.getNotifications().then(ns => ns.map(n => n.tag + '|' + n.title + '|' + n.body).join('\n'))`,
		chromedp.EvalAwaitPromise)
	if err != nil {
		t.Fatal(err)
	}
	res, err := st.store.Residents(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	name := ""
	for _, r := range res {
		if r.ID == "res-001" {
			name = r.Name
		}
	}
	var line string
	for _, l := range strings.Split(notes, "\n") {
		if strings.HasPrefix(l, "alert-"+id+"|") {
			line = l
		}
	}
	t.Logf("notification: %s", line)
	if line == "" || !strings.Contains(line, "critical") || !strings.Contains(line, name) || !strings.Contains(line, "Room") || !strings.Contains(line, "Bed") {
		t.Errorf("notifications %q: want one tagged alert-%s naming critical, %q, its room and bed", notes, id, name)
	}
	if title, _ := eval[string](ctx, `document.title`); !strings.HasPrefix(title, "(1)") {
		t.Errorf("title while ringing = %q, want the count first", title)
	}

	// Mute for 5 minutes: no more tones, the state says muted.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#alarm-bar .alarm-mute[data-min="5"]`))); err != nil {
		t.Fatal(err)
	}
	poll(t, ctx, 5*time.Second, `document.documentElement.dataset.alarm === 'muted'`, "muted")
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#alarm-bar .alarm-unmute`))); err != nil {
		t.Fatal(err)
	}
	poll(t, ctx, 5*time.Second, `document.documentElement.dataset.alarm === 'ringing'`, "ringing again after unmute")

	// A colleague acknowledges it on their phone: this board stops ringing
	// (the acknowledgement arrives over the live stream).
	cl, csrf := sessionClient(t, st, "carer")
	resp, err := cl.PostForm(st.base+"/alerts/"+id+"/ack", url.Values{"_csrf": {csrf}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("acknowledge as carer: %d", resp.StatusCode)
	}
	poll(t, ctx, 10*time.Second, `document.documentElement.dataset.alarm === 'ready' && Object.keys(window.eldercareAlarm.ringing).length === 0`, "alarm stopped after acknowledge")
	got, err := st.mgr.Get(context.Background(), a.ID)
	if err != nil || got.Status != alerting.StatusAcknowledged {
		t.Errorf("alert %s after the click: %v %v, want acknowledged", id, got.Status, err)
	}
}
