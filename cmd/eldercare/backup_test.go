package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/internal/backup"
	"github.com/eldercare-iot/eldercare/internal/influxd"
	"github.com/eldercare-iot/eldercare/internal/realdata"
	"github.com/eldercare-iot/eldercare/internal/sqldb"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// storeState is what a backup must keep of the SQLite store: each alert with
// its number of history rows, and the accounts.
type storeState struct {
	history  map[string]int // alert id -> history rows
	accounts []string
}

func readStore(t *testing.T, path string) storeState {
	t.Helper()
	db, err := sqldb.Open(context.Background(), "sqlite:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	st := storeState{history: map[string]int{}}
	rows, err := db.Query(`SELECT a.id, COUNT(h.alert_id) FROM alerts a LEFT JOIN alert_history h ON h.alert_id = a.id GROUP BY a.id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			t.Fatal(err)
		}
		st.history[id] = n
	}
	rows.Close()
	urows, err := db.Query(`SELECT username FROM dashboard_users ORDER BY username`)
	if err != nil {
		t.Fatal(err)
	}
	for urows.Next() {
		var u string
		urows.Scan(&u)
		st.accounts = append(st.accounts, u)
	}
	urows.Close()
	var orphans int
	if err := db.QueryRow(`SELECT COUNT(*) FROM alert_history h WHERE NOT EXISTS (SELECT 1 FROM alerts a WHERE a.id = h.alert_id)`).Scan(&orphans); err != nil {
		t.Fatal(err)
	}
	if orphans != 0 {
		t.Errorf("%s: %d history rows without their alert", path, orphans)
	}
	return st
}

func (s storeState) rows() (alerts, history int) {
	for _, n := range s.history {
		alerts++
		history += n
	}
	return
}

// countReadings counts the points of measurement "readings" in
// eldercare/autogen, field heart_rate... any field: COUNT of the first.
func countReadings(t *testing.T, base, token string) int64 {
	t.Helper()
	n, err := tryCountReadings(base, token)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func tryCountReadings(base, token string) (int64, error) {
	q := url.Values{"db": {"eldercare"}, "q": {`SELECT COUNT(*) FROM "eldercare"."autogen"."readings"`}}
	req, _ := http.NewRequest(http.MethodGet, base+"/query?"+q.Encode(), nil)
	req.Header.Set("Authorization", "Token "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("count readings: HTTP %d %s", resp.StatusCode, b)
	}
	// {"results":[{"statement_id":0,"series":[{"name":"readings","columns":["time","count_a","count_b"],"values":[["1970...",12,7]]}]}]}
	// The largest per-field count is the number of points with any field.
	var max int64
	s := string(b)
	if i := strings.Index(s, `"values":[[`); i >= 0 {
		row := s[i+len(`"values":[[`):]
		row = row[:strings.Index(row, "]")]
		for _, f := range strings.Split(row, ",")[1:] {
			var n int64
			fmt.Sscan(f, &n)
			max = maxInt(max, n)
		}
	}
	return max, nil
}

func maxInt(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

// TestBackupRestoreUnderLoad runs `up --demo` (replaying real recordings fast,
// so readings, alerts and their history are being written), checks that its
// InfluxDB refuses unauthenticated queries while ingest and dashboard work
// with the generated accounts, backs it up while it runs, checks that restore
// refuses the running installation, stops it, restores into a fresh data
// directory and finds every alert, history row, account and reading that
// existed before the backup began.
func TestBackupRestoreUnderLoad(t *testing.T) {
	t.Parallel()
	needInfluxd(t) // up starts its own
	rec, ok := realdata.Find()
	if !ok {
		testenv.Unavailable(t, "recordings missing (set ELDERCARE_REALDATA)")
	}
	data := filepath.Join(t.TempDir(), "data")
	httpAddr, mqttAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	exited := make(chan struct{})
	var upErr error
	started := startingInflux(t) // until up's child InfluxDB answers
	go func() {
		defer close(exited)
		root := newRootCmd()
		root.SetArgs([]string{"up", "--data", data, "--http", httpAddr, "--mqtt-listen", mqttAddr,
			"--influx-listen", testenv.FreeAddr(t), "--influx-rpc-listen", testenv.FreeAddr(t),
			"--demo", "--recordings", rec, "--speed", "20", "--log-level", "warn"})
		upErr = root.ExecuteContext(ctx)
	}()
	stopUp := func() {
		cancel()
		select {
		case <-exited:
			if upErr != nil {
				t.Errorf("up: %v", upErr)
			}
		case <-time.After(time.Minute):
			t.Error("up did not stop within a minute")
		}
	}
	var stopped bool
	defer func() {
		if !stopped {
			stopUp()
		}
	}()

	dbPath := filepath.Join(data, "eldercare.db")
	creds, err := func() (influxd.Credentials, error) {
		var c influxd.Credentials
		var err error
		testenv.EventuallyTrue(t, 2*time.Minute, "up to write its InfluxDB accounts", func() bool {
			select {
			case <-exited:
				t.Fatalf("up exited: %v", upErr)
			default:
			}
			if _, err := os.Stat(filepath.Join(data, influxCredentialsFile)); err != nil {
				return false
			}
			c, err = influxd.LoadOrCreateCredentials(filepath.Join(data, influxCredentialsFile), "eldercare")
			_, serr := os.Stat(filepath.Join(data, "influxdb", "influxd.conf"))
			return err == nil && serr == nil
		})
		return c, err
	}()
	if err != nil {
		t.Fatal(err)
	}
	influxHTTP, _, err := influxd.ReadAddrs(filepath.Join(data, "influxdb"))
	if err != nil {
		t.Fatal(err)
	}
	influxURL := "http://" + influxHTTP
	testenv.EventuallyTrue(t, 2*time.Minute, "dashboard /healthz", func() bool {
		resp, err := http.Get("http://" + httpAddr + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == http.StatusOK
	})
	started()
	// Load: alerts with history in the store and readings in InfluxDB.
	testenv.EventuallyTrue(t, 3*time.Minute, "alerts and readings", func() bool {
		a, h := readStore(t, dbPath).rows()
		n, err := tryCountReadings(influxURL, creds.UserToken())
		return a >= 2 && h >= 2 && err == nil && n >= 100
	})

	// The managed InfluxDB refuses a query without credentials.
	resp, err := http.Get(influxURL + "/query?q=" + url.QueryEscape("SHOW DATABASES"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("unauthenticated query of up's InfluxDB: HTTP %d, want 401", resp.StatusCode)
	}
	// The dashboard reads vitals through Flux with the service user.
	token, err := os.ReadFile(filepath.Join(data, "api-token"))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+httpAddr+"/api/v1/residents/res-001/vitals?minutes=1440", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Error(err)
	} else {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || len(b) < 20 {
			t.Errorf("dashboard vitals of res-001: HTTP %d %s", resp.StatusCode, b)
		}
	}
	// Private files.
	for p, want := range map[string]os.FileMode{data: 0o700, dbPath: 0o600, filepath.Join(data, influxCredentialsFile): 0o600,
		filepath.Join(data, "influxdb"): 0o700, filepath.Join(data, "influxdb", "influxd.conf"): 0o600} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v, %v; want mode %o", p, fi.Mode().Perm(), err, want)
		}
	}

	// Back up while up keeps writing: besides the demo, SOS events from
	// devices nobody registered, each raising a new (unassigned) alert.
	client := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + mqttAddr).SetClientID(testenv.ClientID(t, "load")))
	if tok := client.Connect(); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		t.Fatalf("connect load client: %v", tok.Error())
	}
	defer client.Disconnect(100)
	var published atomic.Int64
	loadDone, stopLoad := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(loadDone)
		for i := uint64(1); ; i++ {
			select {
			case <-stopLoad:
				return
			default:
			}
			dev := fmt.Sprintf("load-%d", i)
			b, _ := json.Marshal(device.Event{V: 1, Device: dev, Boot: 1, ID: 1, Seq: 1, TS: time.Now().UnixMilli(), Type: device.EventSOS})
			topic := device.Topic{Root: device.DefaultRoot, Site: "demo-station", Device: dev, Channel: device.ChanEvent}.String()
			if tok := client.Publish(topic, 1, false, b); tok.WaitTimeout(10*time.Second) && tok.Error() == nil {
				published.Add(1)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	loadAlerts := func() int {
		n := 0
		for id := range readStore(t, dbPath).history {
			_ = id
			n++
		}
		return n
	}
	base := loadAlerts()
	testenv.EventuallyTrue(t, time.Minute, "alerts from the load", func() bool { return loadAlerts() >= base+20 })
	before := readStore(t, dbPath)
	readingsBefore := countReadings(t, influxURL, creds.UserToken())
	out := filepath.Join(t.TempDir(), "backup")
	start := time.Now()
	if msg, err := runCLI(t, "", "backup", "--data", data, "--out", out); err != nil {
		t.Fatalf("backup: %v\n%s", err, msg)
	} else {
		t.Logf("%s(in %s)", msg, time.Since(start).Round(time.Millisecond))
	}
	after := readStore(t, dbPath)
	readingsAfter := countReadings(t, influxURL, creds.UserToken())
	close(stopLoad)
	<-loadDone
	if a, _ := before.rows(); len(after.history) <= a {
		t.Logf("no alert was added during the backup (%d before, %d after): the load did not overlap it", a, len(after.history))
	}
	if msg, err := runCLI(t, "", "restore", "--from", out, "--data", data, "--force"); !errors.Is(err, backup.ErrInUse) {
		t.Errorf("restore into the running installation: %v (%s), want ErrInUse", err, msg)
	}
	stopUp()
	stopped = true

	// A damaged backup is refused.
	if _, err := backup.Verify(out); err != nil {
		t.Fatalf("verify: %v", err)
	}
	// Restore into a fresh data directory.
	fresh := filepath.Join(t.TempDir(), "restored")
	started = startingInflux(t) // restore starts a temporary InfluxDB
	if msg, err := runCLI(t, "", "restore", "--from", out, "--data", fresh); err != nil {
		t.Fatalf("restore: %v\n%s", err, msg)
	}
	started()
	got := readStore(t, filepath.Join(fresh, "eldercare.db"))
	ba, bh := before.rows()
	ga, gh := got.rows()
	aa, ah := after.rows()
	t.Logf("alerts/history rows: %d/%d before the backup, %d/%d restored, %d/%d after; readings %d, restored see below, %d after",
		ba, bh, ga, gh, aa, ah, readingsBefore, readingsAfter)
	for id, n := range before.history {
		if m, ok := got.history[id]; !ok || m < n {
			t.Errorf("alert %s: %d history rows restored (present %t), %d before the backup", id, m, ok, n)
		}
	}
	if ga > aa || gh > ah {
		t.Errorf("restored %d alerts/%d history rows, more than the %d/%d after the backup", ga, gh, aa, ah)
	}
	if strings.Join(got.accounts, ",") != strings.Join(before.accounts, ",") || len(got.accounts) == 0 {
		t.Errorf("accounts restored %v, want %v", got.accounts, before.accounts)
	}
	// Readings: the restored InfluxDB, with the restored accounts and authentication on.
	rc, err := influxd.LoadOrCreateCredentials(filepath.Join(fresh, influxCredentialsFile), "eldercare")
	if err != nil || rc != creds {
		t.Fatalf("restored InfluxDB accounts differ: %v", err)
	}
	bin, _ := influxd.Find()
	started = startingInflux(t)
	srv, err := influxd.Start(context.Background(), influxd.Options{Bin: bin, DataDir: filepath.Join(fresh, "influxdb"), Auth: &rc})
	started()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	n := countReadings(t, srv.URL(), rc.UserToken())
	t.Logf("readings: %d before the backup, %d restored, %d after", readingsBefore, n, readingsAfter)
	if n < readingsBefore || n > readingsAfter {
		t.Errorf("restored %d readings, want between %d (before the backup) and %d (after)", n, readingsBefore, readingsAfter)
	}
	// Restore refuses a directory that holds data, and a damaged backup.
	if _, err := runCLI(t, "", "restore", "--from", out, "--data", fresh); err == nil || !strings.Contains(err.Error(), "already holds data") {
		t.Errorf("restore over existing data: %v, want a refusal", err)
	}
	os.WriteFile(filepath.Join(out, "eldercare.db"), []byte("damaged"), 0o600)
	if _, err := runCLI(t, "", "restore", "--from", out, "--data", filepath.Join(t.TempDir(), "x")); err == nil || !strings.Contains(err.Error(), "does not match its manifest") {
		t.Errorf("restore of a damaged backup: %v, want a checksum error", err)
	}
}
