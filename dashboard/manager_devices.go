package dashboard

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/eldercare-iot/eldercare/alerting"
)

// DeviceLast is what InfluxDB last holds of one device: its newest
// battery_pct reading (%, NaN when it never reported one in the window)
// and when it was last heard from (newest reading or event; zero when
// never in the window).
type DeviceLast struct {
	BatteryPct float64
	BatteryAt  time.Time
	LastSeen   time.Time
}

// DeviceTelemetry reads the last battery level and last message time per
// device; *FluxVitals implements it.
type DeviceTelemetry interface {
	// DevicesLast returns DeviceLast per device id for [from, to).
	DevicesLast(ctx context.Context, from, to time.Time) (map[string]DeviceLast, error)
}

var _ DeviceTelemetry = (*FluxVitals)(nil)

// DevicesLast implements DeviceTelemetry with two Flux queries over the
// bucket: the last battery_pct per device (measurement readings), and the
// newest point of any field per device (readings and events). Errors:
// InfluxDB's, wrapped with the bucket.
func (f *FluxVitals) DevicesLast(ctx context.Context, from, to time.Time) (map[string]DeviceLast, error) {
	rng := fmt.Sprintf(`from(bucket: %s)
  |> range(start: %s, stop: %s)`, fluxString(f.bucket), from.UTC().Format(time.RFC3339Nano), to.UTC().Format(time.RFC3339Nano))
	out := map[string]DeviceLast{}
	get := func(dev string) DeviceLast {
		if v, ok := out[dev]; ok {
			return v
		}
		return DeviceLast{BatteryPct: math.NaN()}
	}
	res, err := f.query.Query(ctx, rng+`
  |> filter(fn: (r) => r._measurement == "readings" and r._field == "battery_pct" and exists r.device)
  |> group(columns: ["device"])
  |> last()
  |> keep(columns: ["_time", "_value", "device"])`)
	if err != nil {
		return nil, fmt.Errorf("query battery levels from bucket %s: %w", f.bucket, err)
	}
	for res.Next() {
		r := res.Record()
		dev, _ := r.ValueByKey("device").(string)
		if v, ok := toFloat(r.Value()); ok && dev != "" {
			x := get(dev)
			x.BatteryPct, x.BatteryAt = v, r.Time().UTC()
			out[dev] = x
		}
	}
	err = res.Err()
	res.Close()
	if err != nil {
		return nil, fmt.Errorf("read battery levels from bucket %s: %w", f.bucket, err)
	}
	res, err = f.query.Query(ctx, rng+`
  |> filter(fn: (r) => (r._measurement == "readings" or r._measurement == "events") and exists r.device)
  |> last()
  |> keep(columns: ["_time", "device"])
  |> group(columns: ["device"])
  |> max(column: "_time")`)
	if err != nil {
		return nil, fmt.Errorf("query last seen from bucket %s: %w", f.bucket, err)
	}
	defer res.Close()
	for res.Next() {
		r := res.Record()
		dev, _ := r.ValueByKey("device").(string)
		if dev == "" {
			continue
		}
		x := get(dev)
		if t := r.Time().UTC(); t.After(x.LastSeen) {
			x.LastSeen = t
		}
		out[dev] = x
	}
	if err := res.Err(); err != nil {
		return nil, fmt.Errorf("read last seen from bucket %s: %w", f.bucket, err)
	}
	return out, nil
}

// DeviceHealthWindow is how far back the device health page looks for a
// device's last battery reading and last message.
const DeviceHealthWindow = 30 * 24 * time.Hour

// DeviceRow is the health of one registered device.
type DeviceRow struct {
	ID, Name, Kind, Site, SiteName string
	Resident, ResidentName         string
	BatteryPct                     float64 // NaN: never reported (mains powered or no battery field)
	BatteryAt, LastSeen            time.Time
	Offline                        bool          // a device_offline alert is open
	OfflineFor                     time.Duration // offline time in the period (device_offline alerts)
	LowBattery                     bool          // BatteryPct below the threshold, or a low_battery alert is open
	Firmware                       string        // "" = not reported
}

// DeviceHealth is the device health page of one period.
type DeviceHealth struct {
	Period        Period
	ThresholdPct  float64 // low battery below this (alerting.DefaultBattery.Low)
	Devices       []DeviceRow
	Low           []DeviceRow // the low-battery list, lowest first
	TelemetryErr  bool        // InfluxDB could not be read: battery and last seen unknown
	OfflineCount  int
	NeverSeenRows int
}

// buildDeviceHealth joins the registry's devices of visible sites with
// their telemetry, open alerts and offline time. A device is on the
// low-battery list when its last battery_pct is below threshold or a
// low_battery alert about it is open.
func buildDeviceHealth(lang string, d *directory, keep func(string) bool, last map[string]DeviceLast, active []alerting.Alert, offline map[string]time.Duration, p Period, now time.Time) *DeviceHealth {
	h := &DeviceHealth{Period: p, ThresholdPct: alerting.DefaultBattery.Low}
	lowAlert, offAlert := map[string]bool{}, map[string]bool{}
	for _, a := range active {
		switch a.Type {
		case alerting.TypeLowBattery:
			lowAlert[a.Device] = true
		case alerting.TypeDeviceOffline:
			offAlert[a.Device] = true
		}
	}
	for _, dev := range d.devices {
		if !keep(dev.SiteID) {
			continue
		}
		row := DeviceRow{ID: dev.ID, Name: deviceName(lang, string(dev.Kind), dev.Name, dev.ID), Kind: string(dev.Kind), Site: dev.SiteID,
			SiteName: d.siteByID[dev.SiteID].Name, BatteryPct: math.NaN()}
		if row.SiteName == "" {
			row.SiteName = dev.SiteID
		}
		for _, b := range d.bindings {
			if b.DeviceID == dev.ID && b.ResidentID != "" && !b.From.After(now) && (b.To == nil || b.To.After(now)) {
				row.Resident, row.ResidentName = b.ResidentID, residentName(d, lang, b.ResidentID)
			}
		}
		if l, ok := last[dev.ID]; ok {
			row.BatteryPct, row.BatteryAt, row.LastSeen = l.BatteryPct, l.BatteryAt, l.LastSeen
		}
		row.Offline, row.OfflineFor = offAlert[dev.ID], offline[dev.ID]
		row.LowBattery = lowAlert[dev.ID] || (!math.IsNaN(row.BatteryPct) && row.BatteryPct < h.ThresholdPct)
		if row.Offline {
			h.OfflineCount++
		}
		if row.LastSeen.IsZero() {
			h.NeverSeenRows++
		}
		h.Devices = append(h.Devices, row)
		if row.LowBattery {
			h.Low = append(h.Low, row)
		}
	}
	// Problems first: offline now, low battery, not heard from; then by id.
	rank := func(r DeviceRow) int {
		switch {
		case r.Offline:
			return 0
		case r.LowBattery:
			return 1
		case r.LastSeen.IsZero():
			return 2
		}
		return 3
	}
	slices.SortStableFunc(h.Devices, func(a, b DeviceRow) int {
		if x, y := rank(a), rank(b); x != y {
			return x - y
		}
		return strings.Compare(a.ID, b.ID)
	})
	slices.SortStableFunc(h.Low, func(a, b DeviceRow) int {
		av, bv := a.BatteryPct, b.BatteryPct
		if math.IsNaN(av) {
			av = -1
		}
		if math.IsNaN(bv) {
			bv = -1
		}
		switch {
		case av < bv:
			return -1
		case av > bv:
			return 1
		}
		return 0
	})
	return h
}

// devicesPage is GET /manager/devices (period picker; csv=devices or
// csv=low_battery): every device with battery %, last seen, offline time
// in the period and firmware where reported (problems first: offline, low
// battery, not heard from), and the low-battery list.
func (s *Server) devicesPage(c *fiber.Ctx) error {
	lang := langOf(c)
	keep, loc, err := s.reportScope(c)
	if err != nil {
		return err
	}
	p, pick, errs := s.managerPeriod(c, loc)
	ctx := c.UserContext()
	d, err := s.directory(ctx)
	if err != nil {
		return err
	}
	now := s.now()
	active, err := s.activeAlerts(ctx, alerting.Filter{})
	if err != nil {
		return err
	}
	var offline map[string]time.Duration
	if tr := s.deps.Trends; tr != nil {
		if offline, err = tr.OfflinePeriods(ctx, p.From, p.To, now); err != nil {
			return err
		}
	}
	var last map[string]DeviceLast
	telErr := true
	if dt := s.deps.Telemetry; dt != nil {
		if last, err = dt.DevicesLast(ctx, now.Add(-DeviceHealthWindow), now.Add(time.Minute)); err != nil {
			s.log.Warn("device health: telemetry unavailable", "err", err)
		} else {
			telErr = false
		}
	}
	h := buildDeviceHealth(lang, d, keep, last, active, offline, p, now)
	h.TelemetryErr = telErr
	if name := c.Query("csv"); name != "" {
		if err := periodRefused(errs); err != nil {
			return err
		}
		var list []DeviceRow
		switch name {
		case "devices":
			list = h.Devices
		case "low_battery":
			list = h.Low
		default:
			return fiber.NewError(fiber.StatusNotFound, fmt.Sprintf("no table %q: want devices or low_battery", truncate(name, 32)))
		}
		rows := [][]string{{"device", "name", "kind", "site", "resident", "battery_pct", "battery_at", "last_seen", "offline_now", "offline_s_in_period", "low_battery", "firmware"}}
		for _, r := range list {
			bat := ""
			if !math.IsNaN(r.BatteryPct) {
				bat = strconv.FormatFloat(r.BatteryPct, 'f', -1, 64)
			}
			rows = append(rows, []string{r.ID, r.Name, r.Kind, r.Site, r.Resident, bat, csvTime(r.BatteryAt, loc), csvTime(r.LastSeen, loc),
				strconv.FormatBool(r.Offline), strconv.FormatInt(int64(r.OfflineFor/time.Second), 10), strconv.FormatBool(r.LowBattery), r.Firmware})
		}
		return s.sendCSV(c, name, p.Label, rows)
	}
	return s.renderView(c, periodStatus(errs), "manager_devices", "mg.devices.title", map[string]any{"Health": h, "Pick": pick, "Errors": errs, "Loc": loc, "Now": now})
}

// OfflinePtr is OfflineFor for the template's dur.
func (r DeviceRow) OfflinePtr() *time.Duration { d := r.OfflineFor; return &d }
