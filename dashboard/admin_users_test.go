package dashboard

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// TestAdminUsers: the admin changes a role and sites, ends sessions,
// resets a password and disables an account; each takes effect at once
// and is audited. "Add a user" offers the least privileged role first.
func TestAdminUsers(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, nil)
	admin, csrf := ts.loginAs(t, "admin")
	ck := map[string]string{"Cookie": admin}

	_, page := ts.do(t, "GET", "/admin", nil, ck)
	if !regexp.MustCompile(`<select name="role"><option value="family" selected>`).MatchString(page) {
		t.Error("the add-user role picker does not default to family (least privileged)")
	}
	if !strings.Contains(page, `href="/manager/audit"`) || !strings.Contains(page, `href="/admin/users/nurse"`) {
		t.Error("the admin page links neither the audit log nor the user pages")
	}

	post := func(user string, v url.Values) (*http.Response, string) {
		v.Set("_csrf", csrf)
		return ts.form(t, admin, "/admin/users/"+user, v)
	}
	nurse, _ := ts.loginAs(t, "nurse")
	// Role and sites.
	resp, body := post("nurse", url.Values{"action": {"save"}, "name": {"Nurse Zhang"}, "role": {RoleNurseLead}, "lang": {"en"}, "sites": {"demo-station"}})
	if resp.StatusCode != 200 {
		t.Fatalf("save: %d %.300s", resp.StatusCode, body)
	}
	u, err := ts.acc.ByUsername(context.Background(), "nurse")
	if err != nil || u.Role != RoleNurseLead || strings.Join(u.Sites, ",") != "demo-station" {
		t.Errorf("after save: %+v %v", u, err)
	}
	// A caregiver without a site is refused, beside the field.
	resp, body = post("nurse", url.Values{"action": {"save"}, "role": {RoleCaregiver}, "lang": {"en"}})
	if resp.StatusCode != 400 || !strings.Contains(body, "at least one site") {
		t.Errorf("no sites: %d, want 400 with the reason", resp.StatusCode)
	}
	// End sessions: the nurse's session is gone.
	if resp, _ := post("nurse", url.Values{"action": {"end_sessions"}}); resp.StatusCode != 200 {
		t.Fatalf("end sessions: %d", resp.StatusCode)
	}
	if resp, _ := ts.do(t, "GET", "/board", nil, map[string]string{"Cookie": nurse}); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("the nurse's old session still works: %d", resp.StatusCode)
	}
	// Reset password: the old one fails, the shown one works.
	_, body = post("nurse", url.Values{"action": {"reset_password"}})
	m := regexp.MustCompile(`<code class="password">([^<]+)</code>`).FindStringSubmatch(body)
	if m == nil {
		t.Fatal("no new password shown")
	}
	if resp := ts.postLogin(t, "nurse", testPassword, ""); resp.StatusCode == http.StatusSeeOther {
		t.Error("the old password still logs in")
	}
	if resp := ts.postLogin(t, "nurse", m[1], ""); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("the new password does not log in: %d", resp.StatusCode)
	}
	// Disable: no login, no session.
	if resp, _ := post("nurse", url.Values{"action": {"disable"}}); resp.StatusCode != 200 {
		t.Fatalf("disable: %d", resp.StatusCode)
	}
	if resp := ts.postLogin(t, "nurse", m[1], ""); resp.StatusCode == http.StatusSeeOther {
		t.Error("a disabled account logs in")
	}
	// The admin cannot disable themselves.
	if resp, _ := post("admin", url.Values{"action": {"disable"}}); resp.StatusCode != 400 {
		t.Errorf("self-disable: %d, want 400", resp.StatusCode)
	}
	es, err := ts.acc.Audit(context.Background(), AuditFilter{Target: "user:nurse"})
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range es {
		actions = append(actions, e.Action)
	}
	for _, want := range []string{"update_user", "end_sessions", "reset_password", "disable_user"} {
		if !strings.Contains(strings.Join(actions, " "), want) {
			t.Errorf("audit of user:nurse lacks %s: %v", want, actions)
		}
	}
	// A caregiver cannot open the page.
	lead, _ := ts.loginAs(t, "lead")
	if resp, _ := ts.do(t, "GET", "/admin/users/nurse", nil, map[string]string{"Cookie": lead}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("nurse lead on a user page: %d, want 403", resp.StatusCode)
	}
}

// TestAuditPageFilters: the audit page filters by user, action and date
// (in the site's zone) and shows times in the site's zone.
func TestAuditPageFilters(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, nil)
	ts.loginAs(t, "nurse")
	_, _ = ts.loginAs(t, "lead")
	admin, _ := ts.loginAs(t, "admin")
	ck := map[string]string{"Cookie": admin}
	_, page := ts.do(t, "GET", "/manager/audit?user=nurse&action=login", nil, ck)
	rows := page[strings.Index(page, "<tbody>"):]
	if strings.Count(rows, "<tr>") != 1 || !strings.Contains(rows, ">nurse (caregiver)<") {
		t.Errorf("user=nurse&action=login: want one row of nurse: %.400s", rows)
	}
	// testNow is 2026-03-01 08:00 UTC = 16:00 CST; the login rows carry
	// no site: they are shown in the admin's default zone (the first site's).
	if !strings.Contains(rows, "2026-03-01 16:00:00 CST") {
		t.Errorf("time not in the site's zone: %.400s", rows)
	}
	_, page = ts.do(t, "GET", "/manager/audit?from=2026-03-02", nil, ck)
	if strings.Contains(page, "<tbody>") {
		t.Error("from=2026-03-02 still lists rows of 2026-03-01")
	}
	if resp, _ := ts.do(t, "GET", "/manager/audit?from=yesterday", nil, ck); resp.StatusCode != 400 {
		t.Errorf("bad date: %d, want 400", resp.StatusCode)
	}
}
