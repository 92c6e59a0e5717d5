package dashboard

import (
	"strings"
	"testing"
)

// TestAlertRowsLinkToTimeline: an alert on /alerts, on the board's triage
// list and on the resident page links to its timeline /alerts/{id}; the
// family's page does not (that route is staff only).
func TestAlertRowsLinkToTimeline(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, nil)
	cookie, _ := ts.login(t)
	for _, c := range []struct{ path, want string }{
		{"/alerts", `<a href="/alerts/1" class="alert-link">`},
		{"/alerts", `<a href="/alerts/2" class="alert-link">`},
		{"/board", `<a href="/alerts/2" class="alert-link">`},
		{"/residents/res-001", `<a href="/alerts/1" class="alert-link">`},
	} {
		resp, page := ts.do(t, "GET", c.path, nil, map[string]string{"Cookie": cookie})
		if resp.StatusCode != 200 || !strings.Contains(page, c.want) {
			t.Errorf("%s (%d) lacks %s", c.path, resp.StatusCode, c.want)
		}
	}
	fc, _ := ts.loginAs(t, "daughter")
	resp, page := ts.do(t, "GET", "/family", nil, map[string]string{"Cookie": fc})
	if resp.StatusCode != 200 || strings.Contains(page, `class="alert-link"`) {
		t.Errorf("family page (%d) links to a staff-only timeline", resp.StatusCode)
	}
}
