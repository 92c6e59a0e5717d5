package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/eldercare-iot/eldercare/alerting"
	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
	"github.com/eldercare-iot/eldercare/internal/sqldb"
	"github.com/eldercare-iot/eldercare/internal/sqldb/sqldbtest"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// TestAlertingExtras: --alerting-settings is imported (audited as
// import:FILE), and the SMTP and chat flags make the e-mail and chat
// receivers; bad values are refused with the flag's name.
func TestAlertingExtras(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := sqldb.Open(ctx, sqldbtest.SQLiteDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	m, err := alerting.OpenManager(ctx, db, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) ([]alerting.Receiver, error) {
		var cfg alertingConfig
		cmd := &cobra.Command{Use: "alerting"}
		cfg.bind(cmd.Flags())
		(&cobra.Command{Use: "r"}).AddCommand(cmd)
		if err := cmd.Flags().Parse(args); err != nil {
			t.Fatal(err)
		}
		if _, err := loadSettings(cmd); err != nil {
			t.Fatal(err)
		}
		if err := cfg.Validate(); err != nil {
			return nil, err
		}
		return alertingExtras(ctx, &cfg, m, nil)
	}
	file := "../../alerting/testdata/settings.yaml"
	rcs, err := run("--alerting-settings", file, "--smtp-host", "127.0.0.1", "--smtp-port", "2525", "--smtp-tls", "none",
		"--smtp-from", "alerts@example.org", "--chat-webhook-url", "https://oapi.dingtalk.com/robot/send?access_token=x",
		"--chat-webhook-template", "dingtalk")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range rcs {
		names = append(names, r.Name())
	}
	if strings.Join(names, ",") != "email,chat" {
		t.Errorf("receivers %v, want email, chat", names)
	}
	set, err := m.Settings(ctx)
	if err != nil || len(set.Policies) != 1 || len(set.Recipients) != 5 {
		t.Fatalf("settings imported: %+v, %v", set, err)
	}
	audit, _ := m.SettingsAudit(ctx, 1)
	if len(audit) != 1 || audit[0].Actor != "import:"+file {
		t.Errorf("audit %+v, want actor import:%s", audit, file)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--alerting-settings", "/nonexistent.yaml"}, "--alerting-settings"},
		{[]string{"--smtp-host", "h"}, "--smtp-*"},
		{[]string{"--chat-webhook-url", "https://x", "--chat-webhook-template", "teams"}, "--chat-webhook-template"},
		{[]string{"--chat-webhook-url", "ftp://x"}, "--chat-webhook-url"},
	} {
		if _, err := run(c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want one naming %s", c.args, err, c.want)
		}
	}
}

// TestAlertingReadyz runs the alerting role (the real command, the
// embedded broker, a SQLite alert store) and checks its HTTP server:
// /healthz answers ok throughout (liveness); /readyz answers ok, then 503
// with the reason while another connection holds the store's write lock
// and a fall waits to be stored, then ok again once the fall is stored.
func TestAlertingReadyz(t *testing.T) {
	t.Parallel()
	mqttURL := testenv.EmbeddedBroker(t).URL()
	root := testenv.TopicRoot(t)
	// A write waits busy_timeout for the lock before it fails with
	// SQLITE_BUSY and /readyz turns 503: 250 ms instead of the default 5 s,
	// so the test does not sit out the default (the DSN's pragma wins).
	dsn := sqldbtest.SQLiteDSN(t) + "?_pragma=busy_timeout(250)"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		cmd := newRootCmd()
		cmd.SetArgs([]string{"alerting", "--mqtt", mqttURL, "--root", root, "--client-id", testenv.ClientID(t, "alerting"),
			"--db", dsn, "--http", addr, "--log-level", "error"})
		done <- cmd.ExecuteContext(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("alerting: %v", err)
		}
	})
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor("ready", func() bool { code, _ := get("/readyz"); return code == http.StatusOK })

	other, err := sqldb.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	conn, err := other.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN EXCLUSIVE"); err != nil {
		t.Fatal(err)
	}
	pub, err := mqttconn.Connect(ctx, mqttconn.Options{URL: mqttURL, ClientID: testenv.ClientID(t, "pub"), CleanSession: true,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Disconnect(100)
	b, _ := json.Marshal(device.Event{V: 1, Device: "fd-r", Boot: 1, ID: 1, Seq: 1, TS: time.Now().UnixMilli(), Type: device.EventFall})
	if err := mqttconn.Wait(ctx, pub.Publish(device.Topic{Root: root, Site: "demo", Device: "fd-r", Channel: device.ChanEvent}.String(), 1, false, b),
		10*time.Second, "publish"); err != nil {
		t.Fatal(err)
	}
	var body string
	waitFor("not ready while the store is locked", func() bool {
		var code int
		code, body = get("/readyz")
		return code == http.StatusServiceUnavailable
	})
	if !strings.Contains(body, "cannot be stored") || !strings.Contains(body, "SQLITE_BUSY") {
		t.Errorf("/readyz body %q", body)
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz %d while the store is locked, want 200 (liveness)", code)
	}
	if code, body := get("/metrics"); code != http.StatusOK || !strings.Contains(body, "eldercare_alerting_store_failing 1") {
		t.Errorf("/metrics %d without eldercare_alerting_store_failing 1", code)
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	waitFor("ready again", func() bool { code, _ := get("/readyz"); return code == http.StatusOK })
	m, err := alerting.OpenManager(ctx, other, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	alerts, err := m.List(ctx, alerting.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(alerts) != 1 || alerts[0].Type != alerting.TypeFall || alerts[0].Device != "fd-r" {
		t.Errorf("alerts %+v, want the fall", alerts)
	}
}
