package dashboard

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/internal/sqldb"
	"github.com/eldercare-iot/eldercare/internal/sqldb/sqldbtest"
)

// TestSessionsShared (issue 15 item 8): two dashboard replicas on one
// database share sessions; a session made on one is valid on the other and
// after a restart; a logout on one ends it on both.
func TestSessionsShared(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, testSessionsShared)
}

func testSessionsShared(t *testing.T, dsn string) {
	t.Parallel()
	// Replica a seeds the users; replica b opens the same database itself.
	a := newTestServer(t, func(_ *Config, d *Deps) { d.Accounts = testAccountsIn(t, d.Now, dsn) })
	replica := func() *testServer {
		return newTestServer(t, func(_ *Config, d *Deps) { d.Accounts = openAccounts(t, d.Now, dsn) })
	}
	b := replica()
	cookie, csrf := a.login(t)
	hdr := map[string]string{"Cookie": cookie}
	if r, body := b.do(t, "GET", "/account", nil, hdr); r.StatusCode != 200 || !strings.Contains(body, "nurse") {
		t.Fatalf("session of replica a on replica b: %d %.200s", r.StatusCode, body)
	}
	// The CSRF token travels with the session.
	if r, _ := b.form(t, cookie, "/account/lang", url.Values{"_csrf": {csrf}, "lang": {"en"}}); r.StatusCode != 200 {
		t.Fatalf("POST with a's CSRF token on b: %d", r.StatusCode)
	}
	// A restart: a new server on the same database.
	c := replica()
	if r, _ := c.do(t, "GET", "/account", nil, hdr); r.StatusCode != 200 {
		t.Fatalf("session after a restart: %d", r.StatusCode)
	}
	// Logout on b ends it on a and c.
	if r, _ := b.form(t, cookie, "/logout", url.Values{"_csrf": {csrf}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %d", r.StatusCode)
	}
	for name, ts := range map[string]*testServer{"a": a, "c": c} {
		if r, _ := ts.do(t, "GET", "/account", nil, hdr); r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/login" {
			t.Errorf("replica %s after logout on b: %d %s, want 303 to /login", name, r.StatusCode, r.Header.Get("Location"))
		}
	}
	// The login limit is shared too: failures on a hold back b.
	for range LoginFreePerPair {
		a.postLogin(t, "lead", "wrong password", "")
	}
	if r := b.postLogin(t, "lead", testPassword, ""); r.StatusCode != http.StatusTooManyRequests {
		t.Errorf("login on b after %d failures on a: %d, want 429", LoginFreePerPair, r.StatusCode)
	}
}

// openAccounts opens the accounts of an existing database (no seeding).
func openAccounts(t *testing.T, now func() time.Time, dsn string) *Accounts {
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
	return acc
}

// TestSessionIdle: a session without requests for SessionIdle ends; one in
// use stays until its absolute expiry.
func TestSessionIdle(t *testing.T) {
	t.Parallel()
	clock := &mutableClock{t: testNow}
	ts := newTestServer(t, func(c *Config, d *Deps) {
		d.Now = clock.now
		c.SessionIdle = 30 * time.Minute
		c.SessionTTL = 3 * time.Hour
	})
	cookie, _ := ts.login(t)
	hdr := map[string]string{"Cookie": cookie}
	for range 5 { // 5 × 25 min of use: past the idle timeout in total, never idle
		clock.add(25 * time.Minute)
		if r, _ := ts.do(t, "GET", "/account", nil, hdr); r.StatusCode != 200 {
			t.Fatalf("session in use ended after %v: %d", clock.now().Sub(testNow), r.StatusCode)
		}
	}
	clock.add(31 * time.Minute)
	if r, _ := ts.do(t, "GET", "/account", nil, hdr); r.StatusCode != http.StatusSeeOther {
		t.Errorf("idle session: %d, want 303 to /login", r.StatusCode)
	}
	// Absolute expiry.
	cookie, _ = ts.login(t)
	hdr = map[string]string{"Cookie": cookie}
	for range 8 { // 200 min of use
		clock.add(25 * time.Minute)
		ts.do(t, "GET", "/account", nil, hdr)
	}
	if r, _ := ts.do(t, "GET", "/account", nil, hdr); r.StatusCode != http.StatusSeeOther {
		t.Errorf("session past its TTL: %d, want 303", r.StatusCode)
	}
}

// TestLoginOtherAddress (issue 11 item 8): ten wrong passwords from one
// address do not stop the right user logging in from another; an
// administrator unlocks the user for the failing address.
func TestLoginOtherAddress(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(c *Config, _ *Deps) { c.TrustedProxies = []string{"0.0.0.0"} })
	from := func(ip string) map[string]string { return map[string]string{"X-Real-IP": ip} }
	codes := map[int]int{}
	for range 10 {
		codes[ts.postLoginHdr(t, "nurse", "wrong password", from("203.0.113.66")).StatusCode]++
	}
	if codes[http.StatusUnauthorized] != LoginFreePerPair || codes[http.StatusTooManyRequests] != 10-LoginFreePerPair {
		t.Fatalf("ten wrong passwords: status counts %v, want %d × 401 then 429", codes, LoginFreePerPair)
	}
	if r := ts.postLoginHdr(t, "nurse", testPassword, from("203.0.113.66")); r.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("right password from the failing address: %d, want 429", r.StatusCode)
	}
	r := ts.postLoginHdr(t, "nurse", testPassword, from("198.51.100.7"))
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("right password from another address: %d, want 303", r.StatusCode)
	}

	// The admin sees the failed logins and unlocks.
	admin, csrf := ts.loginAs(t, "admin")
	_, page := ts.do(t, "GET", "/admin/users/nurse", nil, map[string]string{"Cookie": admin})
	if !strings.Contains(page, `id="failed-logins"`) || !strings.Contains(page, "3 recent failed logins") {
		t.Errorf("admin user page does not show the failed logins: %.2000s", page)
	}
	if r, body := ts.form(t, admin, "/admin/users/nurse", url.Values{"_csrf": {csrf}, "action": {"unlock"}}); r.StatusCode != 200 || strings.Contains(body, `id="failed-logins"`) {
		t.Fatalf("unlock: %d, failed logins still shown: %v", r.StatusCode, strings.Contains(body, `id="failed-logins"`))
	}
	if r := ts.postLoginHdr(t, "nurse", testPassword, from("203.0.113.66")); r.StatusCode != http.StatusSeeOther {
		t.Errorf("after unlock, from the failing address: %d, want 303", r.StatusCode)
	}
	es, _ := ts.acc.Audit(context.Background(), AuditFilter{Action: AuditUnlock})
	if len(es) != 1 || es[0].Username != "admin" || es[0].Target != "user:nurse" {
		t.Errorf("unlock audit rows %+v", es)
	}
}

// TestAccountAudit: logout, password changes (and failed ones) and
// refused requests are audited.
func TestAccountAudit(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, nil)
	cookie, csrf := ts.login(t)
	ts.form(t, cookie, "/account/password", url.Values{"_csrf": {csrf}, "current": {"not it at all"}, "new": {"a brand new passphrase"}})
	if r, body := ts.form(t, cookie, "/account/password", url.Values{"_csrf": {csrf}, "current": {testPassword}, "new": {"Password123"}}); r.StatusCode != 400 || !strings.Contains(body, "too common") {
		t.Errorf("common new password: %d, want 400 naming it too common", r.StatusCode)
	}
	if r, _ := ts.form(t, cookie, "/account/password", url.Values{"_csrf": {csrf}, "current": {testPassword}, "new": {"a brand new passphrase"}}); r.StatusCode != 200 {
		t.Errorf("password change: %d", r.StatusCode)
	}
	ts.do(t, "GET", "/admin", nil, map[string]string{"Cookie": cookie}) // 403 for a caregiver
	ts.form(t, cookie, "/logout", url.Values{"_csrf": {csrf}})
	es, err := ts.acc.Audit(context.Background(), AuditFilter{Username: "nurse"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range es {
		got = append(got, e.Action+" "+e.Target+" "+e.Detail)
	}
	want := []string{
		"logout  ",
		"refused path:/admin GET:403",
		"password_change user:nurse other sessions ended",
		"password_change_failed user:nurse wrong current password",
		"login user:nurse ",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("audit rows:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestCommonPassword(t *testing.T) {
	t.Parallel()
	for pw, want := range map[string]bool{
		"1234567890": true, "QwertyUIOP": true, "woaini1314520": true, "aaaaaaaaaaaa": true,
		"correct horse battery": false, "eldercare night shift 7": false,
	} {
		if got := errorsIs(CheckPassword(pw), ErrCommonPassword); got != want {
			t.Errorf("CheckPassword(%q) common = %v, want %v", pw, got, want)
		}
	}
	if len(commonPasswords) < 100 {
		t.Errorf("common password list has %d entries", len(commonPasswords))
	}
}

// TestEventsEndAtLogout (issue 11 item 7): an open /events stream closes
// within a second of its session's logout, and when an administrator
// disables the account.
func TestEventsEndAtLogout(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(c *Config, _ *Deps) { c.SSEHeartbeat = time.Hour })
	base := ts.serve(t)
	for _, how := range []string{"logout", "disable"} {
		t.Run(how, func(t *testing.T) {
			cookie, csrf := ts.login(t)
			req, _ := http.NewRequest("GET", base+"/events", nil)
			req.Header.Set("Cookie", cookie)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			br := bufio.NewReader(resp.Body)
			if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "retry:") {
				t.Fatalf("stream start %q %v", line, err)
			}
			closed := make(chan time.Time, 1)
			go func() {
				io.Copy(io.Discard, br) //nolint:errcheck // until EOF
				closed <- time.Now()
			}()
			start := time.Now()
			switch how {
			case "logout":
				ts.form(t, cookie, "/logout", url.Values{"_csrf": {csrf}})
			case "disable":
				admin, acsrf := ts.loginAs(t, "admin")
				if r, _ := ts.form(t, admin, "/admin/users/nurse", url.Values{"_csrf": {acsrf}, "action": {"disable"}}); r.StatusCode != 200 {
					t.Fatalf("disable: %d", r.StatusCode)
				}
				t.Cleanup(func() { ts.acc.SetDisabled(context.Background(), "nurse", false) }) //nolint:errcheck
			}
			select {
			case at := <-closed:
				if d := at.Sub(start); d > time.Second {
					t.Errorf("stream closed %v after %s, want within 1 s", d, how)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("stream still open 10 s after %s", how)
			}
		})
	}
}

// TestEventsEndOnOtherReplica: a logout on another replica ends the stream
// within Config.SessionCheck.
func TestEventsEndOnOtherReplica(t *testing.T) {
	t.Parallel()
	dsn := sqldbtest.SQLiteDSN(t)
	a := newTestServer(t, func(c *Config, d *Deps) {
		c.SSEHeartbeat, c.SessionCheck = time.Hour, 100*time.Millisecond
		d.Accounts = testAccountsIn(t, d.Now, dsn)
	})
	b := newTestServer(t, func(_ *Config, d *Deps) { d.Accounts = openAccounts(t, d.Now, dsn) })
	base := a.serve(t)
	cookie, csrf := a.login(t)
	req, _ := http.NewRequest("GET", base+"/events", nil)
	req.Header.Set("Cookie", cookie)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	closed := make(chan struct{})
	go func() { io.Copy(io.Discard, resp.Body); close(closed) }() //nolint:errcheck
	b.form(t, cookie, "/logout", url.Values{"_csrf": {csrf}})
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("stream on replica a still open 10 s after logout on replica b")
	}
}

func errorsIs(err, target error) bool {
	return err != nil && strings.Contains(err.Error(), target.Error())
}
