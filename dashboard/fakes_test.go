package dashboard

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eldercare-iot/eldercare/alerting"
	"github.com/eldercare-iot/eldercare/device/registry"
	"github.com/eldercare-iot/eldercare/internal/sqldb"
	"github.com/eldercare-iot/eldercare/internal/sqldb/sqldbtest"
)

const testToken = "test-token-0123456789abcdef"

// fakeAlerts is an in-memory Alerts with the store's status rules.
type fakeAlerts struct {
	mu      sync.Mutex
	alerts  map[int64]alerting.Alert
	history map[int64][]alerting.HistoryEntry
	now     func() time.Time
}

func newFakeAlerts(now func() time.Time, as ...alerting.Alert) *fakeAlerts {
	f := &fakeAlerts{alerts: map[int64]alerting.Alert{}, history: map[int64][]alerting.HistoryEntry{}, now: now}
	for _, a := range as {
		a.Unassigned = a.Resident == nil // as the store sets it
		f.alerts[a.ID] = a
		f.history[a.ID] = []alerting.HistoryEntry{{AlertID: a.ID, Seq: 1, At: a.OpenedAt, Actor: "system", Channel: "rule", Action: "opened", Detail: a.Detail}}
	}
	return f
}

func (f *fakeAlerts) List(_ context.Context, flt alerting.Filter) ([]alerting.Alert, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []alerting.Alert
	for _, a := range f.alerts {
		if len(flt.Status) > 0 && !contains(flt.Status, a.Status) {
			continue
		}
		if flt.Site != "" && a.Site != flt.Site {
			continue
		}
		if flt.Resident != "" && (a.Resident == nil || *a.Resident != flt.Resident) {
			continue
		}
		out = append(out, a)
	}
	// Like the store before it ordered by severity: newest first, then the
	// limit (0 = 100).
	sort.Slice(out, func(i, j int) bool {
		if !out[i].OpenedAt.Equal(out[j].OpenedAt) {
			return out[i].OpenedAt.After(out[j].OpenedAt)
		}
		return out[i].ID > out[j].ID
	})
	limit := flt.Limit
	if limit == 0 {
		limit = 100
	}
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}

func (f *fakeAlerts) Get(_ context.Context, id int64) (alerting.Alert, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, ok := f.alerts[id]
	if !ok {
		return a, fmt.Errorf("get alert %d: %w", id, alerting.ErrNotFound)
	}
	return a, nil
}

func (f *fakeAlerts) History(_ context.Context, id int64) ([]alerting.HistoryEntry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.history[id], nil
}

func (f *fakeAlerts) Acknowledge(_ context.Context, id int64, actor, channel string) (alerting.Alert, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, ok := f.alerts[id]
	if !ok {
		return a, fmt.Errorf("acknowledge alert %d: %w", id, alerting.ErrNotFound)
	}
	if a.Status != alerting.StatusOpen {
		return a, fmt.Errorf("acknowledge alert %d: %w", id, alerting.ErrConflict)
	}
	now := f.now()
	a.Status, a.AcknowledgedAt, a.AcknowledgedBy = alerting.StatusAcknowledged, &now, actor
	f.alerts[id] = a
	f.history[id] = append(f.history[id], alerting.HistoryEntry{AlertID: id, At: now, Actor: actor, Channel: channel, Action: "acknowledged"})
	return a, nil
}

func (f *fakeAlerts) Resolve(_ context.Context, id int64, actor, channel, outcome, note string) (alerting.Alert, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, ok := f.alerts[id]
	if !ok {
		return a, fmt.Errorf("resolve alert %d: %w", id, alerting.ErrNotFound)
	}
	if a.Status == alerting.StatusResolved {
		return a, fmt.Errorf("resolve alert %d: %w", id, alerting.ErrConflict)
	}
	now := f.now()
	a.Status, a.ResolvedAt, a.ResolvedBy, a.Outcome, a.Note = alerting.StatusResolved, &now, actor, outcome, note
	f.alerts[id] = a
	f.history[id] = append(f.history[id], alerting.HistoryEntry{AlertID: id, At: now, Actor: actor, Channel: channel, Action: "resolved", Detail: "outcome " + outcome + ": " + note})
	return a, nil
}

func (f *fakeAlerts) get(id int64) alerting.Alert {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.alerts[id]
}

// fakeRegistry is a fixed registry.
type fakeRegistry struct {
	sites     []registry.Site
	rooms     []registry.Room
	beds      []registry.Bed
	residents []registry.Resident
	devices   []registry.Device
	bindings  []registry.Binding
}

func (r *fakeRegistry) Sites(context.Context) ([]registry.Site, error) { return r.sites, nil }
func (r *fakeRegistry) Rooms(context.Context, string) ([]registry.Room, error) {
	return r.rooms, nil
}
func (r *fakeRegistry) Beds(context.Context, string) ([]registry.Bed, error) { return r.beds, nil }
func (r *fakeRegistry) Residents(context.Context, string) ([]registry.Resident, error) {
	return r.residents, nil
}
func (r *fakeRegistry) Devices(context.Context, string) ([]registry.Device, error) {
	return r.devices, nil
}
func (r *fakeRegistry) Bindings(context.Context, string) ([]registry.Binding, error) {
	return r.bindings, nil
}

// fakeVitals returns fixed series, or an error.
type fakeVitals struct {
	series map[string][]Point
	err    error
}

func (v fakeVitals) ResidentVitals(context.Context, string, time.Time, time.Time) (map[string][]Point, error) {
	return v.series, v.err
}

var testNow = time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)

func strp(s string) *string { return &s }

func testRegistry() *fakeRegistry {
	from := testNow.Add(-24 * time.Hour)
	return &fakeRegistry{
		sites: []registry.Site{{ID: "demo-station", Name: "Sunshine Community Care Station", TimeZone: "Asia/Shanghai"}},
		rooms: []registry.Room{{ID: "r101", SiteID: "demo-station", Name: "Room 101"}},
		beds: []registry.Bed{
			{ID: "b101-1", RoomID: "r101", SiteID: "demo-station", Name: "Bed 1", Nursing: true},
			{ID: "b101-2", RoomID: "r101", SiteID: "demo-station", Name: "Bed 2"},
		},
		residents: []registry.Resident{
			{ID: "res-001", SiteID: "demo-station", BedID: "b101-1", Name: "Wang Xiuying", BirthYear: 1938, Vulnerable: true},
			{ID: "res-002", SiteID: "demo-station", BedID: "b101-2", Name: `<b>Li "Bold"</b>`, BirthYear: 1941},
		},
		devices: []registry.Device{
			{ID: "vm-101", SiteID: "demo-station", Kind: "vitals_monitor", Name: "Vitals monitor 101-1", BedID: "b101-1"},
			{ID: "bs-101", SiteID: "demo-station", Kind: "bed_sensor", Name: "Bed sensor 101-1", BedID: "b101-1"},
			{ID: "fd-001", SiteID: "demo-station", Kind: "fall_detector", Name: "Wristband"},
			{ID: "fd-new", SiteID: "demo-station", Kind: "fall_detector", Name: "New wristband"},
		},
		bindings: []registry.Binding{{DeviceID: "fd-001", ResidentID: "res-001", From: from}},
	}
}

func testAlerts() []alerting.Alert {
	v := 86.0
	return []alerting.Alert{
		{ID: 1, Site: "demo-station", Resident: strp("res-001"), Device: "vm-101", Type: "spo2_low", Severity: "high", Status: "open", OpenedAt: testNow.Add(-5 * time.Minute), Detail: "SpO2 86 % for 30 s", Value: &v},
		{ID: 2, Site: "demo-station", Resident: nil, Device: "fd-new", Type: "fall", Severity: "critical", Status: "open", OpenedAt: testNow.Add(-1 * time.Minute)},
		{ID: 3, Site: "demo-station", Resident: strp("res-001"), Device: "fd-001", Type: "fall", Severity: "critical", Status: "acknowledged", OpenedAt: testNow.Add(-10 * time.Minute)},
	}
}

type testServer struct {
	srv    *Server
	acc    *Accounts
	alerts *fakeAlerts
	feed   *Feed
	reg    *prometheus.Registry
}

func newTestServer(t *testing.T, mod func(*Config, *Deps)) *testServer {
	t.Helper()
	reg := prometheus.NewRegistry()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	now := func() time.Time { return testNow }
	feed, err := NewFeed(FeedConfig{Root: "t", Now: now, ClientBuffer: 8}, reg, log)
	if err != nil {
		t.Fatal(err)
	}
	fa := newFakeAlerts(now, testAlerts()...)
	cfg := Config{HTTPAddr: "127.0.0.1:0", APIToken: testToken, Root: "t", SSEHeartbeat: 50 * time.Millisecond}
	deps := Deps{
		Alerts: fa, Registry: testRegistry(), Live: feed, Now: now,
		Vitals: fakeVitals{series: map[string][]Point{"hr_bpm": {{T: testNow.Add(-2 * time.Minute), V: 80}, {T: testNow.Add(-time.Minute), V: 84}}}},
	}
	deps.Accounts = testAccounts(t, now)
	if mod != nil {
		mod(&cfg, &deps)
	}
	srv, err := New(cfg, withCapabilities(deps), reg, log)
	if err != nil {
		t.Fatal(err)
	}
	return &testServer{srv: srv, acc: deps.Accounts, alerts: fa, feed: feed, reg: reg}
}

// do runs one request through the app.
func (ts *testServer) do(t *testing.T, method, target string, body io.Reader, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req := httptest.NewRequest(method, target, body)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := ts.srv.App().Test(req, 30000)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// serve runs the server on a loopback port until the test ends and
// returns its base URL.
func (ts *testServer) serve(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ts.srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("server did not stop within 15 s of cancel")
		}
	})
	return "http://" + ln.Addr().String()
}

// testPassword is the password of every seeded test user.
const testPassword = "correct horse battery"

// testUsers are seeded into every test server's accounts. "nurse" is the
// caregiver the older tests act as (display name "Nurse Zhang").
var testUsers = []User{
	{Username: "admin", Name: "Admin Ada", Role: RoleAdmin, Lang: "en"},
	{Username: "manager", Name: "Manager Min", Role: RoleManager, Lang: "en", Sites: []string{"demo-station"}},
	{Username: "lead", Name: "Lead Li", Role: RoleNurseLead, Lang: "zh-CN", Sites: []string{"demo-station"}},
	{Username: "nurse", Name: "Nurse Zhang", Role: RoleCaregiver, Lang: "en", Sites: []string{"demo-station"}},
	{Username: "daughter", Name: "Wang Mei", Role: RoleFamily, Lang: "zh-CN", Residents: []string{"res-001"}},
	{Username: "faraway", Name: "Carer Elsewhere", Role: RoleCaregiver, Lang: "en", Sites: []string{"other-site"}},
	{Username: "otherfamily", Name: "Li Family", Role: RoleFamily, Lang: "en", Residents: []string{"res-002"}},
	{Username: "farmanager", Name: "Manager Elsewhere", Role: RoleManager, Lang: "en", Sites: []string{"other-site"}},
}

func init() {
	// Cheap argon2id for tests; TestPasswordHash checks the real cost.
	argonParams.time, argonParams.memoryKiB, argonParams.threads = 1, 64, 1
}

// testAccounts opens accounts in a fresh SQLite file with testUsers. On
// the tests' fixed clock (now() == testNow) the file is a copy of
// accountsTemplate, which holds exactly what testAccountsIn would write at
// testNow; migrating and seeding a file per test took a sixth of the
// package's CPU time under -race.
func testAccounts(t *testing.T, now func() time.Time) *Accounts {
	t.Helper()
	dsn := sqldbtest.SQLiteDSN(t)
	if !now().Equal(testNow) {
		return testAccountsIn(t, now, dsn)
	}
	tmpl, err := accountsTemplate()
	if err != nil {
		t.Fatalf("accounts template: %v", err)
	}
	path := strings.TrimPrefix(dsn, "sqlite:")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, tmpl, 0o600); err != nil {
		t.Fatal(err)
	}
	return openAccounts(t, now, dsn)
}

// templateDir holds the file of accountsTemplate; TestMain removes it.
var templateDir string

// accountsTemplate is the content of a SQLite file that testAccountsIn
// made at testNow (schema and testUsers), closed, so its WAL is folded in.
var accountsTemplate = sync.OnceValues(func() ([]byte, error) {
	dir, err := os.MkdirTemp("", "dashboard-test-accounts-")
	if err != nil {
		return nil, err
	}
	templateDir = dir
	path := filepath.Join(dir, "db", "eldercare.db")
	ctx := context.Background()
	db, err := sqldb.Open(ctx, "sqlite:"+path)
	if err != nil {
		return nil, err
	}
	acc, err := OpenAccounts(ctx, db, func() time.Time { return testNow })
	if err == nil {
		for _, u := range testUsers {
			if _, err = acc.Add(ctx, u, testPassword); err != nil {
				break
			}
		}
	}
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(path + "-wal"); err == nil {
		return nil, fmt.Errorf("%s-wal outlived the close", path)
	}
	return os.ReadFile(path)
})

// testAccountsIn opens accounts in the database dsn with testUsers.
func testAccountsIn(t *testing.T, now func() time.Time, dsn string) *Accounts {
	t.Helper()
	ctx := context.Background()
	db, err := sqldb.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	acc, err := OpenAccounts(ctx, db, now)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range testUsers {
		if _, err := acc.Add(ctx, u, testPassword); err != nil {
			t.Fatal(err)
		}
	}
	return acc
}

// hiddenField returns the value of the hidden input name in page.
func hiddenField(t *testing.T, page, name string) string {
	t.Helper()
	marker := `name="` + name + `" value="`
	i := strings.Index(page, marker)
	if i < 0 {
		t.Fatalf("no %s field in page: %.300s", name, page)
	}
	rest := page[i+len(marker):]
	return rest[:strings.Index(rest, `"`)]
}

// cookieOf returns "name=value" of the Set-Cookie name in resp, or "".
func cookieOf(resp *http.Response, name string) string {
	for _, c := range resp.Cookies() {
		if c.Name == name && c.MaxAge >= 0 && c.Value != "" {
			return c.Name + "=" + c.Value
		}
	}
	return ""
}

// postLogin fetches the login form and posts username and password with
// the form's CSRF token; extra cookies (e.g. a planted session) are sent
// along.
func (ts *testServer) postLogin(t *testing.T, username, password, extraCookie string) *http.Response {
	t.Helper()
	resp, page := ts.do(t, "GET", "/login", nil, nil)
	lc := cookieOf(resp, loginCookie)
	if lc == "" {
		t.Fatal("GET /login: no login cookie")
	}
	form := url.Values{"_csrf": {hiddenField(t, page, "_csrf")}, "username": {username}, "password": {password}}
	cookie := lc
	if extraCookie != "" {
		cookie += "; " + extraCookie
	}
	resp, _ = ts.do(t, "POST", "/login", strings.NewReader(form.Encode()),
		map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie})
	return resp
}

// loginAs logs username in and returns the session cookie ("name=value")
// and the session's CSRF token.
func (ts *testServer) loginAs(t *testing.T, username string) (cookie, csrf string) {
	t.Helper()
	resp := ts.postLogin(t, username, testPassword, "")
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login %s: status %d, want 303", username, resp.StatusCode)
	}
	if cookie = cookieOf(resp, sessionCookie); cookie == "" {
		t.Fatalf("login %s: no session cookie", username)
	}
	_, page := ts.do(t, "GET", "/account", nil, map[string]string{"Cookie": cookie})
	return cookie, hiddenField(t, page, "_csrf")
}

// login logs in as the caregiver "nurse" (Nurse Zhang).
func (ts *testServer) login(t *testing.T) (cookie, csrf string) {
	t.Helper()
	return ts.loginAs(t, "nurse")
}

func ms(t time.Time) string { return fmt.Sprint(t.UnixMilli()) }
