package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// TestSimActivityEval runs `eldercare sim activity --eval` over the four
// weeks of the van Kasteren house (offline, no broker): the alerts the
// absence rules' unit tests expect (23 no_activity alerts on 23 days, each
// cleared by the next sensor firing; alerting TestNoActivityKasteren), in
// the site's zone, in seconds.
func TestSimActivityEval(t *testing.T) {
	t.Parallel()
	file := filepath.Join(testenv.RealData(t), "activity-kasteren", "kasterenSenseData.txt")
	for _, tz := range []string{"Europe/Amsterdam", ""} {
		var stdout bytes.Buffer
		root := newRootCmd()
		root.SetOut(&stdout)
		args := []string{"sim", "activity", "--eval", file}
		if tz != "" {
			args = append(args, "--tz", tz)
		}
		root.SetArgs(args)
		start := time.Now()
		if err := root.Execute(); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		took := time.Since(start)
		lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
		if len(lines) != 24 {
			t.Fatalf("%v: %d lines, want 23 alerts and a summary:\n%s", args, len(lines), stdout.String())
		}
		offset := "+01:00" // Amsterdam in February and March 2008 (CET)
		if tz == "" {
			offset = "+08:00" // the demo's zone, Asia/Shanghai
		}
		days := map[string]bool{}
		for _, l := range lines[:23] {
			var r struct {
				Type, Severity, Opened string
				Cleared                *string
				Detail                 string
				ClearedBy              string `json:"cleared_by"`
			}
			if err := json.Unmarshal([]byte(l), &r); err != nil {
				t.Fatalf("line %q: %v", l, err)
			}
			opened, err := time.Parse(time.RFC3339, r.Opened)
			if err != nil || r.Type != "no_activity" || r.Severity != "warning" || r.Cleared == nil || !strings.HasSuffix(r.Opened, offset) ||
				!strings.HasPrefix(r.Detail, "no activity since ") || !strings.HasPrefix(r.ClearedBy, "cleared: activity again (") {
				t.Errorf("%v: line %q", args, l)
				continue
			}
			if h := opened.Hour(); h < 12 || h > 16 {
				t.Errorf("%v: opened %s, want 12:00-16:59 local (docs/alerting.md)", args, r.Opened)
			}
			days[r.Opened[:10]] = true
		}
		if len(days) != 23 {
			t.Errorf("%v: alerts on %d days, want 23", args, len(days))
		}
		if want := "23 alerts (1 types) from 2638 records, 2008-02-25T00:20:14" + offset + " to 2008-03-23T19:04:47" + offset; lines[23] != want {
			t.Errorf("%v: summary %q, want %q", args, lines[23], want)
		}
		t.Logf("%v: four weeks in %s", args, took)
		if took > 30*time.Second {
			t.Errorf("replay took %s", took)
		}
	}
}

// TestSimActivityCSV: a time,sensor,value log with a sensor-to-kind
// mapping, and the clear errors of a missing mapping or zone.
func TestSimActivityCSV(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	log := filepath.Join(dir, "home.csv")
	os.WriteFile(log, []byte("time,sensor,value\n2026-03-02 07:50:00,bedroom,1\n2026-03-02 08:30:00,front,open\n2026-03-02 08:30:10,front,closed\n2026-03-02 13:10:00,hall,1\n"), 0o600)
	maps := filepath.Join(dir, "kinds.txt")
	os.WriteFile(maps, []byte("# sensor=kind\nbedroom=motion_sensor\nhall=motion_sensor\n"), 0o600)
	run := func(args ...string) (string, error) {
		var stdout bytes.Buffer
		root := newRootCmd()
		root.SetOut(&stdout)
		root.SetErr(&bytes.Buffer{})
		root.SetArgs(append([]string{"sim", "activity", "--eval", log}, args...))
		err := root.Execute()
		return stdout.String(), err
	}
	out, err := run("--map", "front=contact_sensor", "--map-file", maps)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"type":"no_activity","severity":"warning","opened":"2026-03-02T12:31:00+08:00","cleared":"2026-03-02T13:10:00+08:00","detail":"no activity since 2026-03-02 08:30 (4h0m0s)","cleared_by":"cleared: activity again (hall)"}
1 alerts (1 types) from 4 records, 2026-03-02T07:50:00+08:00 to 2026-03-02T13:10:00+08:00
`
	if out != want {
		t.Errorf("output\n%s\nwant\n%s", out, want)
	}
	if _, err := run("--map", "front=contact_sensor"); err == nil || !strings.Contains(err.Error(), `sensor "bedroom" has no kind in the mapping`) {
		t.Errorf("missing mapping: %v", err)
	}
	if _, err := run("--map-file", maps, "--map", "front=contact_sensor", "--tz", "Mars/Olympus"); err == nil || !strings.Contains(err.Error(), "--tz") {
		t.Errorf("bad zone: %v", err)
	}
}
