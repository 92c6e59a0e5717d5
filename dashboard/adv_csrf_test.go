package dashboard

import (
	"context"
	"fmt"
	"net/url"
	"testing"
)

// TestNewFormsNeedCSRF: every form added with the alert history, the
// manager pages and onboarding refuses a post without the session's CSRF
// token (403) or with another session's, and writes nothing.
func TestNewFormsNeedCSRF(t *testing.T) {
	t.Parallel()
	ts, _, ids := historyServer(t)
	admin, _ := ts.loginAs(t, "admin")
	_, otherCSRF := ts.loginAs(t, "manager")
	posts := []struct {
		path string
		v    url.Values
	}{
		{fmt.Sprintf("/alerts/%d/comments", ids["fall"]), url.Values{"text": {"forged"}}},
		{"/manager/trends/settings", url.Values{"target_s": {"60"}, "target_pct": {"50"}, "shifts": {"07:00,15:00,23:00"}}},
		{"/manager/handover/notes", url.Values{"site": {"demo-station"}, "note": {"forged"}}},
		{"/admin/onboard/site", url.Values{"id": {"forged"}, "name": {"Forged"}, "timezone": {"UTC"}}},
		{"/residents/res-001/command", url.Values{"device": {"fd-001"}, "action": {"valve_close"}}},
	}
	for _, p := range posts {
		for _, token := range []string{"", otherCSRF} {
			v := url.Values{}
			for k, x := range p.v {
				v[k] = x
			}
			if token != "" {
				v.Set("_csrf", token)
			}
			if r, _ := ts.form(t, admin, p.path, v); r.StatusCode != 403 {
				t.Errorf("%s with token %q: %d, want 403", p.path, token, r.StatusCode)
			}
		}
	}
	es, err := ts.acc.Audit(context.Background(), AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		switch e.Action {
		case AuditComment, "report_settings", "handover_note", "onboard_site", "command":
			t.Errorf("a forged post was carried out: %+v", e)
		}
	}
	set, err := ts.acc.ReportSettings(context.Background())
	if err != nil || set != DefaultReportSettings {
		t.Errorf("settings changed by a forged post: %+v %v", set, err)
	}
}

// TestCheckTextRefusesDirectionControls: a note, comment or other free
// text refuses the invisible direction overrides and line separators that
// make text read otherwise than written; line breaks and the
// right-to-left mark stay allowed.
func TestCheckTextRefusesDirectionControls(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"pay \u202Eevil", "x\u2066y", "a\u2028b"} {
		if err := checkText("note", s, 100, true); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
	for _, s := range []string{"line 1\nline 2", "\u200Fשרה", "水肿，夜间翻身两次"} {
		if err := checkText("note", s, 100, true); err != nil {
			t.Errorf("%q refused: %v", s, err)
		}
	}
	if err := newTestServer(t, nil).acc.AddHandoverNote(context.Background(), HandoverNote{Site: "s", Shift: "night", Body: "ok \u202Ekaerb"}); err == nil {
		t.Error("a handover note with a direction override was saved")
	}
}
