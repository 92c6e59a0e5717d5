package dashboard

import (
	"encoding/json"
	"errors"
	"io"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/gofiber/fiber/v2"
)

func assetApp(fsys fstest.MapFS) *fiber.App {
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	app.Get(AssetsPrefix+"*", assetHandler(fsys))
	return app
}

func TestAssetHandler(t *testing.T) {
	t.Parallel()
	built := fstest.MapFS{
		"app.js":     {Data: []byte("console.log('uplot');")},
		"app.css":    {Data: []byte(".u-wrap{}")},
		"app.js.map": {Data: []byte(`{"version":3}`)},
		".keep":      {Data: nil},
	}
	missing := fstest.MapFS{".keep": {Data: nil}}
	half := fstest.MapFS{".keep": {Data: nil}, "app.js": {Data: []byte("x")}, "app.css": {Data: nil}}
	tests := []struct {
		name     string
		fsys     fstest.MapFS
		path     string
		method   string
		code     int
		ctype    string
		contains []string
	}{
		{"built js", built, "/assets/app.js", "GET", 200, "text/javascript", []string{"uplot"}},
		{"built css", built, "/assets/app.css", "GET", 200, "text/css", []string{".u-wrap"}},
		{"built map", built, "/assets/app.js.map", "GET", 200, "application/json", []string{"version"}},
		{"built unknown", built, "/assets/nope.js", "GET", 404, "", nil},
		{"dot file hidden", built, "/assets/.keep", "GET", 404, "", nil},
		{"traversal", built, "/assets/../server.go", "GET", 404, "", nil},
		{"missing js names command", missing, "/assets/app.js", "GET", 200, "text/javascript", []string{"make assets", "assets-missing", "dashboard/web/dist/app.js"}},
		{"missing css names command", missing, "/assets/app.css", "GET", 200, "text/css", []string{"make assets"}},
		{"missing page", missing, "/assets/", "GET", 503, "text/html", []string{"Dashboard assets not built", "make assets"}},
		{"empty css counts as missing", half, "/assets/app.js", "GET", 200, "text/javascript", []string{"dashboard/web/dist/app.css", "make assets"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := assetApp(tc.fsys).Test(httptest.NewRequest(tc.method, tc.path, nil))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.code {
				t.Fatalf("%s %s: status %d, want %d (%s)", tc.method, tc.path, resp.StatusCode, tc.code, body)
			}
			if tc.ctype != "" && !strings.HasPrefix(resp.Header.Get("Content-Type"), tc.ctype) {
				t.Errorf("Content-Type %q, want %s", resp.Header.Get("Content-Type"), tc.ctype)
			}
			for _, want := range tc.contains {
				if !strings.Contains(string(body), want) {
					t.Errorf("body %q does not contain %q", body, want)
				}
			}
		})
	}

	t.Run("etag revalidation", func(t *testing.T) {
		app := assetApp(built)
		resp, err := app.Test(httptest.NewRequest("GET", "/assets/app.js", nil))
		if err != nil {
			t.Fatal(err)
		}
		etag := resp.Header.Get("ETag")
		if etag == "" || resp.Header.Get("Cache-Control") != "no-cache" {
			t.Fatalf("ETag %q, Cache-Control %q: want a strong ETag and no-cache", etag, resp.Header.Get("Cache-Control"))
		}
		req := httptest.NewRequest("GET", "/assets/app.js", nil)
		req.Header.Set("If-None-Match", etag)
		resp, err = app.Test(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 304 {
			t.Errorf("If-None-Match with the current ETag: %d, want 304", resp.StatusCode)
		}
	})

	t.Run("missing js is safe script", func(t *testing.T) {
		if got := jsString(`a"</script><b>`); strings.Contains(got, "<") || !strings.HasPrefix(got, `"`) {
			t.Errorf("jsString = %s: want a quoted literal without <", got)
		}
	})
}

// TestEmbeddedAssets checks the bundle this binary embeds. Under CI (make
// test builds the assets first) it must be built and contain uPlot; on a
// clean clone without `make assets` it must report the command.
func TestEmbeddedAssets(t *testing.T) {
	t.Parallel()
	err := AssetsBuilt()
	if os.Getenv("CI") != "" && err != nil {
		t.Fatalf("CI: %v", err)
	}
	if err != nil {
		if !strings.Contains(err.Error(), AssetsCommand) {
			t.Errorf("AssetsBuilt() = %v: does not name %q", err, AssetsCommand)
		}
		if assetsNotice() == "" {
			t.Error("assetsNotice() is empty while the bundle is missing")
		}
		t.Logf("bundle not built (%v); checked the notice only", err)
		return
	}
	js, err := distFS.ReadFile("web/dist/app.js")
	if err != nil {
		t.Fatal(err)
	}
	// uPlot's class and our chart contract must both be in the bundle.
	for _, want := range []string{"uplot", "data-chart", "EventSource"} {
		if !strings.Contains(strings.ToLower(string(js)), strings.ToLower(want)) {
			t.Errorf("dist/app.js has no %q", want)
		}
	}
	if assetsNotice() != "" {
		t.Errorf("assetsNotice() = %q with a built bundle", assetsNotice())
	}
}

// TestAssetsPinned: the npm dependencies are exact versions and the lock
// file pins them with integrity hashes (issue 6 section 7).
func TestAssetsPinned(t *testing.T) {
	t.Parallel()
	var pkg struct {
		Dependencies    map[string]string `json:"dependencies"`
		DevDependencies map[string]string `json:"devDependencies"`
	}
	var lock struct {
		LockfileVersion int `json:"lockfileVersion"`
		Packages        map[string]struct {
			Version   string `json:"version"`
			Integrity string `json:"integrity"`
		} `json:"packages"`
	}
	for file, v := range map[string]any{"web/package.json": &pkg, "web/package-lock.json": &lock} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
	}
	want := map[string]string{"uplot": "1.6.32", "esbuild": "0.28.2"}
	for name, ver := range want {
		got := pkg.Dependencies[name]
		if got == "" {
			got = pkg.DevDependencies[name]
		}
		if got != ver {
			t.Errorf("package.json: %s = %q, want exactly %q", name, got, ver)
		}
		l := lock.Packages["node_modules/"+name]
		if l.Version != ver || !strings.HasPrefix(l.Integrity, "sha512-") {
			t.Errorf("package-lock.json: %s = %q integrity %q, want %s with a sha512 integrity", name, l.Version, l.Integrity, ver)
		}
	}
	if lock.LockfileVersion < 2 {
		t.Errorf("lockfileVersion %d: want 2 or 3", lock.LockfileVersion)
	}
}

// TestChartVitals: the session-side vitals JSON of the charts, through the
// whole app as a caregiver of the site (the route's session, role and scope
// checks are the resident page's).
func TestChartVitals(t *testing.T) {
	t.Parallel()
	boom := errors.New("influx at http://secret-host:8086 said no")
	tests := []struct {
		name    string
		path    string
		vitals  VitalsQuerier
		code    int
		minutes int
		points  int
	}{
		{"default last hour", "/residents/res-001/vitals.json", nil, 200, 60, 2},
		{"last day", "/residents/res-001/vitals.json?minutes=1440", nil, 200, 1440, 2},
		{"too long", "/residents/res-001/vitals.json?minutes=1441", nil, 400, 0, 0},
		{"zero", "/residents/res-001/vitals.json?minutes=0", nil, 400, 0, 0},
		{"not a number", "/residents/res-001/vitals.json?minutes=1h", nil, 400, 0, 0},
		{"unknown resident", "/residents/res-999/vitals.json", nil, 404, 0, 0},
		{"bad id", "/residents/res%20001/vitals.json", nil, 404, 0, 0},
		{"influx down", "/residents/res-001/vitals.json", fakeVitals{err: boom}, 502, 0, 0},
		{"no data", "/residents/res-001/vitals.json", fakeVitals{}, 200, 60, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ts := newTestServer(t, func(_ *Config, d *Deps) {
				if tc.vitals != nil {
					d.Vitals = tc.vitals
				}
			})
			cookie, _ := ts.loginAs(t, "nurse")
			resp, body := ts.do(t, "GET", tc.path, nil, map[string]string{"Cookie": cookie})
			if resp.StatusCode != tc.code {
				t.Fatalf("GET %s: %d, want %d (%s)", tc.path, resp.StatusCode, tc.code, body)
			}
			if strings.Contains(string(body), "secret-host") {
				t.Errorf("the body leaks the InfluxDB error: %s", body)
			}
			if tc.code != 200 {
				return
			}
			var got struct {
				Resident string             `json:"resident"`
				From     time.Time          `json:"from"`
				Series   map[string][]Point `json:"series"`
			}
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatalf("%v: %s", err, body)
			}
			var to struct {
				To time.Time `json:"to"`
			}
			_ = json.Unmarshal([]byte(body), &to)
			if got.Resident != "res-001" || !to.To.Equal(testNow) || to.To.Sub(got.From) != time.Duration(tc.minutes)*time.Minute {
				t.Errorf("resident %q from %v to %v: want res-001 over the %d minutes to %v", got.Resident, got.From, to.To, tc.minutes, testNow)
			}
			if got.Series == nil || len(got.Series["hr_bpm"]) != tc.points {
				t.Errorf("series %v: want %d hr_bpm points and never null", got.Series, tc.points)
			}
		})
	}
}
