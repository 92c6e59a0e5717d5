// Stage 2, rules, offline: a replay clock for the absence rules. A recorded
// activity log (the van Kasteren format, or a plain CSV of time,sensor,value
// with a sensor-to-kind mapping) is run through the same absence state
// machine the service feeds, with the recording's own time as the clock, so
// four weeks of a household's life are evaluated in well under a second.

package alerting

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/eldercare-iot/eldercare/device"
)

// ActivityRecord is one sensor report of a recorded activity log.
type ActivityRecord struct {
	At     time.Time
	Sensor string
	// Kind is the kind of device the sensor is (a device.Kind value, e.g.
	// contact_sensor, motion_sensor); whether its report is activity is
	// decided as in the service (see isActivity).
	Kind string
}

// validActivityKind reports whether a log's sensor may map to kind k: a
// kind of the protocol (contact_sensor and motion_sensor named explicitly,
// as the rules are).
func validActivityKind(k string) bool {
	return device.Kind(k).Valid() || k == kindContactSensor || k == kindMotionSensor
}

// AbsenceEpisode is one alert the absence rules raise in a replay.
type AbsenceEpisode struct {
	Type     string    `json:"type"`
	Severity string    `json:"severity"`
	Opened   time.Time `json:"opened"`
	// Cleared is nil when the alert is still open at the end of the log.
	Cleared *time.Time `json:"cleared"`
	Detail  string     `json:"detail"`
	// ClearedBy is the resolve note, e.g. "cleared: activity again
	// (Frontdoor)".
	ClearedBy string `json:"cleared_by,omitempty"`
}

// DefaultReplayTick is how often the replay clock checks the absence
// timers (the service checks every 10 s of wall time; a minute is enough
// for rules measured in hours and keeps a month's replay fast).
const DefaultReplayTick = time.Minute

// ReplayAbsence runs recs (sorted here by time) through the absence rules
// of one resident in zone loc, with a replay clock: the clock starts at the
// first record's minute, ticks every tick (<= 0: DefaultReplayTick), feeds
// each record at or before the tick's time first, and stops one hour after
// the last record. It returns every alert with the replay time it opened
// and cleared (nil when still open at the end). Records of a vitals monitor
// or a gateway are not activity and are skipped.
func ReplayAbsence(recs []ActivityRecord, rules AbsenceRules, loc *time.Location, tick time.Duration) []AbsenceEpisode {
	if len(recs) == 0 {
		return nil
	}
	if tick <= 0 {
		tick = DefaultReplayTick
	}
	recs = slices.Clone(recs)
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].At.Before(recs[j].At) })
	const resident, site = "resident", "site"
	a := newAbsence(rules)
	zone := func(string) *time.Location { return loc }
	var out []AbsenceEpisode
	open := map[string]int{} // type -> index in out
	apply := func(acts []absenceAction) {
		for _, x := range acts {
			if x.Clear {
				if i, ok := open[x.Type]; ok {
					at := x.At
					out[i].Cleared, out[i].ClearedBy = &at, x.Detail
					delete(open, x.Type)
				}
				continue
			}
			if _, ok := open[x.Type]; ok {
				continue
			}
			open[x.Type] = len(out)
			out = append(out, AbsenceEpisode{Type: x.Type, Severity: x.Severity, Opened: x.At, Detail: x.Detail})
		}
	}
	i := 0
	end := recs[len(recs)-1].At.Add(time.Hour)
	for now := recs[0].At.Truncate(time.Minute); now.Before(end); now = now.Add(tick) {
		for ; i < len(recs) && !recs[i].At.After(now); i++ {
			if !isActivity(recs[i].Kind, nil) {
				continue
			}
			apply(a.Activity(resident, site, recs[i].Sensor, recs[i].At))
		}
		apply(a.Tick(now, zone))
	}
	return out
}

// kasterenSensor matches a sensor line of the Kasteren header, e.g.
// "    [ 5]    'Hall-Toilet door'".
var kasterenSensor = regexp.MustCompile(`^\s*\[\s*(\d+)\]\s*'([^']*)'`)

// kasterenLayout is the time format of the Kasteren files.
const kasterenLayout = "02-Jan-2006 15:04:05"

// KasterenKind is the device kind of a van Kasteren House A sensor (by its
// name in the file's header): the doors, cupboards and appliance doors are
// reed contacts (contact_sensor), the toilet flush a float switch
// ("other"). Each firing's start and end are activity in the rules.
func KasterenKind(name string) string {
	if strings.Contains(strings.ToLower(name), "flush") {
		return string(device.Other)
	}
	return kindContactSensor
}

// ParseKasteren reads a van Kasteren sensor file (kasterenSenseData.txt:
// a header block naming the sensor ids, then tab-separated rows "Start
// time, End time, ID, Val" with times like "25-Feb-2008 00:20:14", CRLF
// line ends). The times are read as wall times in loc (the house's own
// zone, or the site's when the log stands for a resident there). Each row
// gives two records, its start and its end (a door opened, then closed),
// named after the sensor (its header name, else "sensor <id>") with its
// KasterenKind. Errors: a row whose first cell is a time but whose other
// cells do not parse (with its line number), or no rows at all.
func ParseKasteren(r io.Reader, loc *time.Location) ([]ActivityRecord, error) {
	names := map[int]string{}
	var out []ActivityRecord
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimRight(sc.Text(), "\r")
		if m := kasterenSensor.FindStringSubmatch(text); m != nil {
			id, _ := strconv.Atoi(m[1])
			names[id] = strings.TrimSpace(m[2])
			continue
		}
		cells := strings.Split(text, "\t")
		if len(cells) < 3 {
			continue
		}
		from, err := time.ParseInLocation(kasterenLayout, strings.TrimSpace(cells[0]), loc)
		if err != nil {
			continue // the column header and its underline
		}
		to, err1 := time.ParseInLocation(kasterenLayout, strings.TrimSpace(cells[1]), loc)
		id, err2 := strconv.Atoi(strings.TrimSpace(cells[2]))
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("line %d: want Start time, End time, ID, Val: %w", line, err)
		}
		name := names[id]
		if name == "" {
			name = fmt.Sprintf("sensor %d", id)
		}
		k := KasterenKind(name)
		out = append(out, ActivityRecord{At: from, Sensor: name, Kind: k}, ActivityRecord{At: to, Sensor: name, Kind: k})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, errors.New("no sensor rows (want tab-separated Start time, End time, ID, Val)")
	}
	return out, nil
}

// csvTimeLayouts are the time formats of the plain CSV log, tried in order;
// those without a zone are read in the site's zone.
var csvTimeLayouts = []string{time.RFC3339Nano, "2006-01-02 15:04:05", "2006-01-02T15:04:05", "2006-01-02 15:04"}

// ParseActivityCSV reads a plain CSV activity log "time,sensor,value" (an
// optional header line starting with "time"). time is RFC 3339, or
// "2006-01-02 15:04:05" (also with T, or without seconds) as wall time in
// loc. kinds maps each sensor to its kind (device kinds, e.g.
// contact_sensor, motion_sensor, bed_sensor). A report is activity when
// value is on (1, on, true, open, detected, or any non-zero number); an
// off value (0, off, false, closed, clear) is activity only for a contact
// sensor (someone closed the door), not for a motion sensor, whose "clear"
// is its own timeout; and a report of a kind that is not activity (a
// vitals monitor, a smoke alarm ...) never is. Errors name the
// line: a bad time, a sensor with no kind in the mapping, a kind that is
// not known, a value that is neither on nor off.
func ParseActivityCSV(r io.Reader, loc *time.Location, kinds map[string]string) ([]ActivityRecord, error) {
	for s, k := range kinds {
		if !validActivityKind(k) {
			return nil, fmt.Errorf("sensor %s: unknown kind %q (want one of %v, %s, %s)", s, k, device.Kinds, kindContactSensor, kindMotionSensor)
		}
	}
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	var out []ActivityRecord
	var errs []error
	for line := 1; ; line++ {
		row, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if line == 1 && len(row) > 0 && strings.EqualFold(strings.TrimSpace(row[0]), "time") {
			continue
		}
		if len(row) == 1 && strings.TrimSpace(row[0]) == "" {
			continue
		}
		if len(row) != 3 {
			errs = append(errs, fmt.Errorf("line %d: want time,sensor,value, got %d fields", line, len(row)))
			continue
		}
		at, err := parseCSVTime(strings.TrimSpace(row[0]), loc)
		if err != nil {
			errs = append(errs, fmt.Errorf("line %d: %w", line, err))
			continue
		}
		sensor := strings.TrimSpace(row[1])
		kind, ok := kinds[sensor]
		if !ok {
			errs = append(errs, fmt.Errorf("line %d: sensor %q has no kind in the mapping (e.g. --map %s=contact_sensor)", line, sensor, sensor))
			continue
		}
		on, err := parseOnOff(strings.TrimSpace(row[2]))
		if err != nil {
			errs = append(errs, fmt.Errorf("line %d: %w", line, err))
			continue
		}
		if !on && kind != kindContactSensor {
			continue
		}
		out = append(out, ActivityRecord{At: at, Sensor: sensor, Kind: kind})
		if len(errs) > 20 {
			break
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(out) == 0 {
		return nil, errors.New("no activity rows (want time,sensor,value)")
	}
	return out, nil
}

func parseCSVTime(s string, loc *time.Location) (time.Time, error) {
	for _, l := range csvTimeLayouts {
		if t, err := time.ParseInLocation(l, s, loc); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("time %q: want RFC 3339 or 2006-01-02 15:04:05 (site zone)", s)
}

func parseOnOff(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "1", "on", "true", "open", "detected", "occupied":
		return true, nil
	case "0", "off", "false", "closed", "clear":
		return false, nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		return f != 0, nil
	}
	return false, fmt.Errorf("value %q: want on (1, on, true, open, detected) or off (0, off, false, closed, clear)", s)
}

// ParseKindMap reads a sensor-to-kind mapping: "sensor=kind" (or
// "sensor,kind") one per line; blank lines and lines starting with # are
// skipped.
func ParseKindMap(text string) (map[string]string, error) {
	out := map[string]string{}
	var errs []error
	for i, ln := range strings.Split(text, "\n") {
		ln = strings.TrimSpace(strings.TrimRight(ln, "\r"))
		if ln == "" || strings.HasPrefix(ln, "#") {
			continue
		}
		s, k, ok := strings.Cut(ln, "=")
		if !ok {
			s, k, ok = strings.Cut(ln, ",")
		}
		s, k = strings.TrimSpace(s), strings.TrimSpace(k)
		if !ok || s == "" || k == "" {
			errs = append(errs, fmt.Errorf("mapping line %d %q: want sensor=kind", i+1, ln))
			continue
		}
		out[s] = k
	}
	return out, errors.Join(errs...)
}
