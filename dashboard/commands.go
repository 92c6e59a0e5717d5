package dashboard

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/eldercare-iot/eldercare/alerting"
	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/device/registry"
)

// Staff commands from the resident page (issue 13): close a valve, silence
// a siren or an alarm's buzzer, test a smoke or gas alarm. The command goes
// out through the alerting service, which publishes it on the device's
// command topic and tracks it (sent, acknowledged by the gateway,
// confirmed by the device's new state, retried, failed); the page shows
// that state and the dashboard's audit log records who sent what. A
// command is tied to the resident's newest active alert, if any, so each
// step is also in that alert's history.

// Commander sends and tracks commands to devices. In `eldercare up` it is
// the in-process *alerting.Service (sent at once). The separate dashboard
// role uses *alerting.Manager: the command is requested in the alert store
// and the alerting role claims, sends and tracks it within its command
// tick (1 s); both record each command's state in the store, where
// Commands reads it.
type Commander interface {
	SendCommand(ctx context.Context, site, dev string, action device.Action, params map[string]any, alertID int64, actor string) (string, error)
	Commands(alertID int64) []alerting.CommandStatus
}

var (
	_ Commander = (*alerting.Service)(nil)
	_ Commander = (*alerting.Manager)(nil)
)

// staffActions are the actions staff may send from the resident page.
var staffActions = []device.Action{device.ActionValveClose, device.ActionSirenSilence, device.ActionAlarmTest}

// commandDevice is a device of the resident page with the staff actions
// its kind accepts.
type commandDevice struct {
	ID, Name, Kind string
	Actions        []string // device.Action values
}

// commandRow is a tracked command as the page shows it.
type commandRow struct {
	ID, Device, Action, State, Detail, Updated string
	Tries                                      int
	Final, Failed                              bool
}

// commandDevices are the devices of resident res whose kind accepts a
// staff action: the devices at the resident's bed or bound to them, and,
// in a home (a site with one resident), every such device of the site.
func commandDevices(d *directory, res registry.Resident, devs []registry.Device) []commandDevice {
	ids := map[string]bool{}
	for _, x := range devs {
		ids[x.ID] = true
	}
	home := 0
	for _, r := range d.residents {
		if r.SiteID == res.SiteID {
			home++
		}
	}
	var out []commandDevice
	for _, x := range d.devices {
		if x.SiteID != res.SiteID || !(ids[x.ID] || home == 1) {
			continue
		}
		var acts []string
		for _, a := range device.Actions(device.Kind(x.Kind)) {
			if slices.Contains(staffActions, a) {
				acts = append(acts, string(a))
			}
		}
		if len(acts) > 0 {
			out = append(out, commandDevice{ID: x.ID, Name: x.Name, Kind: x.Kind, Actions: acts})
		}
	}
	return out
}

// commandRows are the tracked commands to the devices, newest first.
func (s *Server) commandRows(d *directory, site string, cds []commandDevice) []commandRow {
	if s.deps.Commands == nil || len(cds) == 0 {
		return nil
	}
	loc := d.loc(site)
	var out []commandRow
	for _, st := range s.deps.Commands.Commands(0) {
		if !slices.ContainsFunc(cds, func(c commandDevice) bool { return c.ID == st.Device }) {
			continue
		}
		out = append(out, commandRow{ID: st.ID, Device: st.Device, Action: string(st.Action), State: string(st.State), Detail: st.Detail,
			Updated: st.Updated.In(loc).Format(timeFormat), Tries: st.Tries,
			Final: st.State == alerting.CommandConfirmed || st.State == alerting.CommandFailed, Failed: st.State == alerting.CommandFailed})
	}
	slices.SortFunc(out, func(a, b commandRow) int { return strings.Compare(b.Updated+b.ID, a.Updated+a.ID) })
	return out
}

// residentCommand is POST /residents/:id/command (device, action): sends
// a staff action to one of the resident's command devices and returns to
// the page's command section. Unknown devices or actions answer 400.
func (s *Server) residentCommand(c *fiber.Ctx) error {
	lang := langOf(c)
	if s.deps.Commands == nil {
		return fiber.NewError(fiber.StatusServiceUnavailable, trIn(lang, "cmd.unavailable"))
	}
	ctx := c.UserContext()
	id := c.Params("id")
	d, err := s.directory(ctx)
	if err != nil {
		return err
	}
	res, ok := d.resByID[id]
	if !ok {
		return fiber.ErrNotFound
	}
	dev, action := strings.TrimSpace(c.FormValue("device")), device.Action(strings.TrimSpace(c.FormValue("action")))
	cds := commandDevices(d, res, d.devicesOf(res.BedID, res.ID, s.now()))
	i := slices.IndexFunc(cds, func(x commandDevice) bool { return x.ID == dev })
	if i < 0 || !slices.Contains(cds[i].Actions, string(action)) {
		return fiber.NewError(fiber.StatusBadRequest, trIn(lang, "cmd.bad"))
	}
	var alertID int64
	if active, err := s.activeAlerts(ctx, alerting.Filter{Resident: id}); err == nil && len(active) > 0 {
		alertID = active[0].ID
		for _, a := range active {
			if a.ID > alertID {
				alertID = a.ID
			}
		}
	}
	cmdID, err := s.deps.Commands.SendCommand(ctx, res.SiteID, dev, action, nil, alertID, actorOf(c))
	if err != nil && cmdID == "" {
		if errors.Is(err, context.Canceled) {
			return err
		}
		return fiber.NewError(fiber.StatusBadRequest, trIn(lang, "cmd.bad")+" "+err.Error())
	}
	detail := string(action) + " " + cmdID
	if alertID != 0 {
		detail += " alert " + itoa64(alertID)
	}
	s.audit(c, "command", "device:"+dev, detail)
	return c.Redirect("/residents/"+id+"?command="+cmdID+"#commands", fiber.StatusSeeOther)
}

func itoa64(n int64) string { return strconv.FormatInt(n, 10) }
