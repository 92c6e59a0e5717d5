package dashboard

import (
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestAuditActionsListed: every action the dashboard writes to the audit
// log (each s.audit call's action, found in the source) is offered by the
// audit page's filter and has a text in both languages, so no action is
// hidden from the filter or shown as a raw key. Actions built from a
// prefix ("onboard_"+kind, "registry_"+kind, action+"_user") are
// expanded with the kinds their code accepts.
func TestAuditActionsListed(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	consts := map[string]string{}
	var calls []ast.Expr
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(af, func(n ast.Node) bool {
			switch x := n.(type) {
			case *ast.ValueSpec:
				for i, name := range x.Names {
					if i < len(x.Values) {
						if lit, ok := x.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
							consts[name.Name], _ = strconv.Unquote(lit.Value)
						}
					}
				}
			case *ast.CallExpr:
				if sel, ok := x.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "audit" && len(x.Args) == 4 {
					calls = append(calls, x.Args[1])
				}
			}
			return true
		})
	}
	if len(calls) < 30 {
		t.Fatalf("found %d audit calls; the source scan is broken", len(calls))
	}
	var written []string
	for _, e := range calls {
		switch x := e.(type) {
		case *ast.BasicLit:
			v, _ := strconv.Unquote(x.Value)
			written = append(written, v)
		case *ast.Ident:
			v, ok := consts[x.Name]
			if !ok {
				// a variable: the onboarding action ("onboard_"+kind or
				// "retire") and the account actions (action+"_user")
				continue
			}
			written = append(written, v)
		}
	}
	// The forms of the onboarding page, in page order.
	onboardKinds := []string{"adopt", "device", "gateway", "site", "room", "bed", "resident", "card", "retire"}
	for _, k := range onboardKinds {
		if k == "retire" {
			written = append(written, "retire")
			continue
		}
		written = append(written, "onboard_"+k)
	}
	for _, k := range []string{"site", "room", "bed", "resident"} {
		written = append(written, "registry_"+k)
	}
	written = append(written, "disable_user", "enable_user")
	for _, want := range []string{AuditComment, AuditExportHistory, "command", "handover_note", "report_settings"} {
		if !slices.Contains(written, want) {
			t.Errorf("the scan did not find action %q", want)
		}
	}
	for _, a := range written {
		if !slices.Contains(auditActions, a) {
			t.Errorf("action %q is written but not offered by the audit page's filter", a)
		}
		for _, lang := range []string{LangEN, LangZH} {
			if trIn(lang, "audit.act."+a) == "audit.act."+a {
				t.Errorf("action %q has no %s text", a, lang)
			}
		}
	}
}

// TestAuditSiteOfNewActions: a handover note is audited with its site, so
// that site's manager reads it on /manager/audit and another site's
// manager does not (it used to be written without a site: admins only).
func TestAuditSiteOfNewActions(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(_ *Config, d *Deps) {
		d.Alerts = &mgrAlerts{fakeAlerts: newFakeAlerts(func() time.Time { return testNow }, testAlerts()...)}
	})
	cookie, csrf := ts.loginAs(t, "lead")
	f := url.Values{"_csrf": {csrf}, "site": {"demo-station"}, "note": {"watch Mrs Wang's SpO2"}}
	if r, _ := ts.form(t, cookie, "/manager/handover/notes", f); r.StatusCode != 303 {
		t.Fatalf("note: %d", r.StatusCode)
	}
	es, err := ts.acc.Audit(context.Background(), AuditFilter{Action: "handover_note"})
	if err != nil || len(es) != 1 || es[0].Site != "demo-station" {
		t.Fatalf("audit rows %+v %v", es, err)
	}
	for user, want := range map[string]bool{"manager": true, "farmanager": false} {
		mc, _ := ts.loginAs(t, user)
		_, page := ts.do(t, "GET", "/manager/audit?action=handover_note", nil, map[string]string{"Cookie": mc})
		if got := strings.Contains(page, "site:demo-station"); got != want {
			t.Errorf("%s sees the note's audit row: %v, want %v", user, got, want)
		}
	}
	if got := ts.srv.auditSite(nil, "site:demo-station"); got != "demo-station" {
		t.Errorf("auditSite(site) = %q", got)
	}
}
