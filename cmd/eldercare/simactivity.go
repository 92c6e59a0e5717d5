package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/eldercare-iot/eldercare/alerting"
)

// demoZone is the IANA zone of the demo care station
// (firmware-sim/demo/registry.yaml), the default site zone of a replay.
const demoZone = "Asia/Shanghai"

// newSimActivityCmd evaluates the absence rules offline on a recorded
// activity log.
func newSimActivityCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "activity",
		Short: "Evaluate the absence (no-activity) rules offline on a recorded activity log: print every alert with when it would open and clear",
		Long: `activity --eval FILE replays a recorded activity log through the product's
absence rules with a replay clock (the log's own time; no broker, no store),
as fast as it can, and prints one JSON object per alert the rules would raise:

  {"type":"no_activity","severity":"warning","opened":"...","cleared":"..." or null,
   "detail":"...","cleared_by":"..."}

then one summary line "N alerts (T types) from R records, S to E". Times are
RFC 3339 in the site's zone (--tz). The log is either
  - the van Kasteren format (kasterenSenseData.txt in ../shared/data/activity-kasteren:
    a header naming the sensors, then tab-separated Start time, End time, ID, Val;
    each row's start and end are activity; doors, cupboards and appliance doors
    map to kind contact_sensor, the toilet flush to other), or
  - a CSV "time,sensor,value" (--format csv, or a .csv file), with a mapping of
    each sensor to its kind: --map sensor=kind (repeatable, comma-separated) or
    --map-file FILE (one sensor=kind a line). An on value is activity; an off
    value only for a contact_sensor (someone closed the door), never for a
    motion_sensor (its clear is its own timeout).
Times without a zone in the log are read as wall times in --tz. The rules are
this release's defaults (docs/alerting.md: no_activity after 4 h of silence
within 08:00-20:00). Reports of a vitals monitor, a gateway, or the safety kit's alarms,
sirens and valves are not activity, as in the service.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := loadSettings(cmd)
			if err != nil {
				return err
			}
			file := s.String("eval")
			if file == "" {
				return errors.New("sim activity: --eval FILE is required (a Kasteren sensor file or a time,sensor,value CSV)")
			}
			tz := s.String("tz")
			loc, err := time.LoadLocation(tz)
			if err != nil {
				return fmt.Errorf("--tz %q: %w", tz, err)
			}
			format := s.String("format")
			if format == "" {
				format = "kasteren"
				if strings.EqualFold(filepath.Ext(file), ".csv") {
					format = "csv"
				}
			}
			tick := s.Duration("tick")
			if tick <= 0 || tick > time.Hour {
				return fmt.Errorf("--tick %s: want a duration in (0, 1h]", tick)
			}
			f, err := os.Open(file)
			if err != nil {
				return fmt.Errorf("--eval: %w", err)
			}
			defer f.Close()
			var recs []alerting.ActivityRecord
			switch format {
			case "kasteren":
				recs, err = alerting.ParseKasteren(f, loc)
			case "csv":
				var kinds map[string]string
				kinds, err = kindMap(s)
				if err == nil {
					recs, err = alerting.ParseActivityCSV(f, loc, kinds)
				}
			default:
				return fmt.Errorf("--format %q: want kasteren or csv", format)
			}
			if err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
			eps := alerting.ReplayAbsence(recs, alerting.DefaultAbsence, loc, tick)
			out := cmd.OutOrStdout()
			types := map[string]bool{}
			first, last := recs[0].At, recs[0].At
			for _, r := range recs {
				first, last = minTime(first, r.At), maxTime(last, r.At)
			}
			for _, e := range eps {
				types[e.Type] = true
				row := struct {
					Type      string  `json:"type"`
					Severity  string  `json:"severity"`
					Opened    string  `json:"opened"`
					Cleared   *string `json:"cleared"`
					Detail    string  `json:"detail"`
					ClearedBy string  `json:"cleared_by,omitempty"`
				}{Type: e.Type, Severity: e.Severity, Opened: e.Opened.In(loc).Format(time.RFC3339), Detail: e.Detail, ClearedBy: e.ClearedBy}
				if e.Cleared != nil {
					c := e.Cleared.In(loc).Format(time.RFC3339)
					row.Cleared = &c
				}
				b, err := json.Marshal(row)
				if err != nil {
					return err
				}
				if _, err := fmt.Fprintln(out, string(b)); err != nil {
					return err
				}
			}
			_, err = fmt.Fprintf(out, "%d alerts (%d types) from %d records, %s to %s\n", len(eps), len(types), len(recs),
				first.In(loc).Format(time.RFC3339), last.In(loc).Format(time.RFC3339))
			return err
		},
	}
	cmd.Flags().String("eval", "", "recorded activity log to evaluate offline (required), e.g. ../shared/data/activity-kasteren/kasterenSenseData.txt")
	cmd.Flags().String("format", "", "log format: kasteren or csv (default: csv for a .csv file, else kasteren)")
	cmd.Flags().String("tz", demoZone, "IANA time zone of the site: the rules' day window and the printed times (and the log's times when they carry no zone)")
	cmd.Flags().StringSlice("map", nil, "with --format csv: sensor=kind pairs (device kinds, e.g. contact_sensor, motion_sensor, bed_sensor, other), e.g. front=contact_sensor,hall=motion_sensor")
	cmd.Flags().String("map-file", "", "with --format csv: file of sensor=kind lines (# comments)")
	cmd.Flags().Duration("tick", alerting.DefaultReplayTick, "how often the replay clock checks the absence timers, in the log's time")
	return cmd
}

// kindMap reads --map and --map-file.
func kindMap(s *settings) (map[string]string, error) {
	text := strings.Join(s.v.GetStringSlice("map"), "\n")
	if p := s.String("map-file"); p != "" {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("--map-file: %w", err)
		}
		text += "\n" + string(b)
	}
	m, err := alerting.ParseKindMap(text)
	if err != nil {
		return nil, err
	}
	if len(m) == 0 {
		return nil, errors.New("a csv log needs the kind of each sensor: --map sensor=kind or --map-file FILE")
	}
	return m, nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
