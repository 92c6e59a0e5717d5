package dashboard

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/eldercare-iot/eldercare/alerting"
	"github.com/eldercare-iot/eldercare/device/registry"
	"github.com/eldercare-iot/eldercare/internal/sqldb"
	"github.com/eldercare-iot/eldercare/internal/sqldb/sqldbtest"
)

// historyStore is a real alert store on SQLite with alerts written as
// the alerting service writes them (rows of alerts, alert_history,
// alert_outbox and alert_deliveries), for the handlers of history.go.
type historyStore struct {
	m  *alerting.Manager
	db *sqldb.DB
	n  int64
}

func newHistoryStore(t *testing.T) *historyStore {
	t.Helper()
	return openHistoryStore(t, sqldbtest.SQLiteDSN(t))
}

// openHistoryStore opens the alert store in the SQLite database dsn.
func openHistoryStore(t *testing.T, dsn string) *historyStore {
	t.Helper()
	ctx := context.Background()
	db, err := sqldb.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	m, err := alerting.OpenManager(ctx, db, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return &historyStore{m: m, db: db}
}

// histAlert is one seeded alert.
type histAlert struct {
	site, resident, device, typ, sev string
	opened                           time.Time
	ackBy, resolveBy, outcome, note  string
	value                            float64
}

func (h *historyStore) exec(t *testing.T, q string, args ...any) {
	t.Helper()
	if _, err := h.db.ExecContext(context.Background(), h.db.Rebind(q), args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// add writes a and its history (opened, acknowledged, resolved) and one
// notification of its opening, and returns its id.
func (h *historyStore) add(t *testing.T, a histAlert) int64 {
	t.Helper()
	h.n++
	id := h.n
	var res any
	if a.resident != "" {
		res = a.resident
	}
	status := alerting.StatusOpen
	var ackMS, resMS any
	if a.ackBy != "" {
		status, ackMS = alerting.StatusAcknowledged, a.opened.Add(90*time.Second).UnixMilli()
	}
	if a.resolveBy != "" {
		status, resMS = alerting.StatusResolved, a.opened.Add(10*time.Minute).UnixMilli()
	}
	var val any
	if a.value != 0 {
		val = a.value
	}
	h.exec(t, `INSERT INTO alerts (id, dedup_key, site_id, resident_id, device_id, type, severity, status, opened_ms, acknowledged_ms, acknowledged_by,
		resolved_ms, resolved_by, outcome, note, detail, value_num, history_seq, notify_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 1)`,
		id, fmt.Sprintf("k%d", id), a.site, res, a.device, a.typ, a.sev, status, a.opened.UnixMilli(), ackMS, a.ackBy, resMS, a.resolveBy, a.outcome, a.note,
		a.typ+" detected", val)
	seq := 0
	hist := func(at time.Time, actor, channel, action, detail string) {
		seq++
		h.exec(t, `INSERT INTO alert_history (alert_id, seq, at_ms, actor, channel, action, detail) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			id, seq, at.UnixMilli(), actor, channel, action, detail)
	}
	hist(a.opened, alerting.ActorSystem, alerting.ChannelRule, alerting.ActionOpened, a.typ+" detected")
	nid := fmt.Sprintf("alert-%d-1", id)
	body := fmt.Sprintf(`{"id":%q,"event":"opened","alert":{"id":%d},"at":"2026-01-01T00:00:00Z","escalation":{"policy":"default","step":0,"recipients":[{"id":"lead","name":"Lead Li","role":"nurse_lead","email":"lead@example.org"}]}}`, nid, id)
	h.exec(t, `INSERT INTO alert_outbox (id, alert_id, seq, event, site_id, payload, created_ms, next_ms, sent_ms) VALUES (?, ?, 1, 'opened', ?, ?, ?, ?, ?)`,
		nid, id, a.site, body, a.opened.UnixMilli(), a.opened.UnixMilli(), a.opened.Add(time.Second).UnixMilli())
	h.exec(t, `INSERT INTO alert_deliveries (notification_id, receiver, status, attempts, last_error, updated_ms) VALUES (?, 'webhook', 'failed', 5, 'HTTP 503 from the nurse call', ?)`,
		nid, a.opened.Add(time.Second).UnixMilli())
	h.exec(t, `INSERT INTO alert_recipient_deliveries (notification_id, receiver, recipient_id, address, status, attempts, last_error, updated_ms)
		VALUES (?, 'email', 'lead', 'lead@example.org', 'sent', 1, '', ?)`, nid, a.opened.Add(time.Second).UnixMilli())
	hist(a.opened.Add(time.Second), alerting.ActorSystem, "email", alerting.ActionNotified, "opened ("+nid+")")
	if a.ackBy != "" {
		hist(a.opened.Add(90*time.Second), a.ackBy, "dashboard", alerting.ActionAcknowledged, "")
	}
	if a.resolveBy != "" {
		hist(a.opened.Add(10*time.Minute), a.resolveBy, "dashboard", alerting.ActionResolved, "outcome "+a.outcome)
	}
	h.exec(t, `UPDATE alerts SET history_seq = ? WHERE id = ?`, seq, id)
	return id
}

// historyRegistry is testRegistry with wards, display names and a second
// site with its own resident.
func historyRegistry() *fakeRegistry {
	r := testRegistry()
	r.rooms[0].Ward = "north"
	r.residents[0].Names = registry.Names{"zh-CN": "王秀英"}
	r.sites = append(r.sites, registry.Site{ID: "other-site", Name: "Riverside Home", TimeZone: "Europe/London"})
	r.rooms = append(r.rooms, registry.Room{ID: "r201", SiteID: "other-site", Name: "Room 201", Ward: "east"})
	r.beds = append(r.beds, registry.Bed{ID: "b201-1", RoomID: "r201", SiteID: "other-site", Name: "Bed 1"})
	r.residents = append(r.residents, registry.Resident{ID: "res-201", SiteID: "other-site", BedID: "b201-1", Name: "Zhou Lan"})
	return r
}

// historyServer is a test server whose Alerts and History are a real
// store seeded with: 1 fall of res-001 (injury, resolved by Nurse Zhang),
// 2 SpO2 of res-002 (false alarm, formula note), 3 open fall of res-001,
// 4 fall at other-site, and 55 older warnings of res-002 for paging.
func historyServer(t *testing.T) (*testServer, *historyStore, map[string]int64) {
	t.Helper()
	hs, ids := seededHistoryStore(t)
	ts := newTestServer(t, func(_ *Config, d *Deps) {
		d.Alerts, d.History, d.Registry = hs.m, hs.m, historyRegistry()
	})
	return ts, hs, ids
}

// historySeed is the database of seedHistory, made by the first test
// that needs it (VACUUM INTO a file, kept as bytes) and copied for the
// others: seeding row by row took a second of CPU per test under -race.
var historySeed struct {
	mu   sync.Mutex
	file []byte
	n    int64
	ids  map[string]int64
}

// seededHistoryStore returns a store of its own holding seedHistory's
// alerts, and their ids.
func seededHistoryStore(t *testing.T) (*historyStore, map[string]int64) {
	t.Helper()
	historySeed.mu.Lock()
	defer historySeed.mu.Unlock()
	if historySeed.file == nil {
		hs := newHistoryStore(t)
		ids := seedHistory(t, hs)
		dst := filepath.Join(t.TempDir(), "seed.db")
		if _, err := hs.db.ExecContext(context.Background(), "VACUUM INTO ?", dst); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(dst)
		if err != nil {
			t.Fatal(err)
		}
		historySeed.file, historySeed.n, historySeed.ids = b, hs.n, ids
		return hs, maps.Clone(ids)
	}
	dsn := sqldbtest.SQLiteDSN(t)
	path := strings.TrimPrefix(dsn, "sqlite:")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, historySeed.file, 0o600); err != nil {
		t.Fatal(err)
	}
	hs := openHistoryStore(t, dsn)
	hs.n = historySeed.n
	return hs, maps.Clone(historySeed.ids)
}

// seedHistory writes the alerts of historyServer into hs.
func seedHistory(t *testing.T, hs *historyStore) map[string]int64 {
	t.Helper()
	day := time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC) // 08:00 in Shanghai
	ids := map[string]int64{}
	for i := range 55 {
		hs.add(t, histAlert{site: "demo-station", resident: "res-002", device: "bs-101", typ: "no_activity", sev: "warning",
			opened: day.Add(-time.Duration(i+1) * time.Hour), resolveBy: "Lead Li", outcome: "other"})
	}
	ids["fall"] = hs.add(t, histAlert{site: "demo-station", resident: "res-001", device: "fd-001", typ: "fall", sev: "critical", opened: day.Add(time.Hour),
		ackBy: "Nurse Zhang", resolveBy: "Nurse Zhang", outcome: "injury", note: "Bruised hip, GP called"})
	ids["spo2"] = hs.add(t, histAlert{site: "demo-station", resident: "res-002", device: "vm-101", typ: "spo2_low", sev: "high", opened: day.Add(2 * time.Hour),
		ackBy: "Lead Li", resolveBy: "Lead Li", outcome: "false_alarm", note: "=HYPERLINK(\"http://evil\",\"x\")", value: 85})
	ids["open"] = hs.add(t, histAlert{site: "demo-station", resident: "res-001", device: "fd-001", typ: "fall", sev: "critical", opened: day.Add(3 * time.Hour)})
	ids["other"] = hs.add(t, histAlert{site: "other-site", resident: "res-201", device: "fd-201", typ: "fall", sev: "critical", opened: day.Add(4 * time.Hour)})
	return ids
}

// rowsOf returns the alert ids listed on a history page, in order.
func rowsOf(page string) []string {
	var out []string
	for _, part := range strings.Split(page, `data-alert="`)[1:] {
		out = append(out, part[:strings.Index(part, `"`)])
	}
	return out
}

func TestHistoryPage(t *testing.T) {
	t.Parallel()
	ts, _, ids := historyServer(t)
	cookie, _ := ts.login(t) // nurse: demo-station only
	hdr := map[string]string{"Cookie": cookie}
	get := func(t *testing.T, q string) (int, string) {
		t.Helper()
		resp, body := ts.do(t, "GET", "/alerts/history"+q, nil, hdr)
		return resp.StatusCode, body
	}
	id := func(k string) string { return fmt.Sprint(ids[k]) }

	t.Run("scope and order", func(t *testing.T) {
		code, page := get(t, "")
		rows := rowsOf(page)
		if code != 200 || len(rows) != HistoryPageSize || rows[0] != id("open") || rows[1] != id("spo2") || rows[2] != id("fall") {
			t.Fatalf("status %d, rows %v", code, rows)
		}
		if slices.Contains(rows, id("other")) || strings.Contains(page, "Zhou Lan") {
			t.Error("an alert of another site is listed")
		}
		for _, want := range []string{`href="/alerts/` + id("fall") + `"`, "2026-03-10 09:00:00 CST", "Room 101", "ward north", "Bruised hip", `href="/alerts/history.csv"`} {
			if !strings.Contains(page, want) {
				t.Errorf("page lacks %q", want)
			}
		}
	})
	t.Run("paging", func(t *testing.T) {
		_, page := get(t, "?type=no_activity")
		first := rowsOf(page)
		i := strings.Index(page, `rel="next"`)
		if len(first) != 50 || i < 0 {
			t.Fatalf("first page %d rows, next link %v", len(first), i >= 0)
		}
		href := page[strings.LastIndex(page[:i], `href="`)+6:]
		href = strings.ReplaceAll(href[:strings.Index(href, `"`)], "&amp;", "&")
		resp, page2 := ts.do(t, "GET", href, nil, hdr)
		second := rowsOf(page2)
		if resp.StatusCode != 200 || len(second) != 5 || strings.Contains(page2, `rel="next"`) || slices.Contains(first, second[0]) {
			t.Errorf("second page %s: %d, rows %v", href, resp.StatusCode, second)
		}
	})
	for _, c := range []struct {
		name, q string
		want    []string
	}{
		{"type and outcome", "?type=fall&outcome=injury", []string{"fall"}},
		{"unresolved", "?outcome=unresolved", []string{"open"}},
		{"severity", "?severity=high", []string{"spo2"}},
		{"resident", "?resident=res-001", []string{"open", "fall"}},
		{"ward", "?ward=north&type=fall", []string{"open", "fall"}},
		{"responder", "?responder=Nurse+Zhang", []string{"fall"}},
		{"search the note", "?q=gp+called", []string{"fall"}},
		{"search a Chinese display name", "?q=" + url.QueryEscape("秀英") + "&type=fall", []string{"open", "fall"}},
		// Dates are the site's (Shanghai): 10 March there starts at 16:00 UTC on the 9th.
		{"date range in the site's zone", "?from=2026-03-10&to=2026-03-10&severity=critical", []string{"open", "fall"}},
		{"a day with nothing", "?from=2026-03-11", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, page := get(t, c.q)
			var want []string
			for _, k := range c.want {
				want = append(want, id(k))
			}
			if got := rowsOf(page); code != 200 || !slices.Equal(got, want) {
				t.Errorf("status %d rows %v, want %v", code, got, want)
			}
		})
	}
	t.Run("hostile and bad filters", func(t *testing.T) {
		for _, q := range []string{"?from=2026-13-01", "?from=2026-03-10&to=2026-03-09", "?type=%3Cscript%3E", "?severity=panic",
			"?outcome=dead", "?site=other-site", "?resident=res-201", "?resident=..%2F..%2Fetc", "?ward=east", "?q=" + url.QueryEscape("a\x00b"),
			"?q=" + strings.Repeat("x", 101), "?after=1-x"} {
			code, page := get(t, q)
			if code != 400 || !strings.Contains(page, `id="history-error"`) || len(rowsOf(page)) != 0 {
				t.Errorf("%s: status %d, error shown %v, rows %d", q, code, strings.Contains(page, "history-error"), len(rowsOf(page)))
			}
		}
		_, page := get(t, "?q="+url.QueryEscape(`"><script>alert(1)</script>`))
		if strings.Contains(page, "<script>alert(1)") {
			t.Error("search text reflected unescaped")
		}
	})
	t.Run("Chinese", func(t *testing.T) {
		lc, _ := ts.loginAs(t, "lead")
		resp, page := ts.do(t, "GET", "/alerts/history?type=fall", nil, map[string]string{"Cookie": lc})
		for _, want := range []string{"告警历史", "王秀英", "受伤", "101 房"} {
			if resp.StatusCode != 200 || !strings.Contains(page, want) {
				t.Errorf("Chinese page (%d) lacks %q", resp.StatusCode, want)
			}
		}
	})
	t.Run("family and other sites", func(t *testing.T) {
		fc, _ := ts.loginAs(t, "daughter")
		for _, p := range []string{"/alerts/history", "/alerts/history.csv", "/alerts/" + id("fall")} {
			if resp, _ := ts.do(t, "GET", p, nil, map[string]string{"Cookie": fc}); resp.StatusCode != 404 {
				t.Errorf("family %s: %d, want 404", p, resp.StatusCode)
			}
		}
		oc, _ := ts.loginAs(t, "faraway")
		resp, page := ts.do(t, "GET", "/alerts/history", nil, map[string]string{"Cookie": oc})
		if got := rowsOf(page); resp.StatusCode != 200 || !slices.Equal(got, []string{id("other")}) {
			t.Errorf("carer of other-site: %d rows %v, want only %s", resp.StatusCode, got, id("other"))
		}
		if resp, _ := ts.do(t, "GET", "/alerts/"+id("fall"), nil, map[string]string{"Cookie": oc}); resp.StatusCode != 404 {
			t.Errorf("other site's carer opens the timeline: %d", resp.StatusCode)
		}
	})
}

func TestHistoryCSV(t *testing.T) {
	t.Parallel()
	ts, _, ids := historyServer(t)
	cookie, _ := ts.login(t)
	resp, body := ts.do(t, "GET", "/alerts/history.csv?severity=high", nil, map[string]string{"Cookie": cookie})
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/csv") || !strings.Contains(resp.Header.Get("Content-Disposition"), "attachment") {
		t.Fatalf("status %d, headers %v", resp.StatusCode, resp.Header)
	}
	recs, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || !slices.Equal(recs[0], historyCSVHeader) {
		t.Fatalf("records %q", recs)
	}
	row := map[string]string{}
	for i, h := range recs[0] {
		row[h] = recs[1][i]
	}
	for k, want := range map[string]string{"id": fmt.Sprint(ids["spo2"]), "resident": `<b>Li "Bold"</b>`, "room": "Room 101", "ward": "north",
		"opened_at": "2026-03-10T10:00:00+08:00", "acknowledged_at": "2026-03-10T10:01:30+08:00", "ack_seconds": "90",
		"outcome": "false_alarm", "note": `'=HYPERLINK("http://evil","x")`, "what": "Blood oxygen 85 %"} {
		if row[k] != want {
			t.Errorf("%s = %q, want %q", k, row[k], want)
		}
	}
	// Every page of a large result: 55 warnings + nothing else.
	_, all := ts.do(t, "GET", "/alerts/history.csv?severity=warning", nil, map[string]string{"Cookie": cookie})
	recs, _ = csv.NewReader(strings.NewReader(all)).ReadAll()
	if len(recs) != 56 {
		t.Errorf("warnings CSV: %d records, want 56", len(recs))
	}
	if resp, _ := ts.do(t, "GET", "/alerts/history.csv?from=x", nil, map[string]string{"Cookie": cookie}); resp.StatusCode != 400 {
		t.Errorf("bad date: %d", resp.StatusCode)
	}
	if got := csvSafe("+1"); got != "'+1" {
		t.Errorf("csvSafe(+1) = %q", got)
	}
	for _, s := range []string{"-2", "@SUM(A1)", "=1+1", "\tx"} {
		if !strings.HasPrefix(csvSafe(s), "'") {
			t.Errorf("csvSafe(%q) = %q", s, csvSafe(s))
		}
	}
	es, err := ts.acc.Audit(context.Background(), AuditFilter{Action: AuditExportHistory})
	if err != nil || len(es) != 2 || es[0].Username != "nurse" {
		t.Errorf("audit of the export: %+v %v", es, err)
	}
}

func TestAlertTimeline(t *testing.T) {
	t.Parallel()
	ts, hs, ids := historyServer(t)
	cookie, csrf := ts.login(t)
	hdr := map[string]string{"Cookie": cookie}
	path := fmt.Sprintf("/alerts/%d", ids["fall"])
	resp, page := ts.do(t, "GET", path, nil, hdr)
	if resp.StatusCode != 200 {
		t.Fatalf("timeline: %d", resp.StatusCode)
	}
	for _, want := range []string{"2026-03-10 09:00:00 CST", "opened", "acknowledged", "Nurse Zhang", "Injury: Bruised hip, GP called",
		"notification: alert raised", "Paged: Lead Li", "HTTP 503 from the nurse call", "failed", "5 attempts", "lead", "sent",
		`name="_csrf"`, `action="` + path + `/comments"`} {
		if !strings.Contains(page, want) {
			t.Errorf("timeline lacks %q", want)
		}
	}
	if strings.Contains(page, "lead@example.org") {
		t.Error("the timeline shows a recipient's address")
	}
	form := map[string]string{"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"}
	post := func(text string, withCSRF bool) (*http.Response, string) {
		v := url.Values{"text": {text}}
		if withCSRF {
			v.Set("_csrf", csrf)
		}
		return ts.do(t, "POST", path+"/comments", strings.NewReader(v.Encode()), form)
	}
	resp, _ = post("Family informed; <b>GP</b> visit at 14:00", true)
	if resp.StatusCode != 303 || !strings.HasPrefix(resp.Header.Get("Location"), path+"#comment-") {
		t.Fatalf("comment: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	_, page = ts.do(t, "GET", path, nil, hdr)
	if !strings.Contains(page, "Family informed; &lt;b&gt;GP&lt;/b&gt; visit at 14:00") || !strings.Contains(page, `id="comment-1"`) {
		t.Error("the comment is not on the timeline (escaped)")
	}
	for _, c := range []struct{ name, text, want string }{
		{"empty", "   ", "The comment is empty"},
		{"control character", "call \x1b[2J done", "contains a control character (U&#43;001B)"},
		{"too long", strings.Repeat("字", alerting.MaxCommentLen+1), "2001 characters"},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, page := post(c.text, true)
			if resp.StatusCode != 400 || !strings.Contains(page, c.want) || !strings.Contains(page, `id="comment-error"`) {
				t.Errorf("status %d, reason %q shown: %v", resp.StatusCode, c.want, strings.Contains(page, c.want))
			}
			i := strings.Index(page, `id="comment-text"`)
			area := page[i:]
			area = area[strings.Index(area, ">")+1 : strings.Index(area, "</textarea>")]
			if strings.TrimSpace(c.text) != "" && area != c.text {
				t.Errorf("the refused text is not kept in the form: %.40q", area)
			}
		})
	}
	if resp, _ := post("no token", false); resp.StatusCode != 403 {
		t.Errorf("comment without CSRF: %d, want 403", resp.StatusCode)
	}
	cs, err := hs.m.Comments(context.Background(), ids["fall"])
	if err != nil || len(cs) != 1 || cs[0].Author != "Nurse Zhang" || cs[0].Channel != "dashboard" {
		t.Errorf("stored comments %+v %v", cs, err)
	}
	es, _ := ts.acc.Audit(context.Background(), AuditFilter{Action: AuditComment})
	if len(es) != 1 || es[0].Target != fmt.Sprintf("alert:%d", ids["fall"]) {
		t.Errorf("audit of comments %+v", es)
	}
	// Another site's alert: 404 to read and to comment.
	other := fmt.Sprintf("/alerts/%d", ids["other"])
	if resp, _ := ts.do(t, "GET", other, nil, hdr); resp.StatusCode != 404 {
		t.Errorf("other site's timeline: %d", resp.StatusCode)
	}
	v := url.Values{"text": {"x"}, "_csrf": {csrf}}
	if resp, _ := ts.do(t, "POST", other+"/comments", strings.NewReader(v.Encode()), form); resp.StatusCode != 404 {
		t.Errorf("comment on another site's alert: %d", resp.StatusCode)
	}
	if resp, _ := ts.do(t, "GET", "/alerts/99999", nil, hdr); resp.StatusCode != 404 {
		t.Errorf("missing alert: %d", resp.StatusCode)
	}
	// Chinese timeline.
	lc, _ := ts.loginAs(t, "lead")
	_, zh := ts.do(t, "GET", path, nil, map[string]string{"Cookie": lc})
	for _, want := range []string{"处理经过", "通知：告警发出", "已呼叫：", "发送失败", "添加备注", "受伤：Bruised hip"} {
		if !strings.Contains(zh, want) {
			t.Errorf("Chinese timeline lacks %q", want)
		}
	}
}

func TestHistoryAPI(t *testing.T) {
	t.Parallel()
	ts, hs, ids := historyServer(t)
	ctx := context.Background()
	tokA, err := ts.acc.AddAPIClient(ctx, "nursecall-a", []string{"demo-station"}, "admin")
	if err != nil {
		t.Fatal(err)
	}
	tokB, err := ts.acc.AddAPIClient(ctx, "nursecall-b", []string{"other-site"}, "admin")
	if err != nil {
		t.Fatal(err)
	}
	call := func(t *testing.T, tok, method, path, body string) (int, string) {
		t.Helper()
		h := map[string]string{"Authorization": "Bearer " + tok}
		var r *strings.Reader
		if body != "" {
			h["Content-Type"] = "application/json"
		}
		r = strings.NewReader(body)
		resp, out := ts.do(t, method, path, r, h)
		return resp.StatusCode, out
	}
	t.Run("history list, scoped and paged", func(t *testing.T) {
		code, out := call(t, tokA, "GET", "/api/v1/alerts/history?type=fall", "")
		var p apiHistoryPage
		if err := json.Unmarshal([]byte(out), &p); code != 200 || err != nil || len(p.Alerts) != 2 || p.Alerts[0].ID != ids["open"] || p.Next != "" {
			t.Fatalf("site A falls: %d %v %.300s", code, err, out)
		}
		code, out = call(t, tokB, "GET", "/api/v1/alerts/history", "")
		p = apiHistoryPage{}
		if err := json.Unmarshal([]byte(out), &p); code != 200 || err != nil || len(p.Alerts) != 1 || p.Alerts[0].ID != ids["other"] {
			t.Errorf("site B: %d %.300s", code, out)
		}
		if code, _ := call(t, tokA, "GET", "/api/v1/alerts/history?site=other-site", ""); code != 404 {
			t.Errorf("site A client asks for site B: %d, want 404", code)
		}
		var got []int64
		after := ""
		for range 10 {
			code, out := call(t, tokA, "GET", "/api/v1/alerts/history?limit=20&after="+after, "")
			p := apiHistoryPage{}
			if err := json.Unmarshal([]byte(out), &p); code != 200 || err != nil {
				t.Fatalf("page: %d %.200s", code, out)
			}
			for _, a := range p.Alerts {
				got = append(got, a.ID)
			}
			if after = p.Next; after == "" {
				break
			}
		}
		if len(got) != 58 || slices.Contains(got, ids["other"]) {
			t.Errorf("paged %d alerts", len(got))
		}
		for _, q := range []string{"limit=0", "limit=5000", "after=zz", "from=yesterday", "outcome=%3Cx%3E"} {
			if code, out := call(t, tokA, "GET", "/api/v1/alerts/history?"+q, ""); code != 400 || !strings.Contains(out, `"error"`) {
				t.Errorf("%s: %d %s", q, code, out)
			}
		}
	})
	t.Run("alert with its timeline", func(t *testing.T) {
		if _, err := hs.m.AddComment(ctx, ids["fall"], "Lead Li", "dashboard", "checked at 10:00"); err != nil {
			t.Fatal(err)
		}
		code, out := call(t, tokA, "GET", fmt.Sprintf("/api/v1/alerts/%d", ids["fall"]), "")
		var d struct {
			ID            int64                         `json:"id"`
			Outcome       string                        `json:"outcome"`
			Comments      []alerting.Comment            `json:"comments"`
			History       []alerting.HistoryEntry       `json:"history"`
			Notifications []alerting.NotificationRecord `json:"notifications"`
		}
		if err := json.Unmarshal([]byte(out), &d); code != 200 || err != nil || d.ID != ids["fall"] || d.Outcome != "injury" ||
			len(d.Comments) != 1 || d.Comments[0].Text != "checked at 10:00" || len(d.History) != 4 || len(d.Notifications) != 1 ||
			len(d.Notifications[0].Deliveries) != 2 {
			t.Fatalf("GET alert: %d %v %.500s", code, err, out)
		}
		if strings.Contains(out, "lead@example.org") {
			t.Error("the API shows a recipient's e-mail address")
		}
		if code, _ := call(t, tokA, "GET", fmt.Sprintf("/api/v1/alerts/%d", ids["other"]), ""); code != 404 {
			t.Errorf("site A client reads a site B alert: %d, want 404", code)
		}
	})
	t.Run("comments", func(t *testing.T) {
		path := fmt.Sprintf("/api/v1/alerts/%d/comments", ids["open"])
		code, out := call(t, tokA, "POST", path, `{"text":"on my way","actor":"nurse"}`)
		var c alerting.Comment
		if err := json.Unmarshal([]byte(out), &c); code != 201 || err != nil || c.Author != "nurse" || c.Channel != "api:nursecall-a" || c.Text != "on my way" {
			t.Fatalf("comment: %d %v %s", code, err, out)
		}
		for _, c := range []struct{ name, body, want string }{
			{"control character", `{"text":"a\u0000b"}`, "control character"},
			{"bidi override", `{"text":"a\u202eb"}`, "control character"},
			{"empty", `{"text":""}`, "empty"},
			{"too long", `{"text":"` + strings.Repeat("a", alerting.MaxCommentLen+1) + `"}`, "at most 2000"},
			{"unknown field", `{"text":"x","note":"y"}`, "unknown field"},
			{"not JSON", `text=x`, "want JSON"},
			{"actor of another site", `{"text":"x","actor":"faraway"}`, "not an active staff account"},
			{"family actor", `{"text":"x","actor":"daughter"}`, "not an active staff account"},
		} {
			t.Run(c.name, func(t *testing.T) {
				code, out := call(t, tokA, "POST", path, c.body)
				if code != 400 || !strings.Contains(out, c.want) {
					t.Errorf("%d %s, want 400 with %q", code, out, c.want)
				}
			})
		}
		if code, _ := call(t, tokA, "POST", fmt.Sprintf("/api/v1/alerts/%d/comments", ids["other"]), `{"text":"x"}`); code != 404 {
			t.Errorf("site A client comments on a site B alert: %d, want 404", code)
		}
		if code, _ := call(t, tokB, "POST", fmt.Sprintf("/api/v1/alerts/%d/comments", ids["other"]), `{"text":"seen"}`); code != 201 {
			t.Errorf("site B client on its own alert: %d", code)
		}
		if code, _ := call(t, "wrong-token", "POST", path, `{"text":"x"}`); code != 401 {
			t.Errorf("wrong token: %d", code)
		}
		cs, _ := hs.m.Comments(ctx, ids["open"])
		if len(cs) != 1 {
			t.Errorf("stored %d comments on the open alert, want 1 (refused ones store nothing)", len(cs))
		}
		es, _ := ts.acc.Audit(ctx, AuditFilter{Action: AuditComment})
		if len(es) != 2 {
			t.Errorf("audited %d comments, want 2", len(es))
		}
	})
}

// TestHistoryNotConfigured: without Deps.History the pages answer 503 and
// GET /api/v1/alerts/:id still serves the alert.
func TestHistoryNotConfigured(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, nil)
	cookie, _ := ts.login(t)
	if resp, _ := ts.do(t, "GET", "/alerts/history", nil, map[string]string{"Cookie": cookie}); resp.StatusCode != 503 {
		t.Errorf("history without store: %d", resp.StatusCode)
	}
	resp, out := ts.do(t, "GET", "/api/v1/alerts/1", nil, map[string]string{"Authorization": "Bearer " + testToken})
	if resp.StatusCode != 200 || !strings.Contains(out, `"id":1`) {
		t.Errorf("GET alert without history: %d %s", resp.StatusCode, out)
	}
}

func TestSystemNote(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ lang, in, want string }{
		{LangEN, "operations: escalation policy night step 0 reached nobody on duty; paged the site's fallback receivers: desk", "policy night step 1 reached nobody on duty; the site's fallback receivers were paged: desk"},
		{LangZH, "operations: escalation policy night step 1 reached nobody on duty; paged the site's fallback receivers: desk", "升级策略 night 第 2 步联系不到当班人员，已呼叫院区备用接收人：desk"},
		{LangZH, "escalation stopped: policy night no longer exists", "升级已停止：策略 night 已不存在"},
		{LangZH, "bed_exit also fired (same resident, one cause: not paged separately): out of bed", "同时检测到离床（同一长者、同一原因），未单独呼叫"},
		{LangZH, "unknown note", "unknown note"},
	} {
		if got := systemNote(c.lang, c.in); got != c.want {
			t.Errorf("systemNote(%s, %q) = %q, want %q", c.lang, c.in, got, c.want)
		}
	}
}

// TestAlertRouteOrder: /alerts/:id takes numbers only, so a page under
// /alerts registered after it is still reached; a family account gets
// 404 on the timeline and its comment form.
func TestAlertRouteOrder(t *testing.T) {
	t.Parallel()
	ts, _, ids := historyServer(t)
	ts.srv.App().Get("/alerts/later-page", func(c *fiber.Ctx) error { return c.SendString("later") })
	cookie, _ := ts.login(t)
	if resp, body := ts.do(t, "GET", "/alerts/later-page", nil, map[string]string{"Cookie": cookie}); resp.StatusCode != 200 || body != "later" {
		t.Errorf("a later /alerts page: %d %q", resp.StatusCode, body)
	}
	if resp, _ := ts.do(t, "GET", "/api/v1/alerts/abc", nil, map[string]string{"Authorization": "Bearer " + testToken}); resp.StatusCode != 400 {
		t.Errorf("GET /api/v1/alerts/abc: %d, want 400", resp.StatusCode)
	}
	fc, fcsrf := ts.loginAs(t, "daughter")
	path := fmt.Sprintf("/alerts/%d", ids["fall"])
	if resp, _ := ts.do(t, "GET", path, nil, map[string]string{"Cookie": fc}); resp.StatusCode != 404 {
		t.Errorf("family GET %s: %d", path, resp.StatusCode)
	}
	v := url.Values{"text": {"hello"}, "_csrf": {fcsrf}}
	form := map[string]string{"Cookie": fc, "Content-Type": "application/x-www-form-urlencoded"}
	if resp, _ := ts.do(t, "POST", path+"/comments", strings.NewReader(v.Encode()), form); resp.StatusCode != 404 {
		t.Errorf("family POST comment: %d", resp.StatusCode)
	}
}
