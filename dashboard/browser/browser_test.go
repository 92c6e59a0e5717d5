package browser_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/eldercare-iot/eldercare/alerting"
	"github.com/eldercare-iot/eldercare/dashboard"
)

// sessionCookie is the name of the dashboard's session cookie.
const sessionCookie = "eldercare_session"

// login logs the browser of ctx in as username, with the session the
// template database holds for the account (shared.sessions: the cookie is
// set through the DevTools protocol, as the login form's answer sets it),
// opens "/" and returns the path the role's home redirect lands on. It
// fails the test when the session does not open a page. Tests about the
// login form itself use loginForm.
func login(t *testing.T, ctx context.Context, st *stack, username string) string {
	t.Helper()
	setSession(t, ctx, st, username)
	c, cancel := within(ctx, 20*time.Second)
	defer cancel()
	if _, err := chromedp.RunResponse(c, chromedp.Navigate(st.base+"/")); err != nil {
		t.Fatalf("log in as %s: open /: %v", username, err)
	}
	path := pathname(t, ctx)
	if path == "/login" {
		t.Fatalf("log in as %s: the session cookie of the template database led to /login", username)
	}
	return path
}

// setSession puts the session cookie of username (shared.sessions) into
// the browser of ctx.
func setSession(t *testing.T, ctx context.Context, st *stack, username string) {
	t.Helper()
	id, ok := shared.sessions[username]
	if !ok {
		t.Fatalf("no session of %q in the template database", username)
	}
	c, cancel := within(ctx, 20*time.Second)
	defer cancel()
	httpOnly := true
	if _, err := chromedp.Call(c, network.SetCookie, network.SetCookieParams{Name: sessionCookie, Value: id, URL: st.base + "/", Path: "/",
		HTTPOnly: &httpOnly, SameSite: network.CookieSameSiteLax}); err != nil {
		t.Fatalf("set the session cookie of %s: %v", username, err)
	}
}

// loginForm logs username in through the login form and returns the path
// the browser lands on.
func loginForm(t *testing.T, ctx context.Context, st *stack, username string) string {
	t.Helper()
	a, ok := st.accounts[username]
	if !ok {
		t.Fatalf("no account %q", username)
	}
	c, cancel := within(ctx, 20*time.Second)
	defer cancel()
	err := chromedp.Do(c,
		chromedp.Navigate(st.base+"/login"),
		chromedp.WaitVisible(chromedp.CSS(`input[name="username"]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name="username"]`), a.user.Username),
		chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), a.password),
	)
	if err == nil {
		// RunResponse waits for the page that the form's redirect loads.
		_, err = chromedp.RunResponse(c, chromedp.Submit(chromedp.CSS(`input[name="password"]`)))
	}
	var path string
	if err == nil {
		path, err = eval[string](ctx, `location.pathname`)
	}
	if err != nil {
		body, _ := eval[string](ctx, `document.body ? document.body.innerText : ""`)
		t.Fatalf("log in as %s: %v (page: %.300s)", username, err, body)
	}
	return path
}

// openIn logs username in and opens path in lang (?lang=, which also sets
// the account's language), failing on an HTTP error or a page in another
// language.
func openIn(t *testing.T, ctx context.Context, st *stack, username, path, lang string) {
	t.Helper()
	login(t, ctx, st, username)
	if code := open(t, ctx, st, path+"?lang="+lang); code != http.StatusOK {
		t.Fatalf("GET %s as %s: HTTP %d", path, username, code)
	}
	if got, _ := eval[string](ctx, `document.documentElement.lang`); got != lang {
		t.Errorf("%s in %s, want %s", path, got, lang)
	}
}

// open navigates to path and returns the HTTP status of the document.
func open(t *testing.T, ctx context.Context, st *stack, path string) int64 {
	t.Helper()
	c, cancel := within(ctx, 20*time.Second)
	defer cancel()
	resp, err := chromedp.Run(c, chromedp.NavigateResponse(st.base+path))
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	return resp.Status
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](ctx context.Context, expr string, opts ...chromedp.EvaluateOption) (T, error) {
	c, cancel := within(ctx, 20*time.Second)
	defer cancel()
	return chromedp.Run(c, chromedp.Evaluate[T](expr, opts...))
}

// pathname is the page's location.pathname.
func pathname(t *testing.T, ctx context.Context) string {
	t.Helper()
	p, err := eval[string](ctx, `location.pathname`)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoginEachRole(t *testing.T) {
	t.Parallel()
	st := startStack(t)
	for _, name := range []string{"admin", "manager", "lead", "carer", "daughter"} {
		a := st.accounts[name]
		t.Run(a.user.Role, func(t *testing.T) {
			ctx := browser(t)
			got := loginForm(t, ctx, st, name)
			if got != a.landing {
				t.Errorf("%s (%s) landed on %s, want %s", name, a.user.Role, got, a.landing)
			}
			if code := open(t, ctx, st, a.landing); code != http.StatusOK {
				t.Errorf("%s: GET %s answered %d, want 200", a.user.Role, a.landing, code)
			}
		})
	}
	t.Run("wrong password", func(t *testing.T) {
		ctx := browser(t)
		c, cancel := within(ctx, 20*time.Second)
		defer cancel()
		err := chromedp.Do(c,
			chromedp.Navigate(st.base+"/login"),
			chromedp.WaitVisible(chromedp.CSS(`input[name="username"]`)),
			chromedp.SendKeys(chromedp.CSS(`input[name="username"]`), "carer"),
			chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), "not-the-password"),
		)
		if err == nil {
			_, err = chromedp.RunResponse(c, chromedp.Submit(chromedp.CSS(`input[name="password"]`)))
		}
		if err != nil {
			t.Fatal(err)
		}
		if path := pathname(t, ctx); path != "/login" {
			t.Errorf("a wrong password landed on %s, want to stay on /login", path)
		}
		if code := open(t, ctx, st, "/board"); code == http.StatusOK && pathname(t, ctx) == "/board" {
			t.Error("/board is reachable after a failed login")
		}
	})
}

// observeAlerts makes the page note, per data-alert id, the time (ms since
// the epoch) an li.alert element with that id first appears.
const observeAlerts = `(function(){
  window.__seen = {};
  const mark = () => document.querySelectorAll('li[data-alert]').forEach(el => {
    const id = el.getAttribute('data-alert');
    if (!(id in window.__seen)) { window.__seen[id] = Date.now(); }
  });
  mark();
  window.__before = Object.keys(window.__seen);
  new MutationObserver(mark).observe(document.body, {childList: true, subtree: true, attributes: true});
  return true;
})()`

// waitSubscribers waits until the dashboard has n SSE clients.
func waitSubscribers(t *testing.T, st *stack, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for st.dash.Feed().Subscribers() < n {
		if time.Now().After(deadline) {
			t.Fatalf("the board did not open its SSE stream within 10 s (%d of %d clients)", st.dash.Feed().Subscribers(), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// openAlert waits for the alert the fall raised in the store.
func openAlert(t *testing.T, st *stack) alerting.Alert {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		as, err := st.mgr.List(context.Background(), alerting.Filter{Resident: "res-001", Status: []string{alerting.StatusOpen}})
		if err != nil {
			t.Fatal(err)
		}
		if len(as) > 0 {
			return as[0]
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("the fall raised no open alert of res-001 within 10 s")
	return alerting.Alert{}
}

// TestLiveAlertAcknowledge is not parallel: it measures the time from the
// fall event to the alert on the board (issue 6: within 1 s), which the
// other tests' browser pages would lengthen on a loaded machine.
func TestLiveAlertAcknowledge(t *testing.T) {
	st := startStack(t)
	watcher := browser(t) // the nurse lead's board, never reloaded
	if p := login(t, watcher, st, "lead"); p != "/board" {
		t.Fatalf("nurse lead landed on %s, want /board", p)
	}
	actor := browser(t) // the caregiver who acknowledges
	login(t, actor, st, "carer")
	waitSubscribers(t, st, 2)
	if _, err := eval[bool](watcher, observeAlerts); err != nil {
		t.Fatal(err)
	}

	published := st.publishFall(t)
	a := openAlert(t, st)
	id := strconv.FormatInt(a.ID, 10)

	// The alert appears on the open board, pushed over SSE.
	c, cancel := within(watcher, 10*time.Second)
	seenMS, err := chromedp.Run(c, chromedp.Poll[float64](fmt.Sprintf(`window.__seen[%q] || null`, id), chromedp.WithPollingInterval(10*time.Millisecond)))
	cancel()
	if err != nil {
		t.Fatalf("alert %s did not appear on the board within 10 s: %v", id, err)
	}
	latency := time.UnixMilli(int64(seenMS)).Sub(published)
	t.Logf("fall event to alert on the board: %v", latency)
	if latency > time.Second {
		t.Errorf("alert appeared %v after its event, want within 1 s (issue 6)", latency)
	}

	// The caregiver acknowledges it from their board (or the alert list).
	ackForm := fmt.Sprintf(`form[action="/alerts/%s/ack"] button`, id)
	if code := open(t, actor, st, "/board"); code != http.StatusOK {
		t.Fatalf("/board answered %d", code)
	}
	n, err := eval[int](actor, fmt.Sprintf(`document.querySelectorAll(%q).length`, ackForm))
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		open(t, actor, st, "/alerts")
	}
	c, cancel = within(actor, 20*time.Second) // after the page loads, which have deadlines of their own
	defer cancel()
	if err := chromedp.Do(c, chromedp.WaitVisible(chromedp.CSS(ackForm)), chromedp.Click(chromedp.CSS(ackForm))); err != nil {
		t.Fatalf("no acknowledge button for alert %s on /board or /alerts: %v", id, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err := st.mgr.Get(context.Background(), a.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status == alerting.StatusAcknowledged {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alert %s is %s 5 s after the click, want acknowledged", id, got.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The watcher's board changes without a reload.
	c2, cancel2 := within(watcher, 5*time.Second)
	defer cancel2()
	sel := fmt.Sprintf(`li[data-alert="%s"].st-acknowledged`, id)
	if err := chromedp.Do(c2, chromedp.WaitVisible(chromedp.CSS(sel))); err != nil {
		html, _ := eval[string](watcher, fmt.Sprintf(`(document.querySelector('li[data-alert="%s"]') || {}).outerHTML || "(none)"`, id))
		t.Fatalf("the open board did not show alert %s acknowledged within 5 s: %v (element: %s)", id, err, html)
	}
}

func TestFamilyScope(t *testing.T) {
	t.Parallel()
	st := startStack(t)
	ctx := browser(t)
	if p := login(t, ctx, st, "daughter"); p != "/family" {
		t.Errorf("family landed on %s, want /family", p)
	}
	for _, tc := range []struct {
		path string
		want int64
	}{
		{"/family", 200},
		{"/residents/res-002", 404},
		{"/residents/res-006", 404},
		{"/residents/no-such-resident", 404},
	} {
		t.Run(tc.path, func(t *testing.T) {
			if got := open(t, ctx, st, tc.path); got != tc.want {
				t.Errorf("family GET %s: %d, want %d", tc.path, got, tc.want)
			}
		})
	}
	t.Run("no other resident on the family page", func(t *testing.T) {
		open(t, ctx, st, "/family")
		html, err := eval[string](ctx, `document.documentElement.outerHTML`)
		if err != nil {
			t.Fatal(err)
		}
		for _, other := range []string{"res-002", "res-003", "res-004", "res-005", "res-006"} {
			if strings.Contains(html, other) {
				t.Errorf("the family page mentions %s", other)
			}
		}
	})
}

// cookies returns the browser's cookies for the stack, by name.
func cookies(t *testing.T, ctx context.Context, st *stack) map[string]*network.Cookie {
	t.Helper()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{st.base + "/", st.base + "/login"}})
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]*network.Cookie{}
	for _, c := range res.Cookies {
		m[c.Name] = c
	}
	return m
}

func TestSessionFixation(t *testing.T) {
	t.Parallel()
	st := startStack(t)
	ctx := browser(t)
	const planted = "fixated-by-an-attacker-0123456789abcdefghijklmnop"
	open(t, ctx, st, "/login")
	if _, err := chromedp.Call(ctx, network.SetCookie, network.SetCookieParams{Name: "eldercare_session", Value: planted, URL: st.base + "/", Path: "/"}); err != nil {
		t.Fatal(err)
	}
	before := cookies(t, ctx, st)
	loginForm(t, ctx, st, "carer")
	after := cookies(t, ctx, st)
	sess, ok := after["eldercare_session"]
	if !ok {
		t.Fatalf("no eldercare_session cookie after login (cookies: %v)", keys(after))
	}
	if sess.Value == planted {
		t.Error("the session id planted before login survived the login (session fixation)")
	}
	if !sess.HTTPOnly {
		t.Error("session cookie is not HttpOnly")
	}
	if sess.SameSite != network.CookieSameSiteStrict && sess.SameSite != network.CookieSameSiteLax {
		t.Errorf("session cookie SameSite=%q, want Strict or Lax", sess.SameSite)
	}
	for name, c := range before {
		if a, ok := after[name]; ok && name == "eldercare_session" && a.Value == c.Value {
			t.Errorf("cookie %s kept its pre-login value", name)
		}
	}

	// The planted id never authenticates anybody.
	other := browser(t)
	if _, err := chromedp.Call(other, network.SetCookie, network.SetCookieParams{Name: "eldercare_session", Value: planted, URL: st.base + "/", Path: "/"}); err != nil {
		t.Fatal(err)
	}
	open(t, other, st, "/board")
	if p := pathname(t, other); p != "/login" {
		t.Errorf("the planted session id reached %s, want a redirect to /login", p)
	}

	// After logout the old session id is dead.
	old := sess.Value
	c, cancel := within(ctx, 10*time.Second)
	defer cancel()
	err := chromedp.Do(c, chromedp.Navigate(st.base+"/board"),
		chromedp.WaitVisible(chromedp.CSS(`form[action="/logout"] button`)))
	if err == nil {
		// RunResponse waits for the page the logout redirects to.
		_, err = chromedp.RunResponse(c, chromedp.Click(chromedp.CSS(`form[action="/logout"] button`)))
	}
	if err != nil {
		t.Fatalf("log out: %v", err)
	}
	req, _ := http.NewRequest("GET", st.base+"/board", nil)
	req.AddCookie(&http.Cookie{Name: "eldercare_session", Value: old})
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Errorf("the session id of a logged-out session still opens /board")
	}
}

func keys(m map[string]*network.Cookie) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

func TestCSRF(t *testing.T) {
	t.Parallel()
	st := startStack(t)
	ctx := browser(t)
	login(t, ctx, st, "carer")
	st.publishFall(t)
	a := openAlert(t, st)
	ackURL := fmt.Sprintf("%s/alerts/%d/ack", st.base, a.ID)
	stillOpen := func(t *testing.T, what string) {
		t.Helper()
		got, err := st.mgr.Get(context.Background(), a.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != alerting.StatusOpen {
			t.Fatalf("%s acknowledged the alert (status %s)", what, got.Status)
		}
	}
	open(t, ctx, st, "/board")

	for _, tc := range []struct{ name, body string }{
		{"no token", ""},
		{"wrong token", "_csrf=wrong-token-0123456789"},
		{"legacy field wrong", "csrf=wrong-token-0123456789"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			js := fmt.Sprintf(`fetch(%q, {method: "POST", credentials: "same-origin", redirect: "manual",
				headers: {"Content-Type": "application/x-www-form-urlencoded"}, body: %q}).then(r => r.status)`, ackURL, tc.body)
			status, err := eval[int](ctx, js, chromedp.EvalAwaitPromise)
			if err != nil {
				t.Fatal(err)
			}
			if status != http.StatusForbidden {
				t.Errorf("POST %s with %s: %d, want 403", ackURL, tc.name, status)
			}
			stillOpen(t, tc.name)
		})
	}

	t.Run("cross-origin form", func(t *testing.T) {
		evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprintf(w, `<!doctype html><form id="f" method="post" action="%s"><input name="_csrf" value="guess"></form><script>document.getElementById('f').submit()</script>`, ackURL)
		}))
		defer evil.Close()
		c, cancel := within(ctx, 10*time.Second)
		defer cancel()
		// The evil page submits its form at once; wait until the browser
		// has loaded the dashboard's answer to that POST (a page of the
		// dashboard's origin, whatever its path).
		if err := chromedp.Do(c, chromedp.Navigate(evil.URL)); err != nil {
			t.Fatal(err)
		}
		if _, err := chromedp.Run(c, chromedp.Poll[bool](fmt.Sprintf(`location.origin === %q && document.readyState === "complete" ? true : null`, st.base),
			chromedp.WithPollingInterval(20*time.Millisecond))); err != nil {
			where, _ := eval[string](ctx, `location.href`)
			t.Fatalf("the cross-origin form was not submitted to %s within 10 s (page at %s): %v", ackURL, where, err)
		}
		stillOpen(t, "a form on another origin")
	})

	t.Run("the page's own token works", func(t *testing.T) {
		open(t, ctx, st, "/board")
		token, err := eval[string](ctx, `(document.querySelector('input[name="_csrf"]') || document.querySelector('input[name="csrf"]') || {}).value || ""`)
		if err != nil {
			t.Fatal(err)
		}
		if token == "" {
			t.Fatal("the board has no form with a _csrf field")
		}
		js := fmt.Sprintf(`fetch(%q, {method: "POST", credentials: "same-origin", redirect: "manual",
			headers: {"Content-Type": "application/x-www-form-urlencoded"}, body: "_csrf=" + encodeURIComponent(%q)}).then(r => r.status)`, ackURL, token)
		status, err := eval[int](ctx, js, chromedp.EvalAwaitPromise)
		if err != nil {
			t.Fatal(err)
		}
		got, err := st.mgr.Get(context.Background(), a.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != alerting.StatusAcknowledged {
			t.Errorf("POST with the page's token: HTTP %d, alert %s; want it acknowledged", status, got.Status)
		}
	})
}

var han = regexp.MustCompile(`\p{Han}`)

func TestBoardScreenshots(t *testing.T) {
	t.Parallel()
	st := startStack(t)
	dir := artifactsDir(t)
	texts := map[string]string{}
	for _, tc := range []struct{ user, lang string }{{"carer", "en"}, {"carer-zh", "zh-CN"}} {
		t.Run(tc.lang, func(t *testing.T) {
			ctx := browser(t)
			login(t, ctx, st, tc.user)
			if code := open(t, ctx, st, "/board"); code != http.StatusOK {
				t.Fatalf("/board: %d", code)
			}
			c, cancel := within(ctx, 20*time.Second)
			defer cancel()
			// The fonts are loaded and the live feed is open (the header
			// says so in the page's language).
			err := chromedp.Do(c, chromedp.WaitVisible(chromedp.CSS("main")))
			if err == nil {
				_, err = chromedp.Run(c, chromedp.Poll[bool](`document.fonts.status === "loaded" && document.querySelector('#live.ok') ? true : null`,
					chromedp.WithPollingInterval(20*time.Millisecond)))
			}
			if err != nil {
				t.Fatal(err)
			}
			lang, err := eval[string](ctx, `document.documentElement.lang`)
			if err != nil {
				t.Fatal(err)
			}
			nav, err := eval[string](ctx, `(document.querySelector("header") || document.body).innerText`)
			if err != nil {
				t.Fatal(err)
			}
			png, err := chromedp.Run(c, fullScreenshot)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "board-"+tc.lang+".png")
			if err := os.WriteFile(path, png, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("screenshot of the board in %s: %s (%d bytes)", tc.lang, path, len(png))
			if lang != tc.lang {
				t.Errorf("<html lang=%q>, want %q", lang, tc.lang)
			}
			// The English header may offer "中文" as the other language; the
			// Chinese one is Chinese throughout.
			n := len(han.FindAllString(nav, -1))
			if tc.lang == "en" && n > 2 || tc.lang == "zh-CN" && n < 6 {
				t.Errorf("%s header %q has %d Chinese characters", tc.lang, nav, n)
			}
			texts[tc.lang] = nav
		})
	}
	if texts["en"] != "" && texts["en"] == texts["zh-CN"] {
		t.Errorf("the header reads the same in both languages: %q", texts["en"])
	}
}

func TestResidentCharts(t *testing.T) {
	t.Parallel()
	st := startStack(t)
	st.writeVitals(t)
	ctx := browser(t)
	login(t, ctx, st, "carer")
	if code := open(t, ctx, st, "/assets/app.js"); code != http.StatusOK {
		t.Fatalf("/assets/app.js: %d (server.go mounts the bundle at dashboard.AssetsPrefix)", code)
	}
	if err := dashboard.AssetsBuilt(); err != nil {
		t.Fatal(err)
	}
	if code := open(t, ctx, st, "/residents/res-001"); code != http.StatusOK {
		t.Fatalf("/residents/res-001: %d", code)
	}
	n, err := eval[int](ctx, `document.querySelectorAll('[data-chart]').length`)
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("the resident page has no [data-chart] element (contract in dashboard/web/src/charts.js)")
	}
	c, cancel := within(ctx, 15*time.Second)
	defer cancel()
	state, err := chromedp.Run(c, chromedp.Poll[string](`(s => s === "ready" || s === "error" ? s : null)(document.querySelector('[data-chart]').getAttribute('data-state'))`))
	if err != nil {
		t.Fatalf("charts did not load within 15 s: %v", err)
	}
	if state != "ready" {
		t.Fatalf("charts data-state=%q, want ready", state)
	}
	for _, tc := range []struct {
		name    string
		minutes string
	}{{"last hour", "60"}, {"last day", "1440"}} {
		t.Run(tc.name, func(t *testing.T) {
			c, cancel := within(ctx, 15*time.Second)
			defer cancel()
			err := chromedp.Do(c,
				chromedp.Click(chromedp.CSS(fmt.Sprintf(`[data-chart] .chart-range button[data-minutes="%s"]`, tc.minutes))),
			)
			if err == nil {
				_, err = chromedp.Run(c, chromedp.Poll[bool](fmt.Sprintf(`(e => e.getAttribute('data-state') === "ready" && e.getAttribute('data-minutes') === %q ? true : null)(document.querySelector('[data-chart]'))`, tc.minutes)))
			}
			if err != nil {
				t.Fatal(err)
			}
			pts, err := eval[string](ctx, `(document.querySelector('[data-chart] figure[data-field="hr_bpm"]') || {getAttribute: () => "0"}).getAttribute('data-points')`)
			if err != nil {
				t.Fatal(err)
			}
			canvases, err := eval[int](ctx, `document.querySelectorAll('[data-chart] figure[data-field="hr_bpm"] canvas').length`)
			if err != nil {
				t.Fatal(err)
			}
			if p, _ := strconv.Atoi(pts); p == 0 || canvases == 0 {
				t.Errorf("heart-rate chart over %s min: %s points, %d canvases; want the written samples drawn", tc.minutes, pts, canvases)
			}
			png, err := chromedp.Run(c, fullScreenshot)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(artifactsDir(t), "resident-charts-"+tc.minutes+"min.png")
			if err := os.WriteFile(path, png, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("screenshot of the resident page's charts: %s", path)
		})
	}
}
