package browser_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eldercare-iot/eldercare/alerting"
	"github.com/eldercare-iot/eldercare/dashboard"
	"github.com/eldercare-iot/eldercare/device/registry"
	firmwaresim "github.com/eldercare-iot/eldercare/firmware-sim"
	"github.com/eldercare-iot/eldercare/internal/influxd"
	"github.com/eldercare-iot/eldercare/internal/sqldb"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// The package shares one Chromium process, one influxd and a template
// SQLite database between its tests; each test still gets its own platform
// stack (broker, a copy of the database, alerting, dashboard), its own
// InfluxDB database and its own browser contexts (cookie jar, storage,
// window). The shared parts are made by the first test that needs them and
// stopped (or removed) by TestMain.
var shared struct {
	chromeOnce sync.Once
	chrome     context.Context // the browser's first context; browser contexts are opened under it
	chromeStop []context.CancelFunc
	chromeErr  error
	influxOnce sync.Once
	influx     *influxd.Server // nil when the run's influxd (testenv.InfluxEnv) is used
	influxURL  string
	influxDir  string
	influxErr  error
	databases  atomic.Int64
	demoOnce   sync.Once
	demoDir    string // holds the template database
	demoDB     string // its path
	demoErr    error
	// sessions holds, by username, the id of a session of each demo
	// account, made in the template database by a login through the
	// dashboard's form handler: every copy of the template has them, so
	// a test logs a browser in by setting the cookie (login).
	sessions map[string]string
}

// parallel is the package's -test.parallel unless the command line sets
// one: its tests mostly wait for Chromium, the dashboard and influxd
// (other processes, or goroutines blocked on them), so the default of
// GOMAXPROCS (2 in CI) left the two cores half idle while the package took
// four minutes.
const parallel = "4"

func TestMain(m *testing.M) {
	flag.Parse()
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "test.parallel" })
	if !given {
		if err := flag.Set("test.parallel", parallel); err != nil {
			fmt.Fprintf(os.Stderr, "browser tests: -test.parallel=%s: %v\n", parallel, err)
		}
	}
	if !testing.Short() {
		// Start the shared parts at once and side by side (influxd's
		// start-up alone is about 5 CPU-s); the tests wait for them.
		go shared.influxOnce.Do(startInflux)
		go shared.demoOnce.Do(makeDemo)
		if _, err := os.Stat(sharedBrowserPath()); err == nil {
			go shared.chromeOnce.Do(startChromium)
		}
	}
	code := m.Run()
	// Wait for a start that no test waited for (and see its results).
	for _, once := range []*sync.Once{&shared.chromeOnce, &shared.influxOnce, &shared.demoOnce} {
		once.Do(func() {})
	}
	for _, stop := range shared.chromeStop {
		stop()
	}
	if shared.influx != nil {
		if err := shared.influx.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stop influxd: %v\n", err)
		}
	}
	for _, dir := range []string{shared.influxDir, shared.demoDir} {
		if dir != "" {
			os.RemoveAll(dir)
		}
	}
	os.Exit(code)
}

// sharedBrowserPath is the binary of the package's shared browser: the
// headless shell when installed, else the full Chromium.
func sharedBrowserPath() string {
	if _, err := os.Stat(headlessShellPath); err == nil {
		return headlessShellPath
	}
	return chromiumPath
}

// chromeOptions are the flags of every Chromium of the package (Debian's
// chromium or chromium-headless-shell at path, headless, as root in a
// container).
func chromeOptions(path string, extra ...chromedp.ExecAllocatorOption) []chromedp.ExecAllocatorOption {
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("lang", "en-US"),
		chromedp.WindowSize(1280, 900),
	)
	return append(opts, extra...)
}

// needChromium skips the test when /usr/bin/chromium is missing, or fails
// it under CI.
func needChromium(t *testing.T) {
	t.Helper()
	testenv.NeedsServer(t, "Chromium")
	if _, err := os.Stat(chromiumPath); err != nil {
		testenv.Unavailable(t, "%s missing: run scripts/services.sh as root (apt-get install -y chromium): %v", chromiumPath, err)
	}
}

// chromium returns the context of the package's Chromium, starting it on
// first use. Open tabs under it with newTab; never run actions on it.
func chromium(t *testing.T) context.Context {
	t.Helper()
	needChromium(t)
	shared.chromeOnce.Do(startChromium)
	if shared.chromeErr != nil {
		t.Fatalf("start chromium: %v", shared.chromeErr)
	}
	return shared.chrome
}

// startChromium starts the package's Chromium (under shared.chromeOnce).
func startChromium() {
	actx, acancel := chromedp.NewExecAllocator(context.Background(), chromeOptions(sharedBrowserPath())...)
	ctx, cancel := chromedp.NewContext(actx)
	shared.chromeStop = []context.CancelFunc{cancel, acancel}
	// The first run starts the browser; it must not have a deadline (the
	// browser ends with the context of its first run).
	shared.chromeErr = chromedp.Do(ctx)
	shared.chrome = ctx
}

// newTab opens a tab in a fresh browser context (its own cookies, storage
// and window) of the browser of root, closed at cleanup.
func newTab(t *testing.T, root context.Context) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(root, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	// The first run opens the tab; it must not have a deadline (chromedp
	// closes a tab whose first context ends).
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("open a tab: %v", err)
	}
	return ctx
}

// influxDatabase creates a database of its own for the calling test in the
// package's influxd (started on first use) and returns the server's base
// URL and the database's name.
func influxDatabase(t *testing.T) (url, db string) {
	t.Helper()
	testenv.NeedsServer(t, "InfluxDB (influxd)")
	shared.influxOnce.Do(startInflux)
	if errors.Is(shared.influxErr, influxd.ErrNotFound) {
		testenv.Unavailable(t, "%v", shared.influxErr)
	}
	if shared.influxErr != nil {
		t.Fatalf("start influxd: %v", shared.influxErr)
	}
	db = fmt.Sprintf("eldercare_%d_%d", os.Getpid(), shared.databases.Add(1)) // the run's influxd may serve other test binaries
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := influxd.CreateDatabase(ctx, shared.influxURL, db); err != nil {
		t.Fatal(err)
	}
	return shared.influxURL, db
}

// startInflux starts the package's influxd (under shared.influxOnce), or
// takes the run's (testenv.InfluxEnv, set by make test).
func startInflux() {
	if url, ok := testenv.InfluxFromEnv(); ok {
		shared.influxURL = url
		return
	}
	bin, err := influxd.Find()
	if err != nil {
		shared.influxErr = err
		return
	}
	dir, err := os.MkdirTemp("", "eldercare-browser-influxd-")
	if err != nil {
		shared.influxErr = err
		return
	}
	shared.influxDir = dir
	// influxd.Start waits 30 s for the server to answer; on a machine
	// loaded with other test binaries its start-up (Flux) can take
	// longer, so it gets a second try (a fresh data directory each).
	for try := 1; try <= 2; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		shared.influx, shared.influxErr = influxd.Start(ctx, influxd.Options{Bin: bin, DataDir: filepath.Join(dir, fmt.Sprintf("influxdb-%d", try))})
		cancel()
		if shared.influxErr == nil {
			shared.influxURL = shared.influx.URL()
			break
		}
		fmt.Fprintf(os.Stderr, "browser tests: influxd start, try %d of 2: %v\n", try, shared.influxErr)
	}
}

// demoAccounts are the demo users of every stack; each password is
// "pw-<username>-0123456789".
var demoAccounts = func() []account {
	site := firmwaresim.DemoSite
	as := []account{
		{user: dashboard.User{Username: "admin", Name: "Ada Admin", Role: dashboard.RoleAdmin, Lang: "en"}, landing: "/admin"},
		{user: dashboard.User{Username: "manager", Name: "Min Manager", Role: dashboard.RoleManager, Lang: "en", Sites: []string{site}}, landing: "/manager"},
		{user: dashboard.User{Username: "lead", Name: "Li Lead", Role: dashboard.RoleNurseLead, Lang: "en", Sites: []string{site}}, landing: "/board"},
		{user: dashboard.User{Username: "carer", Name: "Cai Carer", Role: dashboard.RoleCaregiver, Lang: "en", Sites: []string{site}}, landing: "/board"},
		{user: dashboard.User{Username: "carer-zh", Name: "张护工", Role: dashboard.RoleCaregiver, Lang: "zh-CN", Sites: []string{site}}, landing: "/board"},
		{user: dashboard.User{Username: "daughter", Name: "Dai Daughter", Role: dashboard.RoleFamily, Lang: "en", Residents: []string{"res-001"}}, landing: "/family"},
	}
	for i := range as {
		as[i].password = "pw-" + as[i].user.Username + "-0123456789"
	}
	return as
}()

// demoDatabase returns the path of a copy, in t.TempDir(), of the
// package's template SQLite database: the registry, alert and dashboard
// schemas migrated, the demo facility (firmwaresim.DemoRegistryYAML)
// imported, demoAccounts added and logged in (shared.sessions). The
// template is made once: each
// account's argon2id hash (64 MiB, 3 passes) costs about half a CPU second
// under -race, which made the set-up of every stack the largest part of
// most tests.
func demoDatabase(t *testing.T) string {
	t.Helper()
	shared.demoOnce.Do(makeDemo)
	if shared.demoErr != nil {
		t.Fatalf("template database: %v", shared.demoErr)
	}
	path := filepath.Join(t.TempDir(), "eldercare.db")
	b, err := os.ReadFile(shared.demoDB)
	if err == nil {
		err = os.WriteFile(path, b, 0o600)
	}
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// makeDemo makes the template database (under shared.demoOnce).
func makeDemo() {
	shared.demoDir, shared.demoErr = os.MkdirTemp("", "eldercare-browser-demo-")
	if shared.demoErr == nil {
		shared.demoDB = filepath.Join(shared.demoDir, "eldercare.db")
		shared.demoErr = makeDemoDatabase(shared.demoDB)
	}
}

// makeDemoDatabase writes the template database to path (see
// demoDatabase), checkpointed into the one file.
func makeDemoDatabase(path string) (err error) {
	ctx := context.Background()
	db, err := sqldb.Open(ctx, "sqlite:"+path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := db.Close(); err == nil {
			err = cerr
		}
	}()
	store, err := registry.Open(ctx, db)
	if err != nil {
		return err
	}
	doc, err := registry.ParseYAML(strings.NewReader(string(firmwaresim.DemoRegistryYAML)))
	if err != nil {
		return err
	}
	if err := store.Import(ctx, doc); err != nil {
		return err
	}
	mgr, err := alerting.OpenManager(ctx, db, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	acc, err := dashboard.OpenAccounts(ctx, db, time.Now)
	if err != nil {
		return err
	}
	for _, a := range demoAccounts {
		if _, err := acc.Add(ctx, a.user, a.password); err != nil {
			return fmt.Errorf("add user %s: %w", a.user.Username, err)
		}
	}
	if shared.sessions, err = demoSessions(db, store, mgr, acc); err != nil {
		return err
	}
	// Move the write-ahead log into the database file, so that a copy of
	// the file alone is the whole database.
	_, err = db.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)")
	return err
}

// demoSessions logs every demo account in through POST /login of a
// dashboard on the template database (served by app.Test, without a
// listener or a live feed) and returns the session ids by username. The
// password hash is checked once per account for the package instead of at
// every login of every test.
func demoSessions(db *sqldb.DB, store *registry.Store, mgr *alerting.Manager, acc *dashboard.Accounts) (map[string]string, error) {
	dash, err := dashboard.New(dashboard.Config{
		HTTPAddr: "127.0.0.1:0", APIToken: "browser-test-token-0123456789",
		MQTTURL: "tcp://127.0.0.1:1", Root: "eldercare", ClientID: "browser-template",
		InfluxURL: "http://127.0.0.1:1",
	}, dashboard.Deps{Alerts: mgr, Registry: store, Accounts: acc}, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	token := regexp.MustCompile(`name="_csrf" value="([^"]+)"`)
	login := func(a account) (string, error) {
		resp, err := dash.App().Test(httptest.NewRequest("GET", "/login", nil), -1)
		if err != nil {
			return "", err
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		tok := token.FindSubmatch(page)
		if tok == nil {
			return "", fmt.Errorf("GET /login: %d, no _csrf field", resp.StatusCode)
		}
		form := url.Values{"_csrf": {string(tok[1])}, "username": {a.user.Username}, "password": {a.password}}
		req := httptest.NewRequest("POST", "/login", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for _, c := range resp.Cookies() {
			req.AddCookie(c)
		}
		resp, err = dash.App().Test(req, -1)
		if err != nil {
			return "", err
		}
		resp.Body.Close()
		for _, c := range resp.Cookies() {
			if c.Name == sessionCookie && c.Value != "" && resp.StatusCode == http.StatusSeeOther {
				return c.Value, nil
			}
		}
		return "", fmt.Errorf("log %s in: HTTP %d, no session cookie", a.user.Username, resp.StatusCode)
	}
	// Side by side: the password checks take both cores.
	ids := map[string]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make([]error, len(demoAccounts))
	for i, a := range demoAccounts {
		wg.Go(func() {
			id, err := login(a)
			mu.Lock()
			defer mu.Unlock()
			ids[a.user.Username], errs[i] = id, err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return ids, nil
}
