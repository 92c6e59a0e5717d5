package firmwaresim

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
	_ "time/tzdata" // the demo site's time zone must load on hosts without zoneinfo

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/device/fall"
	"github.com/eldercare-iot/eldercare/internal/realdata"
)

// DemoRegistryYAML is the registry of the demo care station in the format
// of package device/registry: site "demo-station" (Asia/Shanghai) with six
// beds in rooms r101-r103, residents res-001..res-006 with meal cards
// 04A1B2C1..04A1B2C6, a vitals monitor (vm-<room>-<n>) and a bed sensor
// (bs-<room>-<n>) per bed, wrist fall detectors fd-001, fd-003 and fd-005,
// the SOS button sos-101-2 and the canteen meal terminal mt-canteen. Every
// device but the shared meal terminal is bound to its resident from
// 2026-01-01T00:00:00Z.
//
//go:embed demo/registry.yaml
var DemoRegistryYAML []byte

// DemoSite is the site id of the demo registry.
const DemoSite = "demo-station"

// DemoTimeZone is the IANA time zone of the demo site; meal times are local
// to it.
const DemoTimeZone = "Asia/Shanghai"

// demoBed is one bed of the demo and what is simulated for it.
type demoBed struct {
	resident string
	card     string
	vitals   string // vitals monitor id
	bed      string // bed sensor id
	bidmc    string // recording, under vitals-bidmc/
	why      string // what the recording shows
	appetite float64
}

var demoBeds = []demoBed{
	{"res-001", "04A1B2C1", "vm-101-1", "bs-101-1", "bidmc_01_Numerics.csv", "normal", 85},
	{"res-002", "04A1B2C2", "vm-101-2", "bs-101-2", "bidmc_10_Numerics.csv", "normal", 90},
	{"res-003", "04A1B2C3", "vm-102-1", "bs-102-1", "bidmc_32_Numerics.csv", "SpO2 below 90 %", 40},
	{"res-004", "04A1B2C4", "vm-102-2", "bs-102-2", "bidmc_25_Numerics.csv", "heart rate above 120 bpm", 75},
	{"res-005", "04A1B2C5", "vm-103-1", "bs-103-1", "bidmc_05_Numerics.csv", "respiration down to 3/min", 80},
	{"res-006", "04A1B2C6", "vm-103-2", "bs-103-2", "bidmc_13_Numerics.csv", "sensor dropout", 95},
}

// demoFallDetectors are the wrist devices; each cycles through the trials
// starting at a different one.
var demoFallDetectors = []string{"fd-001", "fd-003", "fd-005"}

const (
	demoSOS  = "sos-101-2"
	demoMeal = "mt-canteen"
)

// DemoHome is the site id of the demo's home (a home care bed with the
// home safety kit).
const DemoHome = "demo-home-li"

// demoKit are the safety-kit, medication, location and visit devices of the
// demo, with their site and what they do (times at speed 1).
var demoKit = []struct {
	site string
	cfg  KitConfig
}{
	{DemoSite, KitConfig{Kind: device.CallButton, Interval: 10 * time.Minute, AlarmAfter: 50 * time.Minute, Location: "bathroom",
		DeviceConfig: DeviceConfig{Device: "call-bath-101"}}},
	{DemoSite, KitConfig{Kind: device.EnvSensor, Interval: time.Minute, AlarmAfter: 20 * time.Minute, AlarmFor: 40 * time.Minute,
		DeviceConfig: DeviceConfig{Device: "fridge-kitchen"}}},
	{DemoHome, KitConfig{Kind: device.SmokeAlarm, Interval: 10 * time.Minute, DeviceConfig: DeviceConfig{Device: "smoke-home-li"}}},
	{DemoHome, KitConfig{Kind: device.GasAlarm, Interval: 5 * time.Minute, AlarmAfter: 15 * time.Minute, AlarmFor: 5 * time.Minute,
		DeviceConfig: DeviceConfig{Device: "gas-home-li"}}},
	{DemoHome, KitConfig{Kind: device.Valve, Interval: 5 * time.Minute, DeviceConfig: DeviceConfig{Device: "valve-home-li"}}},
	{DemoHome, KitConfig{Kind: device.ContactSensor, Interval: time.Minute, AlarmAfter: 25 * time.Minute, Location: "front_door",
		DeviceConfig: DeviceConfig{Device: "door-home-li"}}},
	{DemoHome, KitConfig{Kind: device.PillBox, Interval: 10 * time.Minute, AlarmAfter: 12 * time.Hour, Slots: []string{"08:00", "20:00"},
		DeviceConfig: DeviceConfig{Device: "pill-home-li"}}},
	{DemoHome, KitConfig{Kind: device.Locator, Interval: time.Minute, Center: [2]float64{31.2304, 121.4737}, RadiusM: 120,
		WanderAfter: 45 * time.Minute, DeviceConfig: DeviceConfig{Device: "band-home-li"}}},
	{DemoHome, KitConfig{Kind: device.CardReader, Interval: time.Hour, AlarmAfter: 2 * time.Hour, Card: "04A1B2C9",
		DeviceConfig: DeviceConfig{Device: "cr-home-li"}}},
}

// demoTrials are the WEDA-FALL folders replayed on the wrist devices, falls
// (F) and daily activities (D) interleaved.
var demoTrials = []string{"D01", "F01", "D04", "F02", "D09", "F03"}

// DemoConfig configures RunDemo.
type DemoConfig struct {
	// MQTTURL is the broker (see DeviceConfig.MQTTURL).
	MQTTURL string
	// Root is the topic root; "" is device.DefaultRoot.
	Root string
	// Site is the site id in the topics; "" is DemoSite.
	Site string
	// Recordings is the directory of real recordings (vitals-bidmc/,
	// falls-weda/); "" means realdata.Find (env ELDERCARE_REALDATA, else
	// ../shared/data next to the repository).
	Recordings string
	// Speed is the replay speed, a factor of real time in (0, MaxSpeed];
	// 0 means 1 (the platform's rules run on device time, so 1 is
	// realistic). It also shortens the gaps between generated events.
	Speed float64
	// Logger receives progress; nil is slog.Default().
	Logger *slog.Logger
	// Now is the wall clock; nil is time.Now.
	Now func() time.Time
	// HomeBehindGateway leaves out the demo home's devices (DemoHomeKit):
	// the caller runs them behind a simulated gateway.
	HomeBehindGateway bool
}

// DemoHomeKit returns the simulations of the demo home's devices (site
// DemoHome: smoke and gas alarms, gas valve, front-door contact, pill box,
// wristband, visit card reader) with their intervals and alarm times
// scaled by speed (0 = 1), for a caller that runs them behind a gateway
// (RunKitOn).
func DemoHomeKit(speed float64) []KitConfig {
	if speed == 0 {
		speed = 1
	}
	var out []KitConfig
	for _, k := range demoKit {
		if k.site != DemoHome {
			continue
		}
		kc := k.cfg
		kc.Site = DemoHome
		kc.Interval = scale(kc.Interval, speed)
		kc.AlarmAfter, kc.AlarmFor, kc.WanderAfter = scale(kc.AlarmAfter, speed), scale(kc.AlarmFor, speed), scale(kc.WanderAfter, speed)
		out = append(out, kc)
	}
	return out
}

// Validate reports every problem of c.
func (c DemoConfig) Validate() error {
	var errs []error
	if err := (DeviceConfig{MQTTURL: c.MQTTURL, Root: c.Root, Site: cmpOr(c.Site, DemoSite), Device: "demo"}).Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Speed != 0 {
		errs = append(errs, CheckSpeed(c.Speed))
	}
	return errors.Join(errs...)
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// RunDemo runs the demo care station (see DemoRegistryYAML) until ctx is
// cancelled, then shuts every device down cleanly (retained
// {offline, shutdown}) and returns nil. Each device is its own MQTT client.
//
//   - Vitals monitors loop over BIDMC recordings: bidmc_01 and bidmc_10
//     (normal), bidmc_32 (SpO2 < 90 %), bidmc_25 (HR > 120 bpm), bidmc_05
//     (respiration down to 3/min) and bidmc_13 (dropout). Without
//     recordings it logs a warning and generates plausible vitals (one
//     resident with low SpO2).
//   - Wrist fall detectors cycle through WEDA-FALL trials (D01, F01, D04,
//     F02, D09, F03) with a few minutes between trials, through the real
//     detector; without recordings they replay a synthetic fall trace.
//   - Bed sensors report in_bed every minute and leave the bed now and then.
//   - The SOS button is pressed now and then.
//   - The meal terminal taps every resident's card at 07:30, 11:30 and
//     17:30 site time (Asia/Shanghai), and once right after the start for
//     the current meal period.
//
// It returns an error when a device cannot connect at the start.
func RunDemo(ctx context.Context, cfg DemoConfig) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	if cfg.Speed == 0 {
		cfg.Speed = 1
	}
	cfg.Site = cmpOr(cfg.Site, DemoSite)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	loc, err := time.LoadLocation(DemoTimeZone)
	if err != nil {
		return fmt.Errorf("demo: time zone %s: %w", DemoTimeZone, err)
	}

	dir := cfg.Recordings
	if dir == "" {
		if d, ok := realdata.Find(); ok || d != "" {
			dir = d
		}
	}
	vitals, synthetic := demoVitals(dir, log)
	trials := demoFallTrials(dir, synthetic, log)

	dc := func(id string) DeviceConfig {
		return DeviceConfig{MQTTURL: cfg.MQTTURL, Root: cfg.Root, Site: cfg.Site, Device: id, OnEnd: EndClean, Logger: log, Now: cfg.Now}.withDefaults()
	}
	var conns []*Conn
	connect := func(id string, kind device.Kind) (*Conn, error) {
		c, err := Connect(ctx, dc(id), kind)
		if err != nil {
			return nil, err
		}
		conns = append(conns, c)
		return c, nil
	}
	endAll := func() error {
		var wg sync.WaitGroup
		errs := make([]error, len(conns))
		for i, c := range conns {
			wg.Go(func() { errs[i] = c.End(ctx, EndClean) })
		}
		wg.Wait()
		return errors.Join(errs...)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	start := func(c *Conn, what string, run func(context.Context, *Conn) error) {
		wg.Go(func() { keepRunning(ctx, c, what, run) })
	}
	fail := func(err error) error {
		cancel()
		wg.Wait()
		return errors.Join(fmt.Errorf("demo: %w", err), endAll())
	}

	for i, b := range demoBeds {
		c, err := connect(b.vitals, device.VitalsMonitor)
		if err != nil {
			return fail(err)
		}
		rows := vitals[i]
		start(c, "vitals replay", func(ctx context.Context, c *Conn) error {
			_, err := replayVitals(ctx, c, rows, cfg.Speed, true, cfg.Now)
			return err
		})
	}
	for i, id := range demoFallDetectors {
		c, err := connect(id, device.FallDetector)
		if err != nil {
			return fail(err)
		}
		offset := i * 2
		b := newBattery(0)
		start(c, "fall trials", func(ctx context.Context, c *Conn) error {
			return demoWrist(ctx, c, trials, offset, cfg.Speed, cfg.Now, b, time.Duration(i)*40*time.Second)
		})
	}
	for i, b := range demoBeds {
		c, err := connect(b.bed, device.BedSensor)
		if err != nil {
			return fail(err)
		}
		rng := rand.New(rand.NewPCG(uint64(i)+1, uint64(cfg.Now().UnixNano())))
		st := &bedState{}
		first := time.Duration(3+7*i) * time.Minute
		start(c, "bed pattern", func(ctx context.Context, c *Conn) error {
			for {
				in := first
				if st.known {
					in = time.Duration(20+rng.IntN(40)) * time.Minute
				}
				out := time.Duration(2+rng.IntN(6)) * time.Minute
				if err := runBedPattern(ctx, c, st, []BedPhase{{true, in}, {false, out}}, false, time.Minute, cfg.Speed, cfg.Now); err != nil {
					return err
				}
			}
		})
	}
	sos, err := connect(demoSOS, device.SOSButton)
	if err != nil {
		return fail(err)
	}
	sosRng := rand.New(rand.NewPCG(7, uint64(cfg.Now().UnixNano())))
	start(sos, "sos presses", func(ctx context.Context, c *Conn) error {
		wait := 10 * time.Minute
		for {
			if err := sleep(ctx, scale(wait, cfg.Speed)); err != nil {
				return err
			}
			if err := c.PublishEvent(ctx, cfg.Now(), device.EventSOS, nil); err != nil {
				return err
			}
			wait = time.Duration(45+rng(sosRng, 45)) * time.Minute
		}
	})
	start(sos, "sos battery", heartbeat(cfg.Speed, cfg.Now))
	meal, err := connect(demoMeal, device.MealTerminal)
	if err != nil {
		return fail(err)
	}
	start(meal, "meal terminal battery", heartbeat(cfg.Speed, cfg.Now))
	mealRng := rand.New(rand.NewPCG(11, uint64(cfg.Now().UnixNano())))
	first := true
	start(meal, "meal rounds", func(ctx context.Context, c *Conn) error {
		if first {
			first = false
			if err := sleep(ctx, 5*time.Second); err != nil {
				return err
			}
			if err := mealRound(ctx, c, MealPeriod(cfg.Now().In(loc)), cfg.Speed, cfg.Now, mealRng); err != nil {
				return err
			}
		}
		for {
			at, name := NextMeal(cfg.Now(), loc)
			log.Info("demo: next meal round", "meal", name, "at", at.In(loc).Format("2006-01-02 15:04 MST"))
			if err := sleepUntil(ctx, cfg.Now, at); err != nil {
				return err
			}
			if err := mealRound(ctx, c, name, cfg.Speed, cfg.Now, mealRng); err != nil {
				return err
			}
		}
	})

	for _, k := range demoKit {
		if k.site == DemoHome && cfg.HomeBehindGateway {
			continue // run behind the caller's gateway (DemoHomeKit)
		}
		kc := k.cfg
		site := cfg.Site
		if k.site == DemoHome {
			site = DemoHome
		}
		kc.DeviceConfig = DeviceConfig{MQTTURL: cfg.MQTTURL, Root: cfg.Root, Site: site, Device: kc.Device, OnEnd: EndClean, Logger: log, Now: cfg.Now}.withDefaults()
		kc.Interval = scale(kc.Interval, cfg.Speed)
		kc.AlarmAfter, kc.AlarmFor, kc.WanderAfter = scale(kc.AlarmAfter, cfg.Speed), scale(kc.AlarmFor, cfg.Speed), scale(kc.WanderAfter, cfg.Speed)
		c, err := Connect(ctx, kc.DeviceConfig, kc.Kind)
		if err != nil {
			return fail(err)
		}
		conns = append(conns, c)
		start(c, string(kc.Kind), func(ctx context.Context, c *Conn) error { return kitLoop(ctx, c, kc) })
	}

	log.Info("demo running", "site", cfg.Site, "home", DemoHome, "devices", len(conns), "speed", cfg.Speed, "recordings", dir, "synthetic_vitals", synthetic)
	<-ctx.Done()
	wg.Wait()
	return endAll()
}

func rng(r *rand.Rand, n int) int { return r.IntN(n) }

// heartbeat reports battery_pct every minute (scaled by speed), as real
// event-only devices (SOS buttons, terminals) report their battery, so the
// platform can tell a quiet device from a dead one.
func heartbeat(speed float64, now func() time.Time) func(context.Context, *Conn) error {
	return func(ctx context.Context, c *Conn) error {
		b := newBattery(time.Minute)
		for {
			if err := c.PublishReading(ctx, now(), map[string]float64{"battery_pct": math.Round(b.pct*10) / 10}); err != nil {
				return err
			}
			b.pct = max(5, b.pct-0.01)
			if err := sleep(ctx, scale(b.every, speed)); err != nil {
				return err
			}
		}
	}
}

// keepRunning runs run until ctx is done; a failure (a publish timed out,
// the broker went away) is logged and run is started again after a pause,
// since a demo must outlive a broker restart.
func keepRunning(ctx context.Context, c *Conn, what string, run func(context.Context, *Conn) error) {
	for ctx.Err() == nil {
		err := run(ctx, c)
		if ctx.Err() != nil {
			return
		}
		c.log.Warn("demo: "+what+" failed; retrying in 5 s", "err", err)
		if sleep(ctx, 5*time.Second) != nil {
			return
		}
	}
}

// demoVitals loads the demo's BIDMC recordings from dir, one per bed, or
// generates synthetic vitals where they are missing. synthetic reports that
// the recordings directory had no BIDMC data at all.
func demoVitals(dir string, log *slog.Logger) (rows [][]VitalsRow, synthetic bool) {
	rows = make([][]VitalsRow, len(demoBeds))
	bidmc := filepath.Join(dir, "vitals-bidmc")
	if fi, err := os.Stat(bidmc); dir == "" || err != nil || !fi.IsDir() {
		log.Warn(fmt.Sprintf("no recordings found in %s (set --recordings or ELDERCARE_REALDATA; download BIDMC from https://physionet.org/content/bidmc/1.0.0/): generating synthetic vitals", cmpOr(dir, "../shared/data")))
		for i := range demoBeds {
			rows[i] = SyntheticVitals(int64(i+1), 600, i == 2)
		}
		return rows, true
	}
	for i, b := range demoBeds {
		r, err := ReadBIDMCFile(filepath.Join(bidmc, b.bidmc))
		if err == nil && len(r) > 0 {
			rows[i] = r
			log.Info("demo: vitals recording", "device", b.vitals, "resident", b.resident, "file", b.bidmc, "shows", b.why)
			continue
		}
		log.Warn("demo: vitals recording unusable; generating synthetic vitals for this bed", "device", b.vitals, "err", err)
		rows[i] = SyntheticVitals(int64(i+1), 600, i == 2)
	}
	return rows, false
}

type demoTrial struct {
	name    string
	samples []fall.Sample
}

// demoFallTrials loads one accelerometer recording per WEDA-FALL folder of
// demoTrials, or synthetic traces when there are none.
func demoFallTrials(dir string, quiet bool, log *slog.Logger) []demoTrial {
	var out []demoTrial
	if dir != "" {
		for _, folder := range demoTrials {
			files, _ := filepath.Glob(filepath.Join(dir, "falls-weda", folder, "*_accel.csv"))
			sort.Strings(files)
			for _, f := range files {
				if strings.HasSuffix(f, "_vertical_accel.csv") {
					continue // derived, gravity-aligned copy, not the device axes
				}
				s, err := ReadAccelFile(f)
				if err != nil {
					log.Warn("demo: skipping accelerometer recording", "err", err)
					continue
				}
				out = append(out, demoTrial{folder + "/" + strings.TrimSuffix(filepath.Base(f), "_accel.csv"), s})
				break
			}
		}
	}
	if len(out) == 0 {
		if !quiet {
			log.Warn(fmt.Sprintf("no WEDA-FALL recordings found in %s: replaying a synthetic fall trace on the wrist devices", filepath.Join(cmpOr(dir, "../shared/data"), "falls-weda")))
		}
		out = []demoTrial{{"synthetic-walk", SyntheticWalkTrace(10 * time.Second)}, {"synthetic-fall", SyntheticFallTrace()}}
	}
	return out
}

// demoWrist replays the trials on one wrist device, starting with trial
// offset, after an initial delay and with 3 minutes (device time) between
// trials, reporting battery_pct every minute.
func demoWrist(ctx context.Context, c *Conn, trials []demoTrial, offset int, speed float64, now func() time.Time, b *battery, delay time.Duration) error {
	if err := sleep(ctx, scale(delay, speed)); err != nil {
		return err
	}
	for i := offset; ; i++ {
		tr := trials[i%len(trials)]
		_, n, err := replayFall(ctx, c, tr.samples, now(), speed, now, b)
		if err != nil {
			return err
		}
		c.log.Info("demo: fall trial replayed", "trial", tr.name, "falls", n)
		for range 3 {
			if err := sleep(ctx, scale(time.Minute, speed)); err != nil {
				return err
			}
			if err := c.PublishReading(ctx, now(), map[string]float64{"battery_pct": math.Round(b.pct*10) / 10}); err != nil {
				return err
			}
			b.pct = max(5, b.pct-0.1)
		}
	}
}

// MealPeriod names the meal of the local time t: breakfast 05:00-09:59,
// lunch 10:00-14:59, dinner 15:00-20:59, snack otherwise.
func MealPeriod(t time.Time) string {
	switch h := t.Hour(); {
	case h >= 5 && h < 10:
		return "breakfast"
	case h >= 10 && h < 15:
		return "lunch"
	case h >= 15 && h < 21:
		return "dinner"
	}
	return "snack"
}

// NextMeal returns the next meal time strictly after now among breakfast
// 07:30, lunch 11:30 and dinner 17:30 local time in loc, and its name.
func NextMeal(now time.Time, loc *time.Location) (time.Time, string) {
	l := now.In(loc)
	for day := 0; day < 2; day++ {
		for _, m := range []struct {
			h, min int
			name   string
		}{{7, 30, "breakfast"}, {11, 30, "lunch"}, {17, 30, "dinner"}} {
			at := time.Date(l.Year(), l.Month(), l.Day()+day, m.h, m.min, 0, 0, loc)
			if at.After(now) {
				return at, m.name
			}
		}
	}
	panic("unreachable: a meal is always within two days")
}

// mealRound taps every resident's card once, 20-90 s apart (divided by
// speed), with an eaten share drawn around the resident's appetite.
func mealRound(ctx context.Context, pub eventPublisher, meal string, speed float64, now func() time.Time, r *rand.Rand) error {
	for i, b := range demoBeds {
		if i > 0 {
			if err := sleep(ctx, scale(time.Duration(20+r.IntN(70))*time.Second, speed)); err != nil {
				return err
			}
		}
		pct := math.Round((b.appetite+r.NormFloat64()*10)/5) * 5
		pct = min(100, max(0, pct))
		if err := publishMeal(ctx, pub, now(), MealTap{Card: b.card, Meal: meal, EatenPct: pct}); err != nil {
			return err
		}
	}
	return nil
}

// SyntheticVitals generates n seconds of plausible vitals at 1 Hz from a
// seeded random walk: HR 60-95 bpm, pulse within 2 bpm of HR, respiration
// 12-22 breaths/min and SpO2 94-99 %, or 85-89 % when lowSpO2.
func SyntheticVitals(seed int64, n int, lowSpO2 bool) []VitalsRow {
	r := rand.New(rand.NewPCG(uint64(seed), 0x5eed))
	hr := 65 + r.Float64()*20
	resp := 14 + r.Float64()*4
	spo2 := 96 + r.Float64()*2
	lo, hi := 94.0, 99.0
	if lowSpO2 {
		spo2, lo, hi = 87, 85, 89
	}
	rows := make([]VitalsRow, n)
	for i := range rows {
		hr = clamp(hr+r.NormFloat64()*0.8, 60, 95)
		resp = clamp(resp+r.NormFloat64()*0.3, 12, 22)
		spo2 = clamp(spo2+r.NormFloat64()*0.3, lo, hi)
		rows[i] = VitalsRow{
			T:     time.Duration(i) * time.Second,
			HR:    math.Round(hr),
			Pulse: math.Round(hr + r.NormFloat64()),
			Resp:  math.Round(resp),
			SpO2:  math.Round(spo2),
		}
	}
	return rows
}

func clamp(v, lo, hi float64) float64 { return min(hi, max(lo, v)) }

// SyntheticFallTrace returns a 50 Hz wrist accelerometer trace shaped like
// a fall of the WEDA-FALL kind: 4 s of walking with the arm hanging
// (gravity along the forearm, x, plus a 1.8 Hz swing), 0.4 s of free fall
// (|a| ~ 2 m/s^2), an impact peaking at 45 m/s^2, and 5 s lying with the
// forearm flat (gravity on z, watch face up) and small tremor. The shipped
// detector (device/fall) reports it once, about 3.7 s after the impact.
func SyntheticFallTrace() []fall.Sample {
	const dt = 20 * time.Millisecond
	var out []fall.Sample
	t := time.Duration(0)
	g := fall.StandardGravity
	for ; t < 4*time.Second; t += dt {
		ph := 2 * math.Pi * 1.8 * t.Seconds()
		out = append(out, fall.Sample{T: t, X: g + math.Sin(2*ph), Y: 3 * math.Sin(ph), Z: 1.5 * math.Cos(ph)})
	}
	add := func(d time.Duration, x, y, z float64) {
		for end := t + d; t < end; t += dt {
			out = append(out, fall.Sample{T: t, X: x, Y: y, Z: z})
		}
	}
	add(400*time.Millisecond, 1.5, 0.5, 1.0)
	add(60*time.Millisecond, 30, 10, 32)
	add(60*time.Millisecond, 15, 5, 12)
	for end := t + 5*time.Second; t < end; t += dt {
		tremor := 0.15 * math.Sin(2*math.Pi*5*t.Seconds())
		out = append(out, fall.Sample{T: t, X: 0.3 + tremor, Y: 0.4, Z: g - tremor})
	}
	return out
}

// SyntheticWalkTrace returns a 50 Hz wrist trace of walking for d: gravity
// on z plus a 1.8 Hz arm swing of 3 m/s^2; no fall.
func SyntheticWalkTrace(d time.Duration) []fall.Sample {
	const dt = 20 * time.Millisecond
	var out []fall.Sample
	for t := time.Duration(0); t < d; t += dt {
		ph := 2 * math.Pi * 1.8 * t.Seconds()
		out = append(out, fall.Sample{T: t, X: 3 * math.Sin(ph), Y: 1.5 * math.Cos(ph), Z: fall.StandardGravity + math.Sin(2*ph)})
	}
	return out
}
