package dashboard

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestAlertsOfRetiredResident: once a resident is retired from the
// registry, their alerts' timelines stayed listed in the history but
// answered 404 to everyone, and an alert still open could not be
// acknowledged or resolved. Now the staff of the alert's site (and
// admins) read and close them; another site's staff and family do not.
func TestAlertsOfRetiredResident(t *testing.T) {
	t.Parallel()
	hs := newHistoryStore(t)
	opened := testNow.Add(-time.Hour)
	closed := hs.add(t, histAlert{site: "demo-station", resident: "res-gone", device: "fd-9", typ: "fall", sev: "critical", opened: opened,
		ackBy: "Nurse Zhang", resolveBy: "Nurse Zhang", outcome: "injury", note: "moved to hospital"})
	open := hs.add(t, histAlert{site: "demo-station", resident: "res-gone", device: "fd-9", typ: "fall", sev: "critical", opened: opened.Add(time.Minute)})
	ts := newTestServer(t, func(_ *Config, d *Deps) { d.Alerts, d.History, d.Registry = hs.m, hs.m, historyRegistry() })
	for user, want := range map[string]int{"nurse": 200, "admin": 200, "lead": 200, "faraway": 404, "farmanager": 404, "daughter": 404} {
		c, _ := ts.loginAs(t, user)
		if r, _ := ts.do(t, "GET", fmt.Sprintf("/alerts/%d", closed), nil, map[string]string{"Cookie": c}); r.StatusCode != want {
			t.Errorf("%s: timeline of a retired resident's alert: %d, want %d", user, r.StatusCode, want)
		}
	}
	fc, fcsrf := ts.loginAs(t, "faraway")
	if r, _ := ts.form(t, fc, fmt.Sprintf("/alerts/%d/ack", open), url.Values{"_csrf": {fcsrf}}); r.StatusCode != 404 {
		t.Errorf("another site's caregiver acknowledged: %d", r.StatusCode)
	}
	c, csrf := ts.loginAs(t, "nurse")
	if r, _ := ts.form(t, c, fmt.Sprintf("/alerts/%d/ack", open), url.Values{"_csrf": {csrf}}); r.StatusCode != 303 {
		t.Errorf("acknowledge the open alert of a retired resident: %d", r.StatusCode)
	}
	if a, err := hs.m.Get(t.Context(), open); err != nil || a.Status != "acknowledged" {
		t.Errorf("alert %+v %v", a, err)
	}
}

// TestRetiredResidentNotLinked: the alert lists and the board show a
// retired resident's open alert with the resident's id and no link to
// their page (which answers 404).
func TestRetiredResidentNotLinked(t *testing.T) {
	t.Parallel()
	hs := newHistoryStore(t)
	id := hs.add(t, histAlert{site: "demo-station", resident: "res-gone", device: "fd-9", typ: "fall", sev: "critical", opened: testNow.Add(-time.Minute)})
	ts := newTestServer(t, func(_ *Config, d *Deps) { d.Alerts, d.History, d.Registry = hs.m, hs.m, historyRegistry() })
	c, _ := ts.loginAs(t, "nurse")
	for _, p := range []string{"/alerts", "/board"} {
		resp, page := ts.do(t, "GET", p, nil, map[string]string{"Cookie": c})
		if resp.StatusCode != 200 || !strings.Contains(page, fmt.Sprintf(`data-alert="%d"`, id)) || !strings.Contains(page, "res-gone") {
			t.Errorf("%s (%d) does not list the retired resident's alert", p, resp.StatusCode)
		}
		if strings.Contains(page, `href="/residents/res-gone"`) {
			t.Errorf("%s links to the retired resident's page", p)
		}
	}
}
