package firmwaresim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/eldercare-iot/eldercare/device"
)

// KitKinds are the device kinds RunKit simulates over plain MQTT.
var KitKinds = []device.Kind{device.SmokeAlarm, device.GasAlarm, device.WaterLeakSensor, device.ContactSensor,
	device.MotionSensor, device.CallButton, device.SmartMattress, device.Siren, device.Valve, device.PillBox,
	device.Locator, device.CardReader, device.EnvSensor}

// KitConfig configures one simulated device of the home safety kit,
// medication, location or visits (RunKit).
type KitConfig struct {
	DeviceConfig
	Kind device.Kind
	// Help, for a call_button (pull cord), is where its station shows
	// "help is coming" after a call_acknowledged command (nil: logged
	// only).
	Help *HelpState
	// Interval is the reading period (state, battery, position, vitals);
	// 0 means 1 min.
	Interval time.Duration
	// AlarmAfter: an alarm kind (smoke, gas, water leak) raises its alarm
	// this long after start and clears it AlarmFor later; 0: never. For a
	// contact sensor it is how long the door stays closed between
	// openings, for a motion sensor the time between motions, for a call
	// button, a pill box or a card reader the time between presses, doses
	// or check-ins.
	AlarmAfter, AlarmFor time.Duration
	// Location is the "location" attribute of a call button's sos and a
	// contact's events (bathroom, front_door).
	Location string
	// Slots are a pill box's schedule slots (HH:MM), taken in turn.
	Slots []string
	// Card is the card a card reader's check-ins carry.
	Card string
	// Center and RadiusM: a locator walks a circle of RadiusM m around
	// Center (lat, lon); with WanderAfter > 0 it then walks away, 50 m per
	// reading.
	Center      [2]float64
	RadiusM     float64
	WanderAfter time.Duration
	// FridgeTempC: an env_sensor reports appliance_temp_c around it
	// (a fridge or cold store); 0 means 4 °C. With AlarmAfter it rises
	// to 10 °C for AlarmFor (a door left open).
	FridgeTempC float64
}

// Validate reports every problem of c.
func (c KitConfig) Validate() error {
	errs := []error{c.DeviceConfig.Validate()}
	if !slices.Contains(KitKinds, c.Kind) {
		errs = append(errs, fmt.Errorf("kit: kind %q is not one of %v", c.Kind, KitKinds))
	}
	if c.Interval < 0 || c.AlarmAfter < 0 || c.AlarmFor < 0 || c.WanderAfter < 0 {
		errs = append(errs, errors.New("kit: durations must not be negative"))
	}
	if c.Kind == device.Locator && (math.Abs(c.Center[0]) > 90 || math.Abs(c.Center[1]) > 180 || c.RadiusM < 0) {
		errs = append(errs, fmt.Errorf("kit: locator center %v / radius %g m out of range", c.Center, c.RadiusM))
	}
	return errors.Join(errs...)
}

// RunKit runs one simulated device of kind cfg.Kind on its own MQTT
// connection until ctx is cancelled, with the readings and events of
// docs/protocol.md:
//
//   - smoke_alarm, gas_alarm, water_leak_sensor: the state (smoke, gas,
//     water_leak 0|1) and battery_pct every Interval; the alarm event and
//     state 1 at AlarmAfter, state 0 AlarmFor later;
//   - contact_sensor: open 0|1 with contact_open / contact_close events;
//   - motion_sensor: motion events and readings;
//   - call_button: sos events with the location attribute;
//   - smart_mattress: hr_bpm, resp_per_min and in_bed every Interval;
//   - siren, valve: the state (siren_on, valve_open) every Interval, and
//     commands on the device's cmd topic answered with an ack and the new
//     state at once (a plain MQTT valve or siren);
//   - pill_box: dose_taken events for Slots in turn;
//   - locator: lat_deg, lon_deg, accuracy_m on a circle, then wandering;
//   - card_reader: check_in events (method reader) with Card;
//   - env_sensor: appliance_temp_c of a fridge.
func RunKit(ctx context.Context, cfg KitConfig) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	cfg.DeviceConfig = cfg.DeviceConfig.withDefaults()
	if cfg.Interval == 0 {
		cfg.Interval = time.Minute
	}
	return runDevice(ctx, cfg.DeviceConfig, cfg.Kind, func(ctx context.Context, c *Conn) error {
		return kitLoop(ctx, c, cfg)
	})
}

// KitOutput is where a simulated kit device's readings and events go and
// where its commands come from: a *Conn (the device's own MQTT
// connection), or a gateway the device sits behind (the demo home,
// cmd/eldercare/demohome.go). Commands registers handle for the device's
// commands; a nil error from handle means the device took the command.
type KitOutput interface {
	PublishReading(ctx context.Context, ts time.Time, values map[string]float64) error
	PublishEvent(ctx context.Context, ts time.Time, typ device.EventType, attrs map[string]any) error
	Commands(ctx context.Context, handle func(device.Command) error) error
}

var _ KitOutput = (*Conn)(nil)

// RunKitOn runs the simulation of cfg (see RunKit) on out until ctx ends.
// cfg.Device names the device; cfg.Now defaults to time.Now; MQTT fields
// of cfg are not used.
func RunKitOn(ctx context.Context, cfg KitConfig, out KitOutput) error {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Interval == 0 {
		cfg.Interval = time.Minute
	}
	return kitLoop(ctx, out, cfg)
}

func kitLoop(ctx context.Context, c KitOutput, cfg KitConfig) error {
	now := cfg.Now
	start := now()
	bat := 96.0
	battery := func() float64 { // drains 0.01 % per reading
		bat = max(5, bat-0.01)
		return math.Round(bat*100) / 100
	}
	var on atomic.Int32 // valve_open or siren_on; written by the command handler
	if cfg.Kind == device.Valve {
		on.Store(1)
	}
	if cfg.Kind == device.CallButton {
		// A pull cord's station shows "help is coming" (assurance.go).
		log := cfg.Logger
		if log == nil {
			log = slog.Default()
		}
		if err := c.Commands(ctx, helpHandler(log, cfg.Device, cfg.Kind, cfg.Help, nil)); err != nil {
			return err
		}
	}
	stateField := map[device.Kind]string{device.Valve: "valve_open", device.Siren: "siren_on"}[cfg.Kind]
	if stateField != "" {
		states := make(chan float64, 4)
		if err := c.Commands(ctx, func(cmd device.Command) error {
			switch {
			case cfg.Kind == device.Valve && cmd.Action == device.ActionValveClose:
				states <- 0
			case cfg.Kind == device.Valve && cmd.Action == device.ActionValveOpen:
				states <- 1
			case cfg.Kind == device.Siren && cmd.Action == device.ActionSirenOn:
				states <- 1
			case cfg.Kind == device.Siren && cmd.Action == device.ActionSirenSilence:
				states <- 0
			case cmd.Action == device.ActionPing:
			default:
				return device.Refused(device.ReasonUnsupported, "a simulated %s does not accept %s", cfg.Kind, cmd.Action)
			}
			return nil
		}); err != nil {
			return err
		}
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case v := <-states:
					on.Store(int32(v))
					ev := device.EventValveOpened
					if v == 0 {
						ev = device.EventValveClosed
					}
					if cfg.Kind == device.Valve {
						_ = c.PublishEvent(ctx, now(), ev, nil)
					}
					_ = c.PublishReading(ctx, now(), map[string]float64{stateField: v})
				}
			}
		}()
	}
	if cfg.Kind == device.SmokeAlarm || cfg.Kind == device.GasAlarm {
		// Staff test the alarm or mute its buzzer from the resident page.
		tests := make(chan struct{}, 4)
		if err := c.Commands(ctx, func(cmd device.Command) error {
			switch cmd.Action {
			case device.ActionAlarmTest:
				select {
				case tests <- struct{}{}:
				default:
				}
			case device.ActionSirenSilence, device.ActionPing:
			default:
				return device.Refused(device.ReasonUnsupported, "a simulated %s does not accept %s", cfg.Kind, cmd.Action)
			}
			return nil
		}); err != nil {
			return err
		}
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-tests:
					_ = c.PublishEvent(ctx, now(), device.EventAlarmTest, nil)
				}
			}
		}()
	}
	alarmField := map[device.Kind]string{device.SmokeAlarm: "smoke", device.GasAlarm: "gas", device.WaterLeakSensor: "water_leak"}[cfg.Kind]
	alarmEvent := map[device.Kind]device.EventType{device.SmokeAlarm: device.EventSmoke, device.GasAlarm: device.EventGas, device.WaterLeakSensor: device.EventWaterLeak}[cfg.Kind]
	alarming, alarmed := false, false
	n := 0
	for {
		t := now()
		since := t.Sub(start)
		vals := map[string]float64{}
		var evs []struct {
			typ   device.EventType
			attrs map[string]any
		}
		ev := func(typ device.EventType, attrs map[string]any) {
			evs = append(evs, struct {
				typ   device.EventType
				attrs map[string]any
			}{typ, attrs})
		}
		due := cfg.AlarmAfter > 0 && since >= cfg.AlarmAfter
		periodic := cfg.AlarmAfter > 0 && int(since/cfg.AlarmAfter) > n
		switch cfg.Kind {
		case device.SmokeAlarm, device.GasAlarm, device.WaterLeakSensor:
			if due && !alarmed {
				alarming, alarmed = true, true
				ev(alarmEvent, nil)
			}
			if alarming && cfg.AlarmFor > 0 && since >= cfg.AlarmAfter+cfg.AlarmFor {
				alarming = false
			}
			vals[alarmField] = b2f(alarming)
			vals["battery_pct"] = battery()
		case device.ContactSensor:
			if periodic {
				n++
				open := n%2 == 1
				vals["open"] = b2f(open)
				typ := device.EventContactClose
				if open {
					typ = device.EventContactOpen
				}
				ev(typ, attrsLoc(cfg.Location))
			}
			// Like a real contact sensor, its battery every interval, so
			// that it is heard from (online) before its first opening.
			vals["battery_pct"] = battery()
		case device.MotionSensor:
			if periodic {
				n++
				vals["motion"] = 1
				ev(device.EventMotion, nil)
			}
		case device.CallButton:
			if periodic {
				n++
				a := attrsLoc(cfg.Location)
				if a == nil {
					a = map[string]any{}
				}
				a["source"] = "pull_cord"
				ev(device.EventSOS, a)
			}
			vals["battery_pct"] = battery()
		case device.SmartMattress:
			phase := float64(since/time.Second) / 60
			vals["in_bed"] = 1
			vals["hr_bpm"] = math.Round(64 + 4*math.Sin(phase))
			vals["resp_per_min"] = math.Round(15 + 2*math.Sin(phase/3))
		case device.Valve, device.Siren:
			vals[stateField] = float64(on.Load())
		case device.PillBox:
			if periodic && len(cfg.Slots) > 0 {
				slot := cfg.Slots[n%len(cfg.Slots)]
				n++
				ev(device.EventDoseTaken, map[string]any{"slot": slot, "compartment": float64(n%28 + 1)})
			}
			vals["battery_pct"] = battery()
		case device.CardReader:
			if periodic {
				n++
				ev(device.EventCheckIn, map[string]any{"method": "reader", "card": cmpOr(cfg.Card, "04A1B2C9")})
			}
			vals["battery_pct"] = battery()
		case device.Locator:
			lat, lon := locatorPosition(cfg, since)
			vals["lat_deg"], vals["lon_deg"], vals["accuracy_m"] = lat, lon, 8
			vals["battery_pct"] = battery()
		case device.EnvSensor:
			base := cfg.FridgeTempC
			if base == 0 {
				base = 4
			}
			if cfg.AlarmAfter > 0 && since >= cfg.AlarmAfter && since < cfg.AlarmAfter+cfg.AlarmFor {
				base = 10
			}
			vals["appliance_temp_c"] = math.Round((base+0.3*math.Sin(float64(since/time.Minute)))*10) / 10
		}
		for _, e := range evs {
			if err := c.PublishEvent(ctx, t, e.typ, e.attrs); err != nil {
				return err
			}
		}
		if len(vals) > 0 {
			if err := c.PublishReading(ctx, t, vals); err != nil {
				return err
			}
		}
		if err := sleep(ctx, cfg.Interval); err != nil {
			return nil
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func attrsLoc(loc string) map[string]any {
	if loc == "" {
		return nil
	}
	return map[string]any{"location": loc}
}

// locatorPosition walks a circle of cfg.RadiusM around cfg.Center, one lap
// per 30 min, then, after WanderAfter, away to the north-east at 50 m per
// reading interval.
func locatorPosition(cfg KitConfig, since time.Duration) (lat, lon float64) {
	const mPerDegLat = 111_320.0
	mPerDegLon := mPerDegLat * math.Cos(cfg.Center[0]*math.Pi/180)
	r := cfg.RadiusM
	a := 2 * math.Pi * float64(since%(30*time.Minute)) / float64(30*time.Minute)
	dn, de := r*math.Sin(a), r*math.Cos(a)
	if cfg.WanderAfter > 0 && since > cfg.WanderAfter {
		steps := float64((since - cfg.WanderAfter) / cfg.Interval)
		dn += 35 * steps
		de += 35 * steps
	}
	lat = math.Round((cfg.Center[0]+dn/mPerDegLat)*1e6) / 1e6
	lon = math.Round((cfg.Center[1]+de/mPerDegLon)*1e6) / 1e6
	return lat, lon
}

// Commands subscribes to the device's own cmd topic and hands each valid
// command to handle, answering on its cmd/ack topic with device.AckFor of
// handle's result (a plain MQTT device answering for itself). Commands for
// another device, expired ones and malformed ones are answered refused
// where an id can be read.
func (c *Conn) Commands(ctx context.Context, handle func(device.Command) error) error {
	topic := c.topic(device.ChanCommand)
	cb := func(_ paho.Client, m paho.Message) {
		now := c.cfg.Now()
		cmd, err := device.DecodeCommand(m.Payload(), device.Limits{})
		if err != nil {
			var peek struct {
				ID string `json:"id"`
			}
			if json.Unmarshal(m.Payload(), &peek) != nil || peek.ID == "" {
				c.log.Warn("sim: malformed command ignored", "device", c.cfg.Device, "err", err)
				return
			}
			cmd = &device.Command{ID: peek.ID}
		} else if cmd.Device != c.cfg.Device {
			err = device.Refused(device.ReasonBadParams, "command for %q on the topic of %q", cmd.Device, c.cfg.Device)
		} else if cmd.Expired(now) {
			err = device.Refused(device.ReasonExpired, "expired")
		} else {
			err = handle(*cmd)
		}
		if err != nil {
			var ce *device.CommandError
			if !errors.As(err, &ce) {
				err = device.Refused(device.ReasonBadParams, "%v", err)
			}
		}
		ack := device.AckFor(*cmd, c.cfg.Device, now, err)
		go func() {
			if err := c.publish(ctx, device.ChanCommandAck, false, ack); err != nil {
				c.log.Warn("sim: ack not published", "device", c.cfg.Device, "err", err)
			}
		}()
	}
	return c.wait(ctx, c.client.Subscribe(topic, 1, cb), "subscribe "+topic)
}
