package main

import (
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/spf13/viper"

	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// repoRoot is the repository root, two levels above this package.
const repoRoot = "../.."

// requireTool returns the path of an external tool, skipping the test when it
// is missing (failing under CI, where scripts/services.sh installs it).
func requireTool(t *testing.T, name, install string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		testenv.Unavailable(t, "%s missing: %s", name, install)
	}
	return p
}

// TestExampleConfigs loads each role's example configuration file under
// deploy/config with the binary's own loader (so an unknown or misspelt key,
// or a value its flag refuses, fails) and checks that every key reached its
// flag.
func TestExampleConfigs(t *testing.T) {
	t.Parallel()
	roles := []string{"up", "ingest", "alerting", "dashboard", "gateway"}
	for _, role := range roles {
		t.Run(role, func(t *testing.T) {
			path := filepath.Join(repoRoot, "deploy", "config", role+".yaml")
			root := newRootCmd()
			cmd, _, err := root.Find([]string{role})
			if err != nil || cmd.Name() != role {
				t.Fatalf("no command %s: %v", role, err)
			}
			if err := cmd.ParseFlags([]string{"--config", path}); err != nil {
				t.Fatal(err)
			}
			s, err := loadSettings(cmd)
			if err != nil {
				t.Fatalf("load %s: %v", path, err)
			}
			file := viper.New()
			file.SetConfigFile(path)
			if err := file.ReadInConfig(); err != nil {
				t.Fatal(err)
			}
			if len(file.AllKeys()) < 5 {
				t.Fatalf("%s sets only %d keys", path, len(file.AllKeys()))
			}
			for _, k := range file.AllKeys() {
				f := cmd.Flags().Lookup(k)
				if f == nil {
					t.Errorf("%s: key %s is no flag of %s", path, k, role)
					continue
				}
				if !f.Changed {
					t.Errorf("%s: key %s did not reach its flag", path, k)
				}
				_ = s
			}
		})
	}
	// Every role has a unit and a config, and the units start them with it.
	for _, role := range roles {
		unit, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "systemd", "eldercare-"+role+".service"))
		if err != nil {
			t.Fatal(err)
		}
		if want := "ExecStart=/usr/bin/eldercare " + role + " --config /etc/eldercare/" + role + ".yaml"; !strings.Contains(string(unit), want) {
			t.Errorf("eldercare-%s.service lacks %q", role, want)
		}
	}
}

// TestSystemdUnits runs `systemd-analyze verify` on every unit of
// deploy/systemd (with ExecStart pointing at this test binary, as verify
// checks that the program exists) and checks the hardening each must keep.
func TestSystemdUnits(t *testing.T) {
	t.Parallel()
	analyze := requireTool(t, "systemd-analyze", "apt-get install systemd (scripts/services.sh)")
	units, err := filepath.Glob(filepath.Join(repoRoot, "deploy", "systemd", "*.service"))
	if err != nil || len(units) < 5 {
		t.Fatalf("units: %v %v", units, err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var paths []string
	for _, u := range units {
		b, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		for _, want := range []string{"User=eldercare", "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes",
			"StateDirectory=", "StateDirectoryMode=0700", "UMask=0077", "CapabilityBoundingSet=\n", "PrivateTmp=yes", "SystemCallFilter=@system-service"} {
			if !strings.Contains(text, want) {
				t.Errorf("%s: missing %q", filepath.Base(u), strings.TrimSpace(want))
			}
		}
		p := filepath.Join(dir, filepath.Base(u))
		if err := os.WriteFile(p, []byte(strings.ReplaceAll(text, "/usr/bin/eldercare", self)), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	out, err := exec.Command(analyze, append([]string{"verify", "--man=no"}, paths...)...).CombinedOutput()
	// verify also reports on unrelated units of the machine; only lines about ours count.
	var ours []string
	for _, line := range strings.Split(string(out), "\n") {
		for _, p := range paths {
			if strings.Contains(line, filepath.Base(p)) {
				ours = append(ours, line)
				break
			}
		}
	}
	if err != nil || len(ours) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// exportedMetrics returns the metric names the product registers: every
// "eldercare_..." name in a prometheus registration of the non-test Go
// sources, the Go and process collectors' names of newMetrics, and up.
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{"up": true}
	mfs, err := newMetrics().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	// Name: "..." (Opts), prometheus.NewDesc("...", custom collectors) and
	// {"...", help} tables (internal/broker's info collector).
	re := regexp.MustCompile(`(?:Name:\s*|NewDesc\(\s*|\{)"(eldercare_[a-z0-9_]+)"`)
	err = filepath.WalkDir(repoRoot, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || d.Name() == ".git" || d.Name() == "dist") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			names[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !names["eldercare_ingest_written_total"] || !names["eldercare_alerting_outbox_pending"] || !names["eldercare_build_info"] {
		t.Fatalf("metric scan found too little: %v", names)
	}
	return names
}

var quoted = regexp.MustCompile(`"[^"]*"`)

var promIdent = regexp.MustCompile(`\b((?:eldercare|go|process|up)[a-z0-9_]*)\b`)

// metricsIn returns the metric names a PromQL expression uses (the product's
// prefixes eldercare_, go_, process_ and up), with histogram suffixes cut.
func metricsIn(expr string) []string {
	var out []string
	expr = quoted.ReplaceAllString(expr, `""`) // label values are no metric names
	for _, m := range promIdent.FindAllStringSubmatch(expr, -1) {
		n := m[1]
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if strings.HasPrefix(n, "eldercare_") && strings.HasSuffix(n, suf) {
				n = strings.TrimSuffix(n, suf)
			}
		}
		out = append(out, n)
	}
	return out
}

// TestGrafanaDashboard checks deploy/grafana/eldercare.json: valid JSON, and
// every Prometheus query names only metrics the product exports; every
// InfluxDB query reads the measurement ingest writes and known fields.
func TestGrafanaDashboard(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "grafana", "eldercare.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title      string `json:"title"`
			Datasource struct {
				Type string `json:"type"`
			} `json:"datasource"`
			Targets []struct {
				Expr  string `json:"expr"`
				Query string `json:"query"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	known := exportedMetrics(t)
	used := map[string]bool{}
	queries := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			queries++
			switch p.Datasource.Type {
			case "prometheus":
				names := metricsIn(tg.Expr)
				if len(names) == 0 {
					t.Errorf("panel %q: query %q names no metric", p.Title, tg.Expr)
				}
				for _, n := range names {
					used[n] = true
					if !known[n] {
						t.Errorf("panel %q: %s is not a metric the product exports", p.Title, n)
					}
				}
			case "influxdb":
				if !strings.Contains(tg.Query, `FROM "readings"`) {
					t.Errorf("panel %q: InfluxDB query %q does not read measurement readings", p.Title, tg.Query)
				}
			default:
				t.Errorf("panel %q: datasource type %q", p.Title, p.Datasource.Type)
			}
		}
	}
	if queries < 10 {
		t.Errorf("only %d queries", queries)
	}
	var list []string
	for n := range used {
		list = append(list, n)
	}
	sort.Strings(list)
	t.Logf("%d queries over %d metrics: %s", queries, len(list), strings.Join(list, " "))
}

// TestPrometheusRules runs `promtool check rules` and `promtool test rules`
// on deploy/prometheus, and checks that the rules name only exported metrics.
func TestPrometheusRules(t *testing.T) {
	t.Parallel()
	promtool := requireTool(t, "promtool", "apt-get install prometheus (scripts/services.sh)")
	dir := filepath.Join(repoRoot, "deploy", "prometheus")
	for _, args := range [][]string{{"check", "rules", "rules.yml"}, {"test", "rules", "rules_test.yml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	known := exportedMetrics(t)
	var alerts []string
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if a, ok := strings.CutPrefix(line, "- alert: "); ok {
			alerts = append(alerts, a)
		}
		if expr, ok := strings.CutPrefix(line, "expr: "); ok {
			for _, n := range metricsIn(expr) {
				if !known[n] {
					t.Errorf("rule expr %q: %s is not a metric the product exports", expr, n)
				}
			}
		}
	}
	// Each alert the operations guide promises has a rule and a unit test.
	tests, err := os.ReadFile(filepath.Join(dir, "rules_test.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range alerts {
		if !strings.Contains(string(tests), "alertname: "+a+"\n") {
			t.Errorf("alert %s has no promtool unit test", a)
		}
	}
}
