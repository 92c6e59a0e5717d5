package dashboard

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/eldercare-iot/eldercare/alerting"
	"github.com/eldercare-iot/eldercare/internal/sqldb"
	"github.com/eldercare-iot/eldercare/internal/sqldb/sqldbtest"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

func TestPasswordHash(t *testing.T) {
	t.Parallel()
	h1, err := HashPassword("correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	h2, _ := HashPassword("correct horse battery")
	if h1 == h2 {
		t.Error("two hashes of one password are equal: salt not random")
	}
	if !strings.HasPrefix(h1, "$argon2id$v=19$m=") {
		t.Errorf("hash %q is not a PHC argon2id string", h1)
	}
	// A hash of "s3cret password" with the production cost (RFC 9106
	// second recommended option), written independently of HashPassword:
	// argon2.IDKey(pw, salt, 3, 64*1024, 4, 32) with salt
	// "0123456789abcdef", computed once and kept as text (each production
	// cost hash takes a second under -race).
	real := "$argon2id$v=19$m=65536,t=3,p=4$MDEyMzQ1Njc4OWFiY2RlZg$C/EVhBIOag3T9ed3ImVL/8qIZDi2mWJIclUNIUU/Ono"
	key, _ := base64.RawStdEncoding.DecodeString(real[strings.LastIndexByte(real, '$')+1:])
	tests := []struct {
		name, hash, pw string
		ok, wantErr    bool
	}{
		{"right", h1, "correct horse battery", true, false},
		{"wrong", h1, "correct horse batterY", false, false},
		{"empty", h1, "", false, false},
		{"production cost right", real, "s3cret password", true, false},
		{"production cost wrong", real, "s3cret passwore", false, false},
		{"not argon2id", "$2a$10$abcdefghijklmnopqrstuv", "x", false, true},
		{"argon2i", strings.Replace(h1, "argon2id", "argon2i", 1), "correct horse battery", false, true},
		{"bad params", strings.Replace(h1, "t=1", "t=0", 1), "correct horse battery", false, true},
		{"huge memory", strings.Replace(h1, "m=64", "m=99999999", 1), "correct horse battery", false, true},
		{"bad salt", "$argon2id$v=19$m=64,t=1,p=1$!!!$" + base64.RawStdEncoding.EncodeToString(key), "x", false, true},
		{"empty", "", "x", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ok, err := VerifyPassword(tt.hash, tt.pw)
			if (err != nil) != tt.wantErr || ok != tt.ok {
				t.Errorf("VerifyPassword = %v, %v; want ok %v, error %v", ok, err, tt.ok, tt.wantErr)
			}
		})
	}
	for _, pw := range []string{"", "short", strings.Repeat("x", MaxPasswordLen+1), "bad\xffutf8-password"} {
		if _, err := HashPassword(pw); err == nil {
			t.Errorf("HashPassword(%q) accepted", truncate(pw, 20))
		}
	}
	if g := GeneratePassword(); len(g) != 20 || CheckPassword(g) != nil || g == GeneratePassword() {
		t.Errorf("GeneratePassword = %q", g)
	}
}

func TestAccountsStore(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, dsn string) {
		t.Parallel()
		ctx := context.Background()
		db, err := sqldb.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		clock := testNow
		acc, err := OpenAccounts(ctx, db, func() time.Time { return clock })
		if err != nil {
			t.Fatal(err)
		}
		if _, err := OpenAccounts(ctx, db, nil); err != nil { // migrations are idempotent
			t.Fatalf("second OpenAccounts: %v", err)
		}
		ana, err := acc.Add(ctx, User{Username: "ana", Name: "Ana 安娜", Role: RoleCaregiver, Sites: []string{"s1", "s2"}}, testPassword)
		if err != nil {
			t.Fatal(err)
		}
		if ana.ID != 1 || ana.Lang != "en" || !ana.Created.Equal(testNow) {
			t.Errorf("added %+v", ana)
		}
		bad := []struct {
			name string
			u    User
			pw   string
			want []string
		}{
			{"duplicate", User{Username: "ana", Role: RoleCaregiver, Sites: []string{"s1"}}, testPassword, []string{"already exists"}},
			{"everything wrong", User{Username: "Ana!", Name: "a\x00", Role: "boss", Lang: "fr"}, "short", []string{"username", "name", "role", "language", "password"}},
			{"family without resident", User{Username: "fam", Role: RoleFamily}, testPassword, []string{"at least one linked resident"}},
			{"staff without site", User{Username: "cg", Role: RoleCaregiver}, testPassword, []string{"at least one site"}},
			{"bad site id", User{Username: "cg", Role: RoleManager, Sites: []string{"a/b"}}, testPassword, []string{"site"}},
		}
		for _, tt := range bad {
			_, err := acc.Add(ctx, tt.u, tt.pw)
			if err == nil {
				t.Errorf("%s: accepted", tt.name)
				continue
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%s: error %q does not mention %q", tt.name, err, w)
				}
			}
		}
		if _, err := acc.Add(ctx, User{Username: "dad", Role: RoleFamily, Lang: "zh-CN", Residents: []string{"res-001"}}, testPassword); err != nil {
			t.Fatal(err)
		}
		got, err := acc.Authenticate(ctx, "ana", testPassword)
		if err != nil || got.ID != ana.ID || strings.Join(got.Sites, ",") != "s1,s2" || got.Name != "Ana 安娜" {
			t.Errorf("Authenticate = %+v, %v", got, err)
		}
		for _, c := range [][2]string{{"ana", "wrong password"}, {"nobody", testPassword}, {"", ""}} {
			if _, err := acc.Authenticate(ctx, c[0], c[1]); !errors.Is(err, ErrBadLogin) {
				t.Errorf("Authenticate(%q, %q) = %v, want ErrBadLogin", c[0], c[1], err)
			}
		}
		if err := acc.SetPassword(ctx, "ana", "a new password"); err != nil {
			t.Fatal(err)
		}
		if _, err := acc.Authenticate(ctx, "ana", testPassword); !errors.Is(err, ErrBadLogin) {
			t.Error("old password still works")
		}
		if _, err := acc.Authenticate(ctx, "ana", "a new password"); err != nil {
			t.Errorf("new password: %v", err)
		}
		if err := acc.SetPassword(ctx, "nobody", "a new password"); !errors.Is(err, ErrUserNotFound) {
			t.Errorf("SetPassword of unknown user = %v", err)
		}
		if err := acc.SetLang(ctx, "ana", "de"); err == nil {
			t.Error("SetLang de accepted")
		}
		if err := acc.SetLang(ctx, "ana", "zh-CN"); err != nil {
			t.Fatal(err)
		}
		if err := acc.Update(ctx, User{Username: "dad", Role: RoleFamily, Lang: "en", Residents: []string{"res-001", "res-002"}}); err != nil {
			t.Fatal(err)
		}
		if err := acc.Update(ctx, User{Username: "dad", Role: RoleFamily}); err == nil || !strings.Contains(err.Error(), "linked resident") {
			t.Errorf("Update to a family without residents = %v", err)
		}
		if err := acc.Update(ctx, User{Username: "ghost", Role: RoleAdmin}); !errors.Is(err, ErrUserNotFound) {
			t.Errorf("Update of unknown user = %v", err)
		}
		list, err := acc.List(ctx)
		if err != nil || len(list) != 2 || list[0].Username != "ana" || list[0].Lang != "zh-CN" || strings.Join(list[1].Residents, ",") != "res-001,res-002" || list[1].Lang != "en" {
			t.Errorf("List = %+v, %v", list, err)
		}

		// audit log
		for i, e := range []AuditEntry{
			{UserID: 1, Username: "ana", Role: RoleCaregiver, IP: "10.0.0.1", Site: "s1", Action: AuditViewResident, Target: "resident:res-001"},
			{UserID: 1, Username: "ana", Role: RoleCaregiver, IP: "10.0.0.1", Action: AuditAcknowledge, Target: "alert:7", Detail: "fall"},
			{Username: "api", Action: AuditViewVitals, Target: "resident:res-001"},
		} {
			clock = testNow.Add(time.Duration(i) * time.Minute)
			if err := acc.WriteAudit(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		all, err := acc.Audit(ctx, AuditFilter{})
		if err != nil || len(all) != 3 || all[0].Action != AuditViewVitals || all[2].IP != "10.0.0.1" || !all[2].At.Equal(testNow) {
			t.Errorf("Audit = %+v, %v", all, err)
		}
		res, _ := acc.Audit(ctx, AuditFilter{Target: "resident:res-001", Until: testNow.Add(90 * time.Second)})
		if s1, _ := acc.Audit(ctx, AuditFilter{Sites: []string{"s1", "s9"}}); len(s1) != 1 || s1[0].Site != "s1" {
			t.Errorf("Audit(sites s1, s9) = %+v", s1)
		}
		if none, err := acc.Audit(ctx, AuditFilter{Sites: []string{}}); len(none) != 0 || err != nil {
			t.Errorf("Audit(no sites) = %+v, %v", none, err)
		}
		if len(res) != 1 || res[0].Username != "ana" {
			t.Errorf("Audit(target, until) = %+v", res)
		}
	})
}

// form posts values as a logged-in browser.
func (ts *testServer) form(t *testing.T, cookie, path string, v url.Values) (*http.Response, string) {
	t.Helper()
	return ts.do(t, "POST", path, strings.NewReader(v.Encode()), map[string]string{"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
}

// mutableClock is a settable clock for rate-limit tests.
type mutableClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *mutableClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *mutableClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestLoginRateLimit(t *testing.T) {
	t.Parallel()
	clock := &mutableClock{t: testNow}
	ts := newTestServer(t, func(_ *Config, d *Deps) { d.Now = clock.now })
	for i := 0; i < LoginFreePerPair; i++ {
		if resp := ts.postLogin(t, "nurse", "wrong password", ""); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("failure %d: status %d, want 401", i+1, resp.StatusCode)
		}
	}
	// Now even the right password from this address waits, with a clear
	// message: one second after the third failure.
	resp := ts.postLogin(t, "nurse", testPassword, "")
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "2" {
		t.Fatalf("after %d failures: status %d Retry-After %q, want 429 with Retry-After 2", LoginFreePerPair, resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	body := loginBody(t, ts, "nurse", testPassword)
	if !strings.Contains(body, "Too many failed logins for this username from this address") || !strings.Contains(body, "2 s") {
		t.Errorf("429 page lacks a clear message: %.400s", body)
	}
	// Another user from the same address is not held back by nurse's count.
	if resp := ts.postLogin(t, "lead", testPassword, ""); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("other user: status %d, want 303", resp.StatusCode)
	}
	// Delays grow: 2 s, 4 s, 8 s, 16 s after the 4th to 7th failure.
	for i, want := range []string{"3", "5", "9", "17"} {
		clock.add(time.Duration(1<<i) * time.Second)
		if resp := ts.postLogin(t, "nurse", "wrong password", ""); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("delayed failure %d: status %d, want 401", i, resp.StatusCode)
		}
		resp := ts.postLogin(t, "nurse", testPassword, "")
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != want {
			t.Fatalf("after delayed failure %d: status %d Retry-After %q, want 429 %s", i, resp.StatusCode, resp.Header.Get("Retry-After"), want)
		}
	}
	// After the delay the right password works and clears the count.
	clock.add(16 * time.Second)
	if resp := ts.postLogin(t, "nurse", testPassword, ""); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("after the delay: status %d, want 303", resp.StatusCode)
	}
	if resp := ts.postLogin(t, "nurse", "wrong password", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("after a success the count restarts: status %d, want 401", resp.StatusCode)
	}

	// Per address: spraying many usernames from one address.
	clock.add(LoginForget + time.Second)
	for i := 0; i < LoginFreePerIP; i++ {
		if resp := ts.postLogin(t, fmt.Sprintf("spray%d", i), "wrong password", ""); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("spray %d: status %d", i, resp.StatusCode)
		}
	}
	body = loginBody(t, ts, "admin", testPassword)
	if !strings.Contains(body, "Too many failed logins from this address") {
		t.Errorf("per-IP limit: page %.400s", body)
	}
}

func TestLoginDelay(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		fails, free int
		want        time.Duration
	}{
		{0, 3, 0}, {2, 3, 0}, {3, 3, time.Second}, {4, 3, 2 * time.Second}, {12, 3, 512 * time.Second},
		{13, 3, LoginMaxDelay}, {1000, 3, LoginMaxDelay}, {20, 20, time.Second},
	} {
		if got := loginDelay(tt.fails, tt.free); got != tt.want {
			t.Errorf("loginDelay(%d, %d) = %v, want %v", tt.fails, tt.free, got, tt.want)
		}
	}
}

// loginBody posts a login and returns the page.
func loginBody(t *testing.T, ts *testServer, username, password string) string {
	t.Helper()
	resp, page := ts.do(t, "GET", "/login", nil, nil)
	form := url.Values{"_csrf": {hiddenField(t, page, "_csrf")}, "username": {username}, "password": {password}}
	_, body := ts.do(t, "POST", "/login", strings.NewReader(form.Encode()),
		map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookieOf(resp, loginCookie)})
	return body
}

func TestSessionFixation(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, nil)
	// The attacker logs in and plants their session id in the victim's
	// browser; a forged id is planted too.
	planted, _ := ts.loginAs(t, "faraway")
	for _, plant := range []string{planted, sessionCookie + "=forged-id-0123456789"} {
		resp := ts.postLogin(t, "nurse", testPassword, plant)
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("login: %d", resp.StatusCode)
		}
		got := cookieOf(resp, sessionCookie)
		if got == "" || got == plant {
			t.Fatalf("session cookie after login %q, planted %q: want a new id", got, plant)
		}
		if r, _ := ts.do(t, "GET", "/account", nil, map[string]string{"Cookie": got}); r.StatusCode != 200 {
			t.Errorf("new session: %d", r.StatusCode)
		}
	}
	// The planted session ended when the victim logged in over it.
	if r, _ := ts.do(t, "GET", "/account", nil, map[string]string{"Cookie": planted}); r.StatusCode != http.StatusSeeOther {
		t.Errorf("planted session still works: %d", r.StatusCode)
	}
	// Two logins of one user get different ids.
	a, _ := ts.loginAs(t, "nurse")
	b, _ := ts.loginAs(t, "nurse")
	if a == b {
		t.Error("two logins got the same session id")
	}
}

func TestCSRF(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, nil)
	cookie, csrf := ts.login(t)
	_, otherCSRF := ts.loginAs(t, "lead")

	// The login form: a double-submit token.
	resp, page := ts.do(t, "GET", "/login", nil, nil)
	lc, tok := cookieOf(resp, loginCookie), hiddenField(t, page, "_csrf")
	login := func(cookie, tok string) int {
		v := url.Values{"username": {"nurse"}, "password": {testPassword}}
		if tok != "" {
			v.Set("_csrf", tok)
		}
		r, _ := ts.do(t, "POST", "/login", strings.NewReader(v.Encode()), map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie})
		return r.StatusCode
	}
	for _, tt := range []struct {
		name, cookie, tok string
		want              int
	}{
		{"login without token", lc, "", 403},
		{"login without cookie", "", tok, 403},
		{"login wrong token", lc, "x" + tok[1:], 403},
		{"login right token", lc, tok, 303},
	} {
		if got := login(tt.cookie, tt.tok); got != tt.want {
			t.Errorf("%s: status %d, want %d", tt.name, got, tt.want)
		}
	}

	hdr := func(extra map[string]string) map[string]string {
		h := map[string]string{"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"}
		for k, v := range extra {
			h[k] = v
		}
		return h
	}
	for _, tt := range []struct {
		name string
		path string
		body url.Values
		hdr  map[string]string
		want int
	}{
		{"ack without token", "/alerts/1/ack", url.Values{}, nil, 403},
		{"ack wrong _csrf", "/alerts/1/ack", url.Values{"_csrf": {"wrong"}}, nil, 403},
		{"ack token of another session", "/alerts/1/ack", url.Values{"_csrf": {otherCSRF}}, nil, 403},
		{"ack wrong header", "/alerts/1/ack", url.Values{}, map[string]string{"X-CSRF-Token": "wrong"}, 403},
		{"ack token in the query string", "/alerts/1/ack?_csrf=" + url.QueryEscape(csrf), url.Values{}, nil, 403},
		{"language without token", "/account/lang", url.Values{"lang": {"zh-CN"}}, nil, 403},
		{"password without token", "/account/password", url.Values{"current": {testPassword}, "new": {"hijacked password"}}, nil, 403},
		{"check-in without token", "/residents/res-001/checkin", url.Values{}, nil, 403},
		{"logout without token", "/logout", url.Values{}, nil, 403},
		{"ack with header", "/alerts/1/ack", url.Values{}, map[string]string{"X-CSRF-Token": csrf}, 303},
		{"resolve with _csrf", "/alerts/1/resolve", url.Values{"_csrf": {csrf}, "outcome": {"no_injury"}}, nil, 303},
		{"logout with _csrf", "/logout", url.Values{"_csrf": {csrf}}, nil, 303},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, body := ts.do(t, "POST", tt.path, strings.NewReader(tt.body.Encode()), hdr(tt.hdr))
			if r.StatusCode != tt.want {
				t.Errorf("status %d, want %d: %.200s", r.StatusCode, tt.want, body)
			}
		})
	}
	if _, err := ts.acc.Authenticate(context.Background(), "nurse", testPassword); err != nil {
		t.Errorf("password changed without CSRF token: %v", err)
	}
	if r, _ := ts.do(t, "GET", "/account", nil, map[string]string{"Cookie": cookie}); r.StatusCode != http.StatusSeeOther {
		t.Errorf("session alive after logout: %d", r.StatusCode)
	}
}

func TestScope(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, nil)
	tests := []struct {
		user, method, path string
		want               int
	}{
		{"daughter", "GET", "/residents/res-002", 404}, // another family's elder
		{"daughter", "GET", "/residents/res-999", 404}, // nobody
		{"daughter", "GET", "/residents/..%2Fadmin", 404},
		{"otherfamily", "GET", "/residents/res-001", 404},
		{"faraway", "GET", "/residents/res-001", 404}, // staff of another site
		{"faraway", "POST", "/alerts/1/ack", 404},
		{"faraway", "POST", "/alerts/2/ack", 404}, // unassigned alert of another site
		{"daughter", "POST", "/alerts/3/resolve", 404},
		{"daughter", "GET", "/board", 404}, // staff pages are not there for a family account
		{"daughter", "GET", "/alerts", 404},
		{"daughter", "GET", "/alerts/fragment", 404},
		{"daughter", "GET", "/manager/audit", 404},
		{"nurse", "GET", "/manager/audit", 403},
		{"manager", "GET", "/manager/audit", 200},
		{"admin", "GET", "/manager/audit", 200},
	}
	cookies := map[string][2]string{}
	for _, tt := range tests {
		t.Run(tt.user+" "+tt.method+" "+tt.path, func(t *testing.T) {
			cs, ok := cookies[tt.user]
			if !ok {
				c, csrf := ts.loginAs(t, tt.user)
				cs = [2]string{c, csrf}
				cookies[tt.user] = cs
			}
			var resp *http.Response
			var body string
			if tt.method == "POST" {
				resp, body = ts.form(t, cs[0], tt.path, url.Values{"_csrf": {cs[1]}, "outcome": {"no_injury"}})
			} else {
				resp, body = ts.do(t, "GET", tt.path, nil, map[string]string{"Cookie": cs[0]})
			}
			if resp.StatusCode != tt.want {
				t.Errorf("status %d, want %d: %.200s", resp.StatusCode, tt.want, body)
			}
			if tt.want == 404 && strings.Contains(body, "Wang Xiuying") {
				t.Error("404 page names the resident")
			}
		})
	}
	if st := ts.alerts.get(1).Status; st != alerting.StatusOpen {
		t.Errorf("alert 1 is %s after out-of-scope POSTs", st)
	}
	// Staff of another site see none of this site's alerts on /alerts.
	fc := cookies["faraway"][0]
	for _, p := range []string{"/alerts", "/alerts/fragment"} {
		_, page := ts.do(t, "GET", p, nil, map[string]string{"Cookie": fc})
		if strings.Contains(page, `data-alert="1"`) || strings.Contains(page, `data-alert="2"`) {
			t.Errorf("%s of another site's caregiver lists this site's alerts", p)
		}
	}
	nc, _ := ts.login(t)
	if _, page := ts.do(t, "GET", "/alerts", nil, map[string]string{"Cookie": nc}); !strings.Contains(page, `data-alert="1"`) {
		t.Error("/alerts of this site's caregiver lacks alert 1")
	}
	if st := ts.alerts.get(3).Status; st != alerting.StatusAcknowledged {
		t.Errorf("alert 3 is %s after a family POST", st)
	}
	// In scope: the scope check itself.
	for _, c := range []struct {
		user, res string
		want      bool
	}{{"daughter", "res-001", true}, {"daughter", "res-002", false}, {"nurse", "res-002", true}, {"faraway", "res-002", false}, {"admin", "res-002", true}, {"admin", "res-404", false}} {
		u := findTestUser(t, ts, c.user)
		if got := ts.srv.canSeeResident(&u, c.res); got != c.want {
			t.Errorf("canSeeResident(%s, %s) = %v, want %v", c.user, c.res, got, c.want)
		}
	}
}

func findTestUser(t *testing.T, ts *testServer, name string) User {
	t.Helper()
	us, err := ts.acc.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range us {
		if u.Username == name {
			return u
		}
	}
	t.Fatalf("no user %s", name)
	return User{}
}

func TestAuditTrail(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, testAuditTrail)
}

// testAuditTrail: resident views and alert changes, from the browser and
// the API, land in the audit log of the database dsn with who, when,
// what, site and IP; managers read their sites' rows.
func testAuditTrail(t *testing.T, dsn string) {
	t.Parallel()
	ts := newTestServer(t, func(_ *Config, d *Deps) { d.Accounts = testAccountsIn(t, d.Now, dsn) })
	cookie, csrf := ts.login(t)
	ctx := context.Background()

	if r, body := ts.do(t, "GET", "/residents/res-001", nil, map[string]string{"Cookie": cookie}); r.StatusCode != 200 {
		t.Fatalf("resident page: %d %.300s", r.StatusCode, body)
	}
	if r, _ := ts.form(t, cookie, "/alerts/1/ack", url.Values{"_csrf": {csrf}}); r.StatusCode != 303 {
		t.Fatalf("ack: %d", r.StatusCode)
	}
	if r, _ := ts.form(t, cookie, "/alerts/1/resolve", url.Values{"_csrf": {csrf}, "outcome": {"false_alarm"}}); r.StatusCode != 303 {
		t.Fatalf("resolve: %d", r.StatusCode)
	}
	// Refused or failing requests leave no "view" rows; a refusal (404)
	// leaves a "refused" row.
	ts.do(t, "GET", "/residents/res-999", nil, map[string]string{"Cookie": cookie})
	ts.form(t, cookie, "/alerts/1/ack", url.Values{"_csrf": {csrf}}) // 409: already resolved
	// The API.
	bearer := map[string]string{"Authorization": "Bearer " + testToken}
	if r, _ := ts.do(t, "GET", "/api/v1/residents/res-002/vitals", nil, bearer); r.StatusCode != 200 {
		t.Fatalf("api vitals: %d", r.StatusCode)
	}
	if r, _ := ts.do(t, "POST", "/api/v1/alerts/3/resolve", strings.NewReader(`{"outcome":"injury","note":"bruised knee, cooled"}`), map[string]string{"Authorization": "Bearer " + testToken, "Content-Type": "application/json"}); r.StatusCode != 200 {
		t.Fatalf("api resolve: %d", r.StatusCode)
	}

	// Views of every resident's data at once: the board, the alert list,
	// the API's lists.
	for _, g := range []struct {
		path string
		hdr  map[string]string
	}{{"/board", map[string]string{"Cookie": cookie}}, {"/alerts", map[string]string{"Cookie": cookie}},
		{"/api/v1/residents", bearer}, {"/api/v1/alerts", bearer}} {
		if r, _ := ts.do(t, "GET", g.path, nil, g.hdr); r.StatusCode != 200 {
			t.Fatalf("GET %s: %d", g.path, r.StatusCode)
		}
	}

	es, err := ts.acc.Audit(ctx, AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range es {
		if e.Action == AuditLogin {
			continue
		}
		got = append(got, fmt.Sprintf("%s %s %s %s", e.Username, e.Action, e.Target, e.IP))
	}
	want := []string{
		"api view_alerts  0.0.0.0",
		"api view_residents  0.0.0.0",
		"nurse view_alerts  0.0.0.0",
		"nurse view_board  0.0.0.0",
		"api resolve alert:3 0.0.0.0",
		"api view_vitals resident:res-002 0.0.0.0",
		"nurse refused path:/residents/res-999 0.0.0.0",
		"nurse resolve alert:1 0.0.0.0",
		"nurse acknowledge alert:1 0.0.0.0",
		"nurse view_resident resident:res-001 0.0.0.0",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("audit rows:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, e := range es {
		if e.Username == "nurse" && (e.UserID == 0 || e.Role != RoleCaregiver || !e.At.Equal(testNow)) {
			t.Errorf("row %+v lacks who/when", e)
		}
	}

	// Managers read it on /manager/audit and API clients on /api/v1/audit.
	mc, _ := ts.loginAs(t, "manager")
	r, page := ts.do(t, "GET", "/manager/audit?target=alert:1", nil, map[string]string{"Cookie": mc})
	rows := page
	if i := strings.Index(page, "<tbody>"); i >= 0 {
		rows = page[i:]
	}
	if r.StatusCode != 200 || !strings.Contains(rows, "acknowledged an alert") || strings.Contains(rows, "viewed a resident") {
		t.Errorf("/manager/audit?target=alert:1: %d %.500s", r.StatusCode, page)
	}
	for _, e := range es {
		if e.Username == "api" && (e.Action == AuditViewAlerts || e.Action == AuditViewList) {
			continue // the API token sees every site: no single site to file it under
		}
		if e.Action != AuditLogin && e.Action != AuditRefused && e.Site != "demo-station" { // a refusal names no site
			t.Errorf("row %+v: site %q, want demo-station", e, e.Site)
		}
	}
	fc, _ := ts.loginAs(t, "farmanager") // a manager of another site reads none of these rows
	if r, page := ts.do(t, "GET", "/manager/audit", nil, map[string]string{"Cookie": fc}); r.StatusCode != 200 || strings.Contains(page, "<td>alert:1</td>") || strings.Contains(page, "<td>resident:res-001</td>") || !strings.Contains(page, "No entries") {
		t.Errorf("/manager/audit of another site's manager: %d %.500s", r.StatusCode, page)
	}
	r, body := ts.do(t, "GET", "/api/v1/audit?target=resident:res-001", nil, bearer)
	var out struct{ Entries []AuditEntry }
	if err := json.Unmarshal([]byte(body), &out); r.StatusCode != 200 || err != nil || len(out.Entries) != 1 || out.Entries[0].Action != AuditViewResident || out.Entries[0].Username != "nurse" {
		t.Errorf("/api/v1/audit: %d %v %s", r.StatusCode, err, body)
	}
	for _, q := range []string{"since=yesterday", "limit=0", "limit=x"} {
		if r, _ := ts.do(t, "GET", "/api/v1/audit?"+q, nil, bearer); r.StatusCode != 400 {
			t.Errorf("/api/v1/audit?%s: %d, want 400", q, r.StatusCode)
		}
	}
	if r, _ := ts.do(t, "GET", "/api/v1/audit", nil, nil); r.StatusCode != 401 {
		t.Errorf("/api/v1/audit without token: %d", r.StatusCode)
	}
}

func TestAccountPage(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, nil)
	cookie, csrf := ts.login(t)
	other, _ := ts.login(t)
	if r, _ := ts.form(t, cookie, "/account/lang", url.Values{"_csrf": {csrf}, "lang": {"fr"}}); r.StatusCode != 400 {
		t.Errorf("lang fr: %d", r.StatusCode)
	}
	r, page := ts.form(t, cookie, "/account/lang", url.Values{"_csrf": {csrf}, "lang": {"zh-CN"}})
	if r.StatusCode != 200 || !strings.Contains(page, "已保存") {
		t.Errorf("lang zh-CN: %d %.300s", r.StatusCode, page)
	}
	if u := findTestUser(t, ts, "nurse"); u.Lang != "zh-CN" {
		t.Errorf("lang stored %q", u.Lang)
	}
	if r, _ := ts.form(t, cookie, "/account/password", url.Values{"_csrf": {csrf}, "current": {"wrong password"}, "new": {"a brand new password"}}); r.StatusCode != 403 {
		t.Errorf("password change with wrong current: %d", r.StatusCode)
	}
	if r, _ := ts.form(t, cookie, "/account/password", url.Values{"_csrf": {csrf}, "current": {testPassword}, "new": {"short"}}); r.StatusCode != 400 {
		t.Errorf("short new password: %d", r.StatusCode)
	}
	if r, _ := ts.form(t, cookie, "/account/password", url.Values{"_csrf": {csrf}, "current": {testPassword}, "new": {"a brand new password"}}); r.StatusCode != 200 {
		t.Errorf("password change: %d", r.StatusCode)
	}
	if r, _ := ts.do(t, "GET", "/account", nil, map[string]string{"Cookie": other}); r.StatusCode != http.StatusSeeOther {
		t.Errorf("other session survives a password change: %d", r.StatusCode)
	}
	if r, _ := ts.do(t, "GET", "/account", nil, map[string]string{"Cookie": cookie}); r.StatusCode != 200 {
		t.Errorf("own session ended by its password change: %d", r.StatusCode)
	}
}

// FuzzVerifyPassword: a stored hash is parsed on every login; a malformed
// one must give an error, never a panic or a match.
func FuzzVerifyPassword(f *testing.F) {
	h, err := HashPassword("correct horse battery")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(h, "correct horse battery")
	f.Add("$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", "x")
	f.Add("$argon2id$v=19$m=,t=,p=$$", "")
	f.Add("$7$101$abc$def", "pw")
	f.Fuzz(func(t *testing.T, hash, pw string) {
		if strings.Contains(hash, "m=") && !strings.HasPrefix(hash, "$argon2id$v=19$m=64,") && len(hash) > 0 {
			// keep fuzzing cheap: skip hashes asking for more than 64 KiB
			var m uint32
			if _, err := fmt.Sscanf(strings.SplitN(hash+"$$$$", "$", 5)[3], "m=%d", &m); err == nil && m > 64 {
				t.Skip()
			}
		}
		ok, err := VerifyPassword(hash, pw)
		if ok && err != nil {
			t.Fatalf("match with error %v", err)
		}
		if ok && hash != h {
			if again, _ := VerifyPassword(hash, pw+"x"); again {
				t.Fatalf("hash %q matches two passwords", hash)
			}
		}
	})
}

func TestFrameSite(t *testing.T) {
	t.Parallel()
	frame := func(c Change) []byte {
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		return []byte("event: " + c.Kind + "\ndata: " + string(b) + "\n\n")
	}
	tests := []struct {
		name  string
		frame []byte
		want  string
		ok    bool
	}{
		{"device", frame(Change{Kind: "device", Device: &DeviceState{Device: "vm-1", Site: "s1"}}), "s1", true},
		{"alert", frame(Change{Kind: "alert", Alert: &alerting.Change{ID: "x", Alert: alerting.Alert{ID: 1, Site: "s2", Device: "d"}}}), "s2", true},
		{"hostile device id", frame(Change{Kind: "device", Device: &DeviceState{Device: `x","site":"s1`, Site: "s9"}}), "s9", true},
		{"no site", []byte("event: x\ndata: {}\n\n"), "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := frameSite(tt.frame)
			if got != tt.want || ok != tt.ok {
				t.Errorf("frameSite = %q, %v; want %q, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

// TestSSEScope: a caregiver of another site gets none of this site's live
// changes; a family member gets no frames at all (heartbeats only).
func TestSSEScope(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, nil)
	base := ts.serve(t)
	connect := func(user string) <-chan string {
		cookie, _ := ts.loginAs(t, user)
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"/events", nil)
		req.Header.Set("Cookie", cookie)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		if resp.StatusCode != 200 {
			t.Fatalf("%s /events: %d", user, resp.StatusCode)
		}
		return sseReader(resp.Body)
	}
	far := connect("faraway")
	testenv.EventuallyTrue(t, 15*time.Second, "the SSE client to subscribe", func() bool { return ts.feed.Subscribers() == 1 })
	ts.feed.PublishAlert(alerting.Change{ID: "a-1", Event: "opened", At: testNow, Alert: alerting.Alert{ID: 1, Site: "demo-station", Resident: strp("res-001"), Device: "vm-101", Type: "sos", Severity: "critical", Status: "open"}})
	ts.feed.PublishAlert(alerting.Change{ID: "a-2", Event: "opened", At: testNow, Alert: alerting.Alert{ID: 2, Site: "other-site", Device: "fd-9", Type: "fall", Severity: "critical", Status: "open"}})
	var ch Change
	if err := json.Unmarshal([]byte(waitEvent(t, far, "alert")), &ch); err != nil {
		t.Fatal(err)
	}
	if ch.Alert == nil || ch.Alert.Alert.Site != "other-site" {
		t.Errorf("first alert frame for another site's caregiver = %+v, want the other-site alert only", ch.Alert)
	}
	// The family has no live feed at all: /events is a staff route (404).
	cookie, _ := ts.loginAs(t, "daughter")
	resp, _ := ts.do(t, "GET", "/events", nil, map[string]string{"Cookie": cookie})
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("daughter /events: %d, want 404", resp.StatusCode)
	}
}

// TestHashingBounded: argon2id computations (64 MiB each in production)
// wait for a slot, so a burst of logins cannot exhaust memory.
func TestHashingBounded(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, nil)
	for i := 0; i < cap(ts.acc.hashing); i++ {
		ts.acc.hashing <- struct{}{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := ts.acc.Authenticate(ctx, "nurse", testPassword); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Authenticate with every slot taken = %v, want a deadline error", err)
	}
	<-ts.acc.hashing
	if _, err := ts.acc.Authenticate(context.Background(), "nurse", testPassword); err != nil {
		t.Errorf("Authenticate with a free slot: %v", err)
	}
}

// TestClientIP: X-Real-IP names the client only behind a trusted proxy;
// the audit log and the rate limit use that address.
func TestClientIP(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		trusted []string
		want    string
	}{
		{"no proxy: header ignored", nil, "0.0.0.0"},
		{"untrusted peer: header ignored", []string{"10.0.0.0/8"}, "0.0.0.0"},
		{"trusted proxy", []string{"0.0.0.0"}, "203.0.113.7"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ts := newTestServer(t, func(c *Config, _ *Deps) { c.TrustedProxies = tt.trusted })
			r := ts.postLoginHdr(t, "nurse", "wrong password", map[string]string{"X-Real-IP": "203.0.113.7"})
			if r.StatusCode != http.StatusUnauthorized {
				t.Fatalf("status %d", r.StatusCode)
			}
			es, _ := ts.acc.Audit(context.Background(), AuditFilter{})
			if len(es) != 1 || es[0].IP != tt.want || es[0].Action != AuditLoginFailed {
				t.Errorf("audit rows %+v, want one login_failed from %s", es, tt.want)
			}
		})
	}
	if err := (Config{HTTPAddr: "127.0.0.1:1", APIToken: testToken, TrustedProxies: []string{"nginx"}}).validate(true, true); err == nil || !strings.Contains(err.Error(), "trusted proxy") {
		t.Errorf("validate bad proxy: %v", err)
	}
}

// postLoginHdr is postLogin with extra request headers.
func (ts *testServer) postLoginHdr(t *testing.T, username, password string, hdr map[string]string) *http.Response {
	t.Helper()
	resp, page := ts.do(t, "GET", "/login", nil, nil)
	form := url.Values{"_csrf": {hiddenField(t, page, "_csrf")}, "username": {username}, "password": {password}}
	h := map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookieOf(resp, loginCookie)}
	for k, v := range hdr {
		h[k] = v
	}
	resp, _ = ts.do(t, "POST", "/login", strings.NewReader(form.Encode()), h)
	return resp
}

// BenchmarkVerifyPasswordProduction: the cost of one login check with the
// production argon2id parameters (t=3, 64 MiB, 4 lanes).
func BenchmarkVerifyPasswordProduction(b *testing.B) {
	salt := []byte("0123456789abcdef")
	key := argon2.IDKey([]byte("s3cret password"), salt, 3, 64*1024, 4, 32)
	h := fmt.Sprintf("$argon2id$v=19$m=65536,t=3,p=4$%s$%s", base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
	for b.Loop() {
		if ok, err := VerifyPassword(h, "s3cret password"); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}

// TestLoginRateLimitParallel: wrong passwords sent all at once still get
// only LoginFreePerPair password checks; the rest are refused with 429.
func TestLoginRateLimitParallel(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, nil)
	const n = 15
	codes := make(chan int, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() { codes <- ts.postLogin(t, "lead", "not the password", "").StatusCode })
	}
	wg.Wait()
	close(codes)
	count := map[int]int{}
	for c := range codes {
		count[c]++
	}
	if count[http.StatusUnauthorized] > LoginFreePerPair || count[http.StatusTooManyRequests] != n-count[http.StatusUnauthorized] {
		t.Fatalf("status counts %v: want at most %d password checks (401), the rest 429", count, LoginFreePerPair)
	}
}
