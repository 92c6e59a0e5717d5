package browser_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/eldercare-iot/eldercare/alerting"
	firmwaresim "github.com/eldercare-iot/eldercare/firmware-sim"
)

// fillAndSubmit sets form fields by name (a select's options by value, a
// checkbox by "on") in the form matching formSel, submits it and returns
// the HTTP status of the page it loads.
func fillAndSubmit(t *testing.T, ctx context.Context, formSel string, fields map[string][]string) int64 {
	t.Helper()
	var js strings.Builder
	fmt.Fprintf(&js, `(() => { const f = document.querySelector(%q); if (!f) return "no form";`, formSel)
	for name, vals := range fields {
		fmt.Fprintf(&js, `{ const els = f.querySelectorAll('[name=%q]'); const vals = %s;
			if (!els.length) return "no field %s";
			for (const el of els) {
				if (el.tagName === "SELECT") { for (const o of el.options) o.selected = vals.includes(o.value); }
				else if (el.type === "checkbox") { el.checked = vals.includes(el.value) || vals.includes("on"); }
				else el.value = vals[0];
			} }`, name, jsList(vals), name)
	}
	js.WriteString(`return "ok"; })()`)
	res, err := eval[string](ctx, js.String())
	if err != nil || res != "ok" {
		t.Fatalf("fill %s: %v %s", formSel, err, res)
	}
	c, cancel := within(ctx, 20*time.Second)
	defer cancel()
	resp, err := chromedp.RunResponse(c, chromedp.Submit(chromedp.CSS(formSel+` button[type="submit"]`)))
	if err != nil {
		t.Fatalf("submit %s: %v", formSel, err)
	}
	return resp.Status
}

func jsList(vs []string) string {
	q := make([]string, len(vs))
	for i, v := range vs {
		q[i] = fmt.Sprintf("%q", v)
	}
	return "[" + strings.Join(q, ",") + "]"
}

// text returns the inner text of the first element matching sel ("" when
// none).
func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	s, err := eval[string](ctx, fmt.Sprintf(`(document.querySelector(%q) || {}).innerText || ""`, sel))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A policy and roster made through the admin pages in a real browser page
// a staff account; a form naming an unknown account is refused with the
// reason beside the step; a policy that reaches nobody is refused.
func TestAdminPolicyPagesStaff(t *testing.T) {
	t.Parallel()
	st := startStack(t)
	b := browser(t)
	login(t, b, st, "admin")

	// The carer's contacts, set by the admin, make the account pageable.
	open(t, b, st, "/admin/contacts/carer")
	if code := fillAndSubmit(t, b, `form[action="/admin/contacts/carer"]`, map[string][]string{"email": {"carer@example.org"}, "in_app": {"on"}}); code != 200 {
		t.Fatalf("contacts: %d", code)
	}

	open(t, b, st, "/admin")
	code := fillAndSubmit(t, b, "#policy-form", map[string][]string{"id": {"sos-first"}, "step_after_0": {"0s"}, "step_other_0": {"account:ghost"}})
	if msg := text(t, b, "#step-0 .field-error"); code != 400 || !strings.Contains(msg, `unknown staff account "ghost"`) {
		t.Fatalf("unknown account: status %d, beside step 0: %q", code, msg)
	}
	code = fillAndSubmit(t, b, "#policy-form", map[string][]string{"id": {"sos-first"}, "step_after_0": {"0s"}, "step_other_0": {""}, "step_target_0": {"on_duty"}})
	if msg := text(t, b, "#policy-form"); code != 400 || !strings.Contains(msg, "reach nobody") {
		t.Fatalf("policy reaching nobody (no roster yet): status %d, form says %q", code, msg)
	}

	code = fillAndSubmit(t, b, "#roster-form", map[string][]string{"site": {"demo-station"}, "zone": {"Asia/Shanghai"},
		"shift_name_0": {"all-day"}, "shift_start_0": {"00:00"}, "shift_end_0": {"00:00"}, "shift_staff_0": {"carer"}})
	if code != 200 || !strings.Contains(text(t, b, "#rosters"), "all-day") {
		t.Fatalf("roster: status %d, rosters: %q", code, text(t, b, "#rosters"))
	}
	code = fillAndSubmit(t, b, "#policy-form", map[string][]string{"id": {"sos-first"}, "step_after_0": {"1s"}, "step_target_0": {"on_duty"}, "step_other_0": {""}})
	if code != 200 || !strings.Contains(text(t, b, "#policies"), "sos-first") {
		t.Fatalf("policy: status %d, policies: %q", code, text(t, b, "#policies"))
	}

	st.publishFall(t)
	a := openAlert(t, st)
	deadline := time.Now().Add(20 * time.Second)
	for {
		h, err := st.mgr.History(context.Background(), a.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range h {
			if e.Action == alerting.ActionEscalated && strings.Contains(e.Detail, "policy sos-first step 0: carer") {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the fall's step 0 paged nobody named carer within 20 s: %+v", h)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A one-tap link, opened in a browser with no session, acknowledges the
// alert once as its person and channel; a second use and a tampered link
// are refused.
func TestAckLinkInBrowser(t *testing.T) {
	t.Parallel()
	st := startStack(t)
	b := browser(t)
	st.publishFall(t)
	a := openAlert(t, st)
	ctx := context.Background()
	tok, err := st.mgr.AckToken(ctx, a.ID, "carer", "email")
	if err != nil {
		t.Fatal(err)
	}
	if code := open(t, b, st, alerting.AckPath+tok[:len(tok)-3]+"AAA"); code != 404 {
		t.Errorf("tampered link: %d, want 404", code)
	}
	if code := open(t, b, st, alerting.AckPath+tok); code != 200 {
		t.Fatalf("link page: %d", code)
	}
	if got, _ := st.mgr.Get(ctx, a.ID); got.Status != alerting.StatusOpen {
		t.Fatal("opening the link (GET) acknowledged the alert")
	}
	c, cancel := within(b, 20*time.Second)
	defer cancel()
	if _, err := chromedp.RunResponse(c, chromedp.Click(chromedp.CSS(`form button[type="submit"]`))); err != nil {
		t.Fatal(err)
	}
	if s := text(t, b, "[data-ack-done]"); s == "" {
		t.Fatalf("no confirmation; page: %q", text(t, b, "main"))
	}
	got, _ := st.mgr.Get(ctx, a.ID)
	h, _ := st.mgr.History(ctx, a.ID)
	var ack alerting.HistoryEntry
	for _, e := range h {
		if e.Action == "acknowledged" {
			ack = e
		}
	}
	if got.Status != alerting.StatusAcknowledged || got.AcknowledgedBy != "carer" || ack.Actor != "carer" || ack.Channel != "email link" {
		t.Fatalf("alert %+v, acknowledgement %+v", got, ack)
	}
	if code := open(t, b, st, alerting.AckPath+tok); code != 409 {
		t.Errorf("used link page: %d, want 409", code)
	}
}

// Call assurance through the real API: firmware-sim's SOS button sos-101-2
// presses, the platform (embedded broker, alerting, dashboard) opens the
// SOS alert, an API client acknowledges it naming the nurse, and the
// button receives call_acknowledged on its cmd topic and shows "help is
// coming".
func TestCallAssuranceThroughAPI(t *testing.T) {
	t.Parallel()
	st := startStack(t)
	// The alerting engine is subscribed once a fall opens its alert (a
	// fall published before it subscribed is lost: publish again).
	for start := time.Now(); ; {
		st.publishFall(t)
		var as []alerting.Alert
		for wait := time.Now(); len(as) == 0 && time.Since(wait) < 2*time.Second; time.Sleep(20 * time.Millisecond) {
			var err error
			if as, err = st.mgr.List(context.Background(), alerting.Filter{Status: []string{alerting.StatusOpen}}); err != nil {
				t.Fatal(err)
			}
		}
		if len(as) > 0 {
			break
		}
		if time.Since(start) > 30*time.Second {
			t.Fatal("alerting opened no alert for 30 s of falls")
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	help := &firmwaresim.HelpState{}
	done := make(chan error, 1)
	go func() {
		done <- firmwaresim.RunSOS(ctx, firmwaresim.SOSConfig{DeviceConfig: firmwaresim.DeviceConfig{MQTTURL: st.mqttURL, Root: st.root,
			Site: firmwaresim.DemoSite, Device: "sos-101-2", Logger: slog.New(slog.DiscardHandler)}, AwaitHelp: 2 * time.Minute, Help: help})
	}()
	var sos alerting.Alert
	deadline := time.Now().Add(20 * time.Second)
	for sos.ID == 0 {
		as, err := st.mgr.List(context.Background(), alerting.Filter{Status: []string{alerting.StatusOpen}})
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range as {
			if a.Device == "sos-101-2" && a.Type == alerting.TypeSOS {
				sos = a
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no SOS alert of sos-101-2 within 20 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if help.Coming() {
		t.Fatal("help is coming before anyone acknowledged")
	}
	req, _ := http.NewRequest("POST", fmt.Sprintf("%s/api/v1/alerts/%d/ack", st.base, sos.ID), strings.NewReader(`{"actor":"carer"}`))
	req.Header.Set("Authorization", "Bearer browser-test-token-0123456789")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("API acknowledge: %d %s", resp.StatusCode, body)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the SOS button got no call_acknowledged within 20 s of the API acknowledgement")
	}
	if !help.Coming() || help.Last() == nil || help.Last().Params["alert"] != float64(sos.ID) {
		t.Fatalf("help coming %v, command %+v", help.Coming(), help.Last())
	}
	t.Logf("the button shows help coming; acknowledged by %v", help.Last().Params["by"])
}
