package dashboard

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"slices"
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
	t.Parallel()
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

// The structured policy and roster forms: the reason stands beside the
// step or shift it concerns; a valid pair is stored.
func TestStructuredPolicyRosterForms(t *testing.T) {
	t.Parallel()
	m := realSettings(t)
	ts := newTestServer(t, func(_ *Config, d *Deps) { d.Alerts = m })
	admin, csrf := ts.loginAs(t, "admin")
	ctx := context.Background()
	if err := m.PutRecipient(ctx, "test", alerting.Recipient{ID: "nurse", Name: "Nurse Zhang", Role: RoleCaregiver, InApp: true}); err != nil {
		t.Fatal(err)
	}
	_, page := ts.do(t, "GET", "/admin", nil, map[string]string{"Cookie": admin})
	if !strings.Contains(page, `<option value="account:nurse">Nurse Zhang (nurse)</option>`) || !strings.Contains(page, `name="step_after_3"`) {
		t.Fatal("the policy form lacks the target picker")
	}
	post := func(path string, v url.Values) (int, string) {
		v.Set("_csrf", csrf)
		v.Set("structured", "1")
		resp, page := ts.postForm(t, admin, path, v)
		return resp.StatusCode, page
	}
	code, page := post("/admin/policy", url.Values{"id": {"p"}, "step_after_0": {"0s"}, "step_target_0": {"on_duty"},
		"step_after_1": {"3m"}, "step_other_1": {"account:ghost"}})
	if code != 400 || !regexp.MustCompile(`id="step-1"[\s\S]*?unknown staff account &#34;ghost&#34;[\s\S]*?</fieldset>`).MatchString(page) {
		t.Fatalf("unknown account: %d; reason not beside step 1", code)
	}
	if !strings.Contains(page, `value="account:ghost"`) || !strings.Contains(page, `<option value="on_duty" selected>`) {
		t.Error("the refused form lost what was typed or picked")
	}
	code, page = post("/admin/policy", url.Values{"id": {"p"}, "step_after_0": {"0s"}, "step_target_0": {"on_duty"}})
	if code != 400 || !strings.Contains(page, "reach nobody") {
		t.Fatalf("policy reaching nobody (no roster yet): %d", code)
	}
	code, page = post("/admin/roster", url.Values{"site": {"demo-station"}, "zone": {"Asia/Shanghai"},
		"shift_name_0": {"day"}, "shift_start_0": {"07:00"}, "shift_end_0": {"19:00"}, "shift_days_0": {"mon", "fri"}, "shift_staff_0": {"nurse"},
		"shift_name_1": {"night"}, "shift_start_1": {"19:00"}, "shift_end_1": {"07:00"}, "shift_other_1": {"lead"}})
	if code != 400 || !regexp.MustCompile(`id="shift-1"[\s\S]*?unknown staff account &#34;lead&#34;[\s\S]*?</fieldset>`).MatchString(page) {
		t.Fatalf("roster with an unpageable account: %d; reason not beside shift 1", code)
	}
	code, _ = post("/admin/roster", url.Values{"site": {"demo-station"}, "zone": {"Asia/Shanghai"},
		"shift_name_0": {"day"}, "shift_start_0": {"07:00"}, "shift_end_0": {"19:00"}, "shift_days_0": {"mon", "fri"}, "shift_staff_0": {"nurse"}})
	if code != 303 {
		t.Fatalf("good roster: %d", code)
	}
	code, _ = post("/admin/policy", url.Values{"id": {"p"}, "step_after_0": {"0s"}, "step_target_0": {"on_duty"}, "step_after_1": {"3m"}, "step_target_1": {"account:nurse"}, "repeat": {"5m"}})
	if code != 303 {
		t.Fatalf("good policy: %d", code)
	}
	s, _ := m.Settings(ctx)
	if len(s.Policies) != 1 || len(s.Policies[0].Steps) != 2 || s.Policies[0].Steps[1].Targets[0] != "account:nurse" ||
		len(s.Rosters) != 1 || !slices.Equal(s.Rosters[0].Shifts[0].Weekdays, []string{"mon", "fri"}) {
		t.Fatalf("stored %+v", s)
	}
}

// A family member sets their own channels; the recipient keeps their
// residents, so they are paged only about their own elder.
func TestFamilyContacts(t *testing.T) {
	t.Parallel()
	m := realSettings(t)
	ts := newTestServer(t, func(_ *Config, d *Deps) { d.Alerts = m })
	fam, csrf := ts.loginAs(t, "daughter")
	resp, _ := ts.postForm(t, fam, "/account/contacts", url.Values{"_csrf": {csrf}, "email": {"mei@example.org"}, "wecom": {"wangmei"},
		"channels": {"wecom"}, "quiet": {"on"}, "start": {"22:00"}, "end": {"07:00"}, "zone": {"Asia/Shanghai"}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("family contacts: %d", resp.StatusCode)
	}
	s, _ := m.Settings(context.Background())
	if len(s.Recipients) != 1 {
		t.Fatalf("recipients %+v", s.Recipients)
	}
	r := s.Recipients[0]
	if r.Role != RoleFamily || !slices.Equal(r.Residents, []string{"res-001"}) || !slices.Equal(r.Channels, []string{"wecom"}) || r.Quiet == nil {
		t.Fatalf("stored %+v", r)
	}
	if resp, _ := ts.do(t, "GET", "/admin/contacts/nurse", nil, map[string]string{"Cookie": fam}); resp.StatusCode != http.StatusNotFound {
		t.Errorf("family on the admin contacts page: %d, want 404", resp.StatusCode)
	}
}
