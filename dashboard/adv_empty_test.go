package dashboard

import (
	"context"
	"strings"
	"testing"

	"github.com/eldercare-iot/eldercare/device/registry"
	"github.com/eldercare-iot/eldercare/internal/sqldb"
	"github.com/eldercare-iot/eldercare/internal/sqldb/sqldbtest"
)

// TestEmptyStates: on a fresh install (an empty registry and alert store)
// every new page answers 200 and says there is nothing yet, in both
// languages; the onboarding tables used to be empty without a word.
func TestEmptyStates(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := sqldb.Open(ctx, sqldbtest.SQLiteDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	store, err := registry.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	hs := newHistoryStore(t)
	ts := newTestServer(t, func(_ *Config, d *Deps) { d.Alerts, d.History, d.Registry = hs.m, hs.m, store })
	for _, c := range []struct {
		user, path string
		want       []string
	}{
		{"admin", "/admin/onboard", []string{`id="no-devices"`, `id="no-sites"`, `id="no-residents"`, `id="no-unknown"`, "No device is registered yet."}},
		{"admin", "/alerts/history", []string{`class="empty"`}},
		{"admin", "/manager/trends", nil},
		{"admin", "/manager/devices", nil},
		{"admin", "/manager/programme", nil},
		{"admin", "/manager/handover", nil},
		{"admin", "/manager/adherence", nil},
		{"lead", "/alerts/history", []string{`class="empty"`}},
		{"lead", "/manager/trends", []string{"本时段没有告警"}},
		{"lead", "/manager/handover", nil},
		{"lead", "/manager/adherence", nil},
	} {
		cookie, _ := ts.loginAs(t, c.user)
		resp, page := ts.do(t, "GET", c.path, nil, map[string]string{"Cookie": cookie})
		if resp.StatusCode != 200 {
			t.Errorf("%s %s: %d", c.user, c.path, resp.StatusCode)
		}
		for _, w := range c.want {
			if !strings.Contains(page, w) {
				t.Errorf("%s %s lacks %s", c.user, c.path, w)
			}
		}
	}
	cookie, _ := ts.loginAs(t, "admin")
	if _, page := ts.do(t, "GET", "/admin/onboard?lang=zh-CN", nil, map[string]string{"Cookie": cookie}); !strings.Contains(page, "尚未登记任何设备") {
		t.Error("the Chinese onboarding page has no empty state")
	}
}
