package dashboard

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/eldercare-iot/eldercare/alerting"
	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/device/registry"
)

// advCommander records the commands sent (a fake Commander).
type advCommander struct {
	mu   sync.Mutex
	sent []alerting.CommandStatus
}

func (f *advCommander) SendCommand(_ context.Context, site, dev string, action device.Action, _ map[string]any, alertID int64, actor string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := fmt.Sprintf("cmd-%d", len(f.sent)+1)
	f.sent = append(f.sent, alerting.CommandStatus{ID: id, Site: site, Device: dev, Action: action, AlertID: alertID, Actor: actor,
		State: alerting.CommandSent, Updated: testNow})
	return id, nil
}

func (f *advCommander) Commands(int64) []alerting.CommandStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]alerting.CommandStatus(nil), f.sent...)
}

// TestResidentCommandRefusals: a staff command goes only to a device of
// the resident's own bed or binding whose kind takes that action. Another
// site's valve, a fall detector, an action the device does not take, a
// caregiver of another site, a family account and a post without the
// CSRF token are refused and nothing is sent; an accepted command is
// audited with the device's site, so that site's manager reads it.
func TestResidentCommandRefusals(t *testing.T) {
	t.Parallel()
	reg := historyRegistry()
	reg.devices = append(reg.devices,
		registry.Device{ID: "valve-101", SiteID: "demo-station", Kind: "valve", Name: "Gas valve", BedID: "b101-1"},
		registry.Device{ID: "valve-201", SiteID: "other-site", Kind: "valve", Name: "Gas valve", BedID: "b201-1"})
	cmd := &advCommander{}
	ts := newTestServer(t, func(_ *Config, d *Deps) { d.Registry, d.Commands = reg, cmd })
	post := func(user, res, dev, action string, withCSRF bool) int {
		t.Helper()
		c, csrf := ts.loginAs(t, user)
		v := url.Values{"device": {dev}, "action": {action}}
		if withCSRF {
			v.Set("_csrf", csrf)
		}
		r, _ := ts.form(t, c, "/residents/"+res+"/command", v)
		return r.StatusCode
	}
	for _, c := range []struct {
		name, user, res, dev, action string
		csrf                         bool
		want                         int
	}{
		{"another site's valve", "nurse", "res-001", "valve-201", "valve_close", true, 400},
		{"a fall detector", "nurse", "res-001", "fd-001", "call_acknowledged", true, 400},
		{"an action the valve does not take", "nurse", "res-001", "valve-101", "valve_open", true, 400},
		{"an unknown action", "nurse", "res-001", "valve-101", "<script>", true, 400},
		{"a caregiver of another site", "faraway", "res-001", "valve-101", "valve_close", true, 404},
		{"a family account", "daughter", "res-001", "valve-101", "valve_close", true, 404},
		{"no CSRF token", "nurse", "res-001", "valve-101", "valve_close", false, 403},
		{"an unknown resident", "nurse", "res-999", "valve-101", "valve_close", true, 404},
	} {
		if got := post(c.user, c.res, c.dev, c.action, c.csrf); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
	if n := len(cmd.Commands(0)); n != 0 {
		t.Fatalf("%d commands sent by refused requests: %+v", n, cmd.Commands(0))
	}
	if got := post("nurse", "res-001", "valve-101", "valve_close", true); got != 303 {
		t.Fatalf("valve close: %d", got)
	}
	if s := cmd.Commands(0); len(s) != 1 || s[0].Site != "demo-station" || s[0].Device != "valve-101" || s[0].Actor != "Nurse Zhang" {
		t.Errorf("sent %+v", s)
	}
	es, err := ts.acc.Audit(context.Background(), AuditFilter{Action: "command"})
	if err != nil || len(es) != 1 || es[0].Site != "demo-station" || es[0].Target != "device:valve-101" {
		t.Errorf("audit %+v %v", es, err)
	}
	mc, _ := ts.loginAs(t, "manager")
	if _, page := ts.do(t, "GET", "/manager/audit?action=command", nil, map[string]string{"Cookie": mc}); !strings.Contains(page, "device:valve-101") {
		t.Error("the site's manager does not see the command in the audit log")
	}
}
