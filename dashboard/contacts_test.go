package dashboard

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/eldercare-iot/eldercare/alerting"
	"github.com/eldercare-iot/eldercare/internal/sqldb"
	"github.com/eldercare-iot/eldercare/internal/sqldb/sqldbtest"
)

// realSettings opens a real alerting.Manager on SQLite.
func realSettings(t *testing.T) *alerting.Manager {
	t.Helper()
	ctx := context.Background()
	db, err := sqldb.Open(ctx, sqldbtest.SQLiteDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	m, err := alerting.OpenManager(ctx, db, nil)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// A staff account becomes pageable through its contacts page; a roster or
// policy naming an account without contacts is refused with the reason.
func TestStaffContactsMakeAccountsPageable(t *testing.T) {
	m := realSettings(t)
	ts := newTestServer(t, func(_ *Config, d *Deps) { d.Alerts = m })
	admin, acsrf := ts.loginAs(t, "admin")
	nurse, ncsrf := ts.loginAs(t, "nurse")
	ctx := context.Background()

	// The roster names "nurse" before she has any contact: refused.
	resp, page := ts.postForm(t, admin, "/admin/roster", url.Values{"_csrf": {acsrf}, "site": {"demo-station"}, "zone": {"Asia/Shanghai"},
		"shifts": {"day 07:00 19:00 nurse"}})
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(page, `unknown staff account &#34;nurse&#34;`) {
		t.Fatalf("roster naming an account without contacts: %d, page lacks the reason", resp.StatusCode)
	}

	// Bad phone: refused beside the field, nothing stored.
	resp, page = ts.postForm(t, nurse, "/account/contacts", url.Values{"_csrf": {ncsrf}, "phone": {"call me"}, "channels": {"phone"}})
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(page, "want digits") {
		t.Fatalf("bad phone: status %d %s", resp.StatusCode, page)
	}
	// No contact at all: refused.
	resp, page = ts.postForm(t, nurse, "/account/contacts", url.Values{"_csrf": {ncsrf}})
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(page, "nobody can page you") {
		t.Fatalf("no contact: status %d", resp.StatusCode)
	}
	if s, _ := m.Settings(ctx); len(s.Recipients) != 0 {
		t.Fatalf("refused forms stored %+v", s.Recipients)
	}
	// The nurse sets her own contacts.
	resp, _ = ts.postForm(t, nurse, "/account/contacts", url.Values{"_csrf": {ncsrf}, "email": {"zhang@example.org"},
		"wecom": {"zhangsan"}, "in_app": {"on"}, "channels": {"email", "wecom", "in_app"}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("good contacts: status %d", resp.StatusCode)
	}
	// An admin sets the lead's.
	resp, _ = ts.postForm(t, admin, "/admin/contacts/lead", url.Values{"_csrf": {acsrf}, "phone": {"+8613800000009"}, "dingtalk": {"13800000009"}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("admin sets contacts: status %d", resp.StatusCode)
	}
	s, err := m.Settings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Recipients) != 2 {
		t.Fatalf("recipients %+v", s.Recipients)
	}
	for _, r := range s.Recipients {
		switch r.ID {
		case "nurse":
			if r.Email != "zhang@example.org" || r.WeCom != "zhangsan" || !r.InApp || r.Role != RoleCaregiver || r.Lang != "en" {
				t.Errorf("nurse stored %+v", r)
			}
		case "lead":
			if r.Phone != "+8613800000009" || r.Lang != "zh-CN" || r.Role != RoleNurseLead {
				t.Errorf("lead stored %+v", r)
			}
		}
	}
	// Now the roster and a policy naming the accounts are accepted.
	resp, _ = ts.postForm(t, admin, "/admin/roster", url.Values{"_csrf": {acsrf}, "site": {"demo-station"}, "zone": {"Asia/Shanghai"},
		"shifts": {"day 07:00 19:00 nurse"}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("roster: status %d", resp.StatusCode)
	}
	resp, page = ts.postForm(t, admin, "/admin/policy", url.Values{"_csrf": {acsrf}, "id": {"p"}, "steps": {"0s account:ghost"}})
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(page, `unknown staff account &#34;ghost&#34;`) {
		t.Fatalf("policy with unknown account: %d", resp.StatusCode)
	}
	resp, page = ts.postForm(t, admin, "/admin/policy", url.Values{"_csrf": {acsrf}, "id": {"p"}, "steps": {"0s role:manager"}})
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(page, "reach nobody") {
		t.Fatalf("policy reaching nobody: %d", resp.StatusCode)
	}
	resp, _ = ts.postForm(t, admin, "/admin/policy", url.Values{"_csrf": {acsrf}, "id": {"p"}, "steps": {"0s on_duty\n3m account:lead"}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("good policy: status %d", resp.StatusCode)
	}
}
