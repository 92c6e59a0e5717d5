package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/eldercare-iot/eldercare/device"
	firmwaresim "github.com/eldercare-iot/eldercare/firmware-sim"
)

// newSimCmd is the firmware simulator: "sim --demo" runs the demo care
// station; the subcommands run one simulated device each.
func newSimCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Simulate devices: replay real recordings as vitals monitors and fall detectors, bed sensors, SOS buttons, meal terminals",
		Long: `sim runs simulated devices, each its own MQTT client (QoS 1, retained online
status, offline last will).

  eldercare sim --demo                 the demo care station: 6 beds, 17 devices
  eldercare sim vitals --file F --device ID
  eldercare sim fall   --file F --device ID
  eldercare sim fall   --eval DIR [--resample 20]   offline evaluation, no broker
  eldercare sim bed    --device ID [--pattern in:30s,out:10s | --exit-after 2m]
  eldercare sim sos    --device ID [--presses N --interval D]
  eldercare sim meal   --device ID --card C --meal lunch --eaten 80 [--taps FILE]`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := loadSettings(cmd)
			if err != nil {
				return err
			}
			if !s.Bool("demo") {
				return errors.New("sim: give --demo or a subcommand (vitals, fall, bed, sos, meal); see eldercare sim --help")
			}
			log, err := s.logger()
			if err != nil {
				return err
			}
			if err := firmwaresim.CheckSpeed(s.Float("speed")); err != nil {
				return fmt.Errorf("--speed: %w", err)
			}
			return firmwaresim.RunDemo(cmd.Context(), firmwaresim.DemoConfig{
				MQTTURL:    s.String("mqtt"),
				Root:       s.String("root"),
				Site:       s.String("site"),
				Recordings: s.String("recordings"),
				Speed:      s.Float("speed"),
				Logger:     log,
			})
		},
	}
	pf := cmd.PersistentFlags()
	pf.String("mqtt", "tcp://127.0.0.1:1883", "MQTT broker URL: tcp://host:port, ssl://host:port or ws://host:port/path (user:password@ allowed)")
	pf.String("root", device.DefaultRoot, "first topic level of every topic ({root}/v1/{site}/{device}/{channel})")
	pf.String("site", firmwaresim.DemoSite, "site id in the topics")
	pf.Float64("speed", 1, fmt.Sprintf("replay speed as a factor of real time, in (0, %d]; e.g. 0.5, 1 or 100", firmwaresim.MaxSpeed))
	cmd.Flags().Bool("demo", false, "run the demo care station (registry: firmware-sim/demo/registry.yaml) until stopped")
	cmd.Flags().String("recordings", "", "directory of real recordings (vitals-bidmc/, falls-weda/) for --demo; default $ELDERCARE_REALDATA, else ../shared/data next to the repository; synthetic data when absent")
	cmd.AddCommand(newSimVitalsCmd(), newSimFallCmd(), newSimBedCmd(), newSimSOSCmd(), newSimMealCmd())
	cmd.AddCommand(newSimZigbeeCmd(), newSimKitCmd())
	cmd.AddCommand(newSimModbusCmd())
	cmd.AddCommand(newSimActivityCmd())
	return cmd
}

// deviceFlags adds the flags every single-device subcommand has.
func deviceFlags(cmd *cobra.Command, prefix string) {
	f := cmd.Flags()
	f.String("device", "", "device id (required): 1-64 characters of [A-Za-z0-9_.-], e.g. "+prefix+"-101")
	f.String("on-end", "clean", "how the run ends: clean (retained offline/shutdown, then DISCONNECT; no offline alert), silent (stop publishing, keep the connection until killed; offline alert after the platform's timeout) or drop (close the connection without DISCONNECT; the broker publishes the last will)")
	f.Uint32("boot", 0, "boot counter sent in every payload (default 0 = the current Unix time in seconds, so a restart always has a higher boot)")
	f.Duration("publish-timeout", firmwaresim.DefaultPublishTimeout, "longest wait for the broker to acknowledge a connect or publish")
}

// deviceConfig reads the common device flags.
func deviceConfig(s *settings) (firmwaresim.DeviceConfig, error) {
	log, err := s.logger()
	if err != nil {
		return firmwaresim.DeviceConfig{}, err
	}
	mode, err := firmwaresim.ParseOnEnd(s.String("on-end"))
	if err != nil {
		return firmwaresim.DeviceConfig{}, fmt.Errorf("--%w", err)
	}
	if s.String("device") == "" {
		return firmwaresim.DeviceConfig{}, errors.New("--device is required")
	}
	return firmwaresim.DeviceConfig{
		MQTTURL:        s.String("mqtt"),
		Root:           s.String("root"),
		Site:           s.String("site"),
		Device:         s.String("device"),
		Boot:           s.v.GetUint32("boot"),
		OnEnd:          mode,
		PublishTimeout: s.Duration("publish-timeout"),
		Logger:         log,
	}, nil
}

// speed reads and checks --speed.
func speed(s *settings) (float64, error) {
	v := s.Float("speed")
	if err := firmwaresim.CheckSpeed(v); err != nil {
		return 0, fmt.Errorf("--speed: %w", err)
	}
	return v, nil
}

// recordingFile checks that --file names a readable file.
func recordingFile(s *settings) (string, error) {
	f := s.String("file")
	if f == "" {
		return "", errors.New("--file is required")
	}
	fi, err := os.Stat(f)
	if err != nil {
		return "", fmt.Errorf("--file %s: %w", f, err)
	}
	if fi.IsDir() {
		return "", fmt.Errorf("--file %s is a directory, want a recording file", f)
	}
	return f, nil
}

// simRun is the RunE of a single-device subcommand.
func simRun(run func(ctx context.Context, s *settings, dc firmwaresim.DeviceConfig) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, _ []string) error {
		s, err := loadSettings(cmd)
		if err != nil {
			return err
		}
		dc, err := deviceConfig(s)
		if err != nil {
			return err
		}
		return run(cmd.Context(), s, dc)
	}
}

func newSimVitalsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "vitals",
		Short: "Replay a BIDMC numerics file as a vitals monitor (hr_bpm, pulse_bpm, resp_per_min, spo2_pct)",
		Long: `vitals replays a file in the BIDMC format (header "Time [s], HR, PULSE, RESP,
SpO2", one row per second, NaN = missing) as one reading per row. The last
row is stamped at the moment the replay ends; device-time spacing stays real
at any --speed, so a replay at 100x looks to the platform like the real thing.`,
		Args: cobra.NoArgs,
		RunE: simRun(func(ctx context.Context, s *settings, dc firmwaresim.DeviceConfig) error {
			file, err := recordingFile(s)
			if err != nil {
				return err
			}
			sp, err := speed(s)
			if err != nil {
				return err
			}
			return firmwaresim.RunVitals(ctx, firmwaresim.VitalsConfig{DeviceConfig: dc, File: file, Speed: sp, Loop: s.Bool("loop")})
		}),
	}
	deviceFlags(cmd, "vm")
	cmd.Flags().String("file", "", "BIDMC numerics CSV to replay (required), e.g. ../shared/data/vitals-bidmc/bidmc_01_Numerics.csv")
	cmd.Flags().Bool("loop", false, "replay the file again and again until stopped")
	return cmd
}

func newSimFallCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fall",
		Short: "Replay a WEDA-FALL wrist accelerometer recording through the fall detector; publish fall events (or --eval a directory offline)",
		Long: `fall replays a wrist accelerometer recording (*_accel.csv: time in s, x, y, z
in m/s^2; a recording in g is converted, one in neither unit refused) through
the product's fall detector (device/fall, the same the gateway's accel source
runs) and publishes a fall event per detection.

With --eval DIR it connects to no broker: it replays every *_accel.csv under
DIR offline and prints one JSON object per trial, then the line
"falls D/N detected, activities with a false fall F/M". A trial whose folder
starts with F, or whose file name contains _Fall_, is a fall; every other is
an activity. With DIR/fall_timestamps.csv a fall counts only when detected in
its window or decided within 3 s of its end. It exits non-zero only when DIR
cannot be read. See docs/fall-detection.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if dir, _ := cmd.Flags().GetString("eval"); dir != "" {
				hz, _ := cmd.Flags().GetFloat64("resample")
				if hz != 0 && (hz < 1 || hz > 1000) {
					return fmt.Errorf("--resample %v: want 0 (off) or a rate in [1, 1000] Hz", hz)
				}
				sum, err := firmwaresim.EvalFalls(dir, hz, cmd.OutOrStdout())
				if err != nil {
					return fmt.Errorf("--eval: %w", err)
				}
				_, err = fmt.Fprintln(cmd.OutOrStdout(), sum.String())
				return err
			}
			return simRun(func(ctx context.Context, s *settings, dc firmwaresim.DeviceConfig) error {
				file, err := recordingFile(s)
				if err != nil {
					return err
				}
				sp, err := speed(s)
				if err != nil {
					return err
				}
				return firmwaresim.RunFall(ctx, firmwaresim.FallConfig{DeviceConfig: dc, File: file, Speed: sp, Loop: s.Bool("loop"), BatteryEvery: s.Duration("battery-every")})
			})(cmd, args)
		},
	}
	deviceFlags(cmd, "fd")
	cmd.Flags().String("file", "", "WEDA-FALL accelerometer CSV (*_accel.csv) to replay (required unless --eval), e.g. ../shared/data/falls-weda/F01/U01_R01_accel.csv")
	cmd.Flags().Bool("loop", false, "replay the file again and again until stopped")
	cmd.Flags().Duration("battery-every", time.Minute, "device time between battery_pct readings (negative: none)")
	cmd.Flags().String("eval", "", "evaluate offline (no broker): replay every *_accel.csv under this directory, print one JSON line per trial and a summary, e.g. ../shared/data/falls-weda-50hz")
	cmd.Flags().Float64("resample", 0, "with --eval: resample every trial to this rate in Hz first (e.g. 20, a slower wrist sensor); 0 = as recorded")
	return cmd
}

func newSimBedCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bed",
		Short: "Simulate a bed sensor: bed_exit / bed_entry events and in_bed (0/1) readings",
		Args:  cobra.NoArgs,
		RunE: simRun(func(ctx context.Context, s *settings, dc firmwaresim.DeviceConfig) error {
			sp, err := speed(s)
			if err != nil {
				return err
			}
			pattern := s.String("pattern")
			if d := s.Duration("exit-after"); d > 0 {
				pattern = fmt.Sprintf("in:%s,out:0", d)
			}
			phases, err := firmwaresim.ParseBedPattern(pattern)
			if err != nil {
				return fmt.Errorf("--pattern: %w", err)
			}
			return firmwaresim.RunBed(ctx, firmwaresim.BedConfig{DeviceConfig: dc, Pattern: phases, Loop: s.Bool("loop"), Interval: s.Duration("interval"), Speed: sp})
		}),
	}
	deviceFlags(cmd, "bs")
	cmd.Flags().String("pattern", "in:30s,out:10s", "phases in:<duration> / out:<duration>, comma-separated; an exit publishes bed_exit, a return bed_entry; duration 0 (last phase only) holds until stopped")
	cmd.Flags().Duration("exit-after", 0, "leave the bed after D and stay out until stopped; overrides --pattern (same as --pattern in:<D>,out:0; 0: use --pattern)")
	cmd.Flags().Bool("loop", false, "repeat the pattern until stopped")
	cmd.Flags().Duration("interval", 30*time.Second, "time between in_bed readings")
	return cmd
}

func newSimSOSCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sos",
		Short: "Simulate an SOS button: publish sos events",
		Args:  cobra.NoArgs,
		RunE: simRun(func(ctx context.Context, s *settings, dc firmwaresim.DeviceConfig) error {
			if s.Int("presses") < 1 {
				return fmt.Errorf("--presses %d: want 1 or more", s.Int("presses"))
			}
			return firmwaresim.RunSOS(ctx, firmwaresim.SOSConfig{DeviceConfig: dc, Presses: s.Int("presses"), Interval: s.Duration("interval"), AwaitHelp: s.Duration("await-help")})
		}),
	}
	deviceFlags(cmd, "sos")
	cmd.Flags().Int("presses", 1, "number of presses")
	cmd.Flags().Duration("interval", 30*time.Second, "time between presses")
	cmd.Flags().Duration("await-help", 0, "after the presses, keep running until the platform's call_acknowledged command (\"help is coming\", logged) or this long; exits non-zero when no acknowledgement came (default 0: end after the presses)")
	return cmd
}

func newSimMealCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "meal",
		Short: "Simulate a smart-meal terminal: one meal event (card, meal, eaten_pct) per card tap",
		Args:  cobra.NoArgs,
		RunE: simRun(func(ctx context.Context, s *settings, dc firmwaresim.DeviceConfig) error {
			var taps []firmwaresim.MealTap
			if f := s.String("taps"); f != "" {
				var err error
				if taps, err = firmwaresim.ReadMealTapsFile(f); err != nil {
					return fmt.Errorf("--taps: %w", err)
				}
			}
			if card := s.String("card"); card != "" {
				t := firmwaresim.MealTap{Card: card, Meal: s.String("meal"), EatenPct: s.Float("eaten")}
				if err := t.Validate(); err != nil {
					return fmt.Errorf("--card/--meal/--eaten: %w", err)
				}
				taps = append(taps, t)
			}
			if len(taps) == 0 {
				return errors.New("give --card (with --meal and --eaten) or --taps FILE")
			}
			return firmwaresim.RunMeal(ctx, firmwaresim.MealConfig{DeviceConfig: dc, Taps: taps})
		}),
	}
	deviceFlags(cmd, "mt")
	cmd.Flags().String("card", "", "meal card id tapped, e.g. 04A1B2C1")
	cmd.Flags().String("meal", "lunch", "meal: breakfast, lunch, dinner or snack")
	cmd.Flags().Float64("eaten", 80, "share of the portion eaten, in % [0, 100]")
	cmd.Flags().String("taps", "", "CSV file of taps, one per line: card,meal,eaten_pct[,after] (after: wait before the tap, e.g. 20s)")
	return cmd
}

// newSimKitCmd simulates one device of the home safety kit, medication,
// location or visits over plain MQTT (firmwaresim.RunKit).
func newSimKitCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "kit",
		Short: "Simulate a safety-kit, medication, location or visit device over plain MQTT (smoke_alarm, gas_alarm, valve, pill_box, locator, ...)",
		Long: `Simulate one device of kind --kind with its readings and events (docs/protocol.md), e.g.

  eldercare sim kit --kind smoke_alarm --device smoke-1 --alarm-after 2m --alarm-for 1m
  eldercare sim kit --kind valve --device valve-1          # answers valve_close/valve_open commands
  eldercare sim kit --kind pill_box --device pill-1 --slots 08:00,20:00 --alarm-after 10m
  eldercare sim kit --kind locator --device band-1 --center 31.2304,121.4737 --radius 80 --wander-after 20m`,
		Args: cobra.NoArgs,
		RunE: simRun(func(ctx context.Context, s *settings, dc firmwaresim.DeviceConfig) error {
			kc := firmwaresim.KitConfig{DeviceConfig: dc, Kind: device.Kind(s.String("kind")), Interval: s.Duration("interval"),
				AlarmAfter: s.Duration("alarm-after"), AlarmFor: s.Duration("alarm-for"), Location: s.String("location"),
				Slots: s.v.GetStringSlice("slots"), Card: s.String("card"), RadiusM: s.Float("radius"), WanderAfter: s.Duration("wander-after")}
			if c := s.String("center"); c != "" {
				if _, err := fmt.Sscanf(c, "%g,%g", &kc.Center[0], &kc.Center[1]); err != nil {
					return fmt.Errorf("--center %q: want lat,lon in degrees", c)
				}
			}
			return firmwaresim.RunKit(ctx, kc)
		}),
	}
	deviceFlags(cmd, "kit")
	f := cmd.Flags()
	f.String("kind", "smoke_alarm", "device kind: smoke_alarm, gas_alarm, water_leak_sensor, contact_sensor, motion_sensor, call_button, smart_mattress, siren, valve, pill_box, locator, card_reader, env_sensor (a fridge)")
	f.Duration("interval", time.Minute, "reading period")
	f.Duration("alarm-after", 0, "alarm kinds: raise the alarm this long after start (0 = never); contact, motion, call button, pill box, card reader: time between events")
	f.Duration("alarm-for", time.Minute, "alarm kinds and the fridge: how long the alarm (or the warm spell) lasts")
	f.String("location", "", "location attribute of a call button's sos or a contact's events (bathroom, front_door)")
	f.StringSlice("slots", []string{"08:00", "20:00"}, "pill box: schedule slots (HH:MM, site's zone) taken in turn")
	f.String("card", "", "card reader: the card of the check-ins")
	f.String("center", "31.2304,121.4737", "locator: center of its walk, lat,lon in degrees")
	f.Float64("radius", 80, "locator: radius of its walk, m")
	f.Duration("wander-after", 0, "locator: walk away after this long (0 = never)")
	return cmd
}
