package main

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/eldercare-iot/eldercare/alerting"
	"github.com/eldercare-iot/eldercare/internal/sqldb"
	"github.com/eldercare-iot/eldercare/internal/sqldb/sqldbtest"
)

// TestAlertingExtras: --alerting-settings is imported (audited as
// import:FILE), and the SMTP and chat flags make the e-mail and chat
// receivers; bad values are refused with the flag's name.
func TestAlertingExtras(t *testing.T) {
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
		cmd := &cobra.Command{Use: "alerting"}
		addAlertingFlags(cmd.Flags())
		(&cobra.Command{Use: "r"}).AddCommand(cmd)
		if err := cmd.Flags().Parse(args); err != nil {
			t.Fatal(err)
		}
		s, err := loadSettings(cmd)
		if err != nil {
			t.Fatal(err)
		}
		return alertingExtras(ctx, s, m)
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
