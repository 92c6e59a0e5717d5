package dashboard

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/alerting"
)

// An API client's token of one site cannot read or acknowledge another
// site's alerts; its acknowledgement names the person given; the
// bootstrap token retires once clients have tokens; revoking works at once.
func TestAPIClientTokens(t *testing.T) {
	t.Parallel()
	var fa *fakeAlerts
	ts := newTestServer(t, func(_ *Config, d *Deps) {
		fa = newFakeAlerts(func() time.Time { return testNow }, append(testAlerts(),
			alerting.Alert{ID: 4, Site: "other-site", Device: "fd-x", Type: "sos", Severity: "critical", Status: "open", OpenedAt: testNow.Add(-time.Minute)})...)
		d.Alerts = fa
	})
	admin, csrf := ts.loginAs(t, "admin")
	resp, page := ts.postForm(t, admin, "/admin/tokens", url.Values{"_csrf": {csrf}, "name": {"nursecall"}, "sites": {"demo-station"}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("add client: %d", resp.StatusCode)
	}
	m := regexp.MustCompile(`data-token>(ec_[A-Za-z0-9_-]+)<`).FindStringSubmatch(page)
	if m == nil {
		t.Fatal("the new token is not shown")
	}
	tok := m[1]
	if resp, _ := ts.postForm(t, admin, "/admin/tokens", url.Values{"_csrf": {csrf}, "name": {"nursecall"}}); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("second client of the same name: %d", resp.StatusCode)
	}
	hdr := func(tok string) map[string]string {
		return map[string]string{"Authorization": "Bearer " + tok, "Content-Type": "application/json"}
	}
	if r, _ := ts.do(t, "GET", "/api/v1/alerts", nil, hdr(testToken)); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("bootstrap token after the first client token: %d, want 401", r.StatusCode)
	}
	r, body := ts.do(t, "GET", "/api/v1/alerts", nil, hdr(tok))
	if r.StatusCode != 200 || strings.Contains(body, `"id":4`) || !strings.Contains(body, `"id":1`) {
		t.Fatalf("list with a demo-station token: %d %s", r.StatusCode, body)
	}
	for _, tc := range []struct{ method, path string }{
		{"GET", "/api/v1/alerts/4"}, {"POST", "/api/v1/alerts/4/ack"}, {"POST", "/api/v1/alerts/4/resolve"}, {"GET", "/api/v1/alerts?site=other-site"},
	} {
		if r, _ := ts.do(t, tc.method, tc.path, strings.NewReader(`{"outcome":"other","note":"x"}`), hdr(tok)); r.StatusCode != http.StatusNotFound {
			t.Errorf("%s %s of another site: %d, want 404", tc.method, tc.path, r.StatusCode)
		}
	}
	if a, _ := fa.Get(context.Background(), 4); a.Status != alerting.StatusOpen {
		t.Fatal("another site's alert changed")
	}
	if r, _ := ts.do(t, "POST", "/api/v1/alerts/1/ack", strings.NewReader(`{"actor":"faraway"}`), hdr(tok)); r.StatusCode != http.StatusBadRequest {
		t.Errorf("acting for a carer of another site: %d, want 400", r.StatusCode)
	}
	if r, body := ts.do(t, "POST", "/api/v1/alerts/1/ack", strings.NewReader(`{"actor":"nurse"}`), hdr(tok)); r.StatusCode != 200 {
		t.Fatalf("ack naming nurse: %d %s", r.StatusCode, body)
	}
	h, _ := fa.History(context.Background(), 1)
	if last := h[len(h)-1]; last.Actor != "nurse" || last.Channel != "api:nursecall" {
		t.Errorf("acknowledgement recorded as %s via %s, want nurse via api:nursecall", last.Actor, last.Channel)
	}
	if r, _ := ts.do(t, "POST", "/api/v1/alerts/2/ack", nil, hdr(tok)); r.StatusCode != 200 {
		t.Errorf("ack without actor: %d", r.StatusCode)
	} else if a, _ := fa.Get(context.Background(), 2); a.AcknowledgedBy != "api:nursecall" {
		t.Errorf("ack without actor recorded as %q, want api:nursecall", a.AcknowledgedBy)
	}
	resp, _ = ts.postForm(t, admin, "/admin/tokens/nursecall/revoke", url.Values{"_csrf": {csrf}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("revoke: %d", resp.StatusCode)
	}
	if r, _ := ts.do(t, "GET", "/api/v1/alerts", nil, hdr(tok)); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("revoked token: %d, want 401", r.StatusCode)
	}
	_, page = ts.do(t, "GET", "/admin/tokens", nil, map[string]string{"Cookie": admin})
	if !strings.Contains(page, `data-client="nursecall"`) || strings.Contains(page, tok) {
		t.Error("the list lacks the client or shows its token again")
	}
}
