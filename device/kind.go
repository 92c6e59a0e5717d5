package device

import "time"

// Kind is a kind of device.
type Kind string

// The kinds of device the platform knows.
const (
	// VitalsMonitor reports heart rate, pulse, respiration and SpO2.
	VitalsMonitor Kind = "vitals_monitor"
	// FallDetector is a wrist-worn or radar fall sensor; it sends fall events.
	FallDetector Kind = "fall_detector"
	// BedSensor is a bed pad or strap; it sends bed_exit and bed_entry events
	// and may report "in_bed" (0 or 1) as a reading.
	BedSensor Kind = "bed_sensor"
	// SOSButton sends sos events.
	SOSButton Kind = "sos_button"
	// MealTerminal is the smart-meal terminal at a canteen; it sends meal
	// events when a resident's card is tapped.
	MealTerminal Kind = "meal_terminal"
	// Gateway is an edge gateway that publishes for the devices behind it.
	Gateway Kind = "gateway"
	// EnvSensor measures the room (temperature, humidity, CO2).
	EnvSensor Kind = "env_sensor"
	// Other is any other device.
	Other Kind = "other"

	// The home safety kit (JGJ/T 484-2019 device list; zigbee2mqtt models
	// in docs/zigbee2mqtt.md). Readings and events: docs/protocol.md.

	// SmokeAlarm reports "smoke" (0|1) and raises smoke, alarm_test,
	// tamper and low_battery events.
	SmokeAlarm Kind = "smoke_alarm"
	// GasAlarm reports "gas" (0|1) and raises gas, alarm_test and tamper
	// events. A gas alarm may close a Valve (command valve_close).
	GasAlarm Kind = "gas_alarm"
	// WaterLeakSensor reports "water_leak" (0|1) and raises water_leak.
	WaterLeakSensor Kind = "water_leak_sensor"
	// ContactSensor is a door or window contact: "open" (0 closed, 1
	// open), events contact_open and contact_close.
	ContactSensor Kind = "contact_sensor"
	// MotionSensor is a PIR: "motion" (0|1) and motion events (activity).
	MotionSensor Kind = "motion_sensor"
	// CallButton is a pull cord or a bathroom call button: sos events
	// with the "location" attribute.
	CallButton Kind = "call_button"
	// SmartMattress reports hr_bpm, resp_per_min and in_bed from one
	// device, and bed_entry / bed_exit events.
	SmartMattress Kind = "smart_mattress"
	// Siren reports "siren_on" (0|1); commands siren_on, siren_silence.
	Siren Kind = "siren"
	// Valve is a gas or water shut-off valve (or valve manipulator):
	// "valve_open" (0|1); commands valve_close, valve_open.
	Valve Kind = "valve"
	// PillBox is a smart pill box or dispenser: dose_taken events
	// (attrs slot, compartment); plain MQTT, no zigbee model exists.
	PillBox Kind = "pill_box"
	// Locator is a wristband or pendant: lat_deg, lon_deg, accuracy_m
	// readings, or zone events for an indoor zone.
	Locator Kind = "locator"
	// CardReader is a card reader (at a home or in a gateway) that raises
	// card_tap and check_in events.
	CardReader Kind = "card_reader"
)

// Kinds lists every known kind.
var Kinds = []Kind{VitalsMonitor, FallDetector, BedSensor, SOSButton, MealTerminal, Gateway, EnvSensor, Other,
	SmokeAlarm, GasAlarm, WaterLeakSensor, ContactSensor, MotionSensor, CallButton, SmartMattress, Siren, Valve,
	PillBox, Locator, CardReader}

// SafetyKinds are the kinds whose alarms are life-safety alarms (fire, gas):
// critical, site-wide to everyone on duty, never held by quiet hours.
var SafetyKinds = []Kind{SmokeAlarm, GasAlarm}

// Valid reports whether k is a known kind.
func (k Kind) Valid() bool {
	for _, x := range Kinds {
		if k == x {
			return true
		}
	}
	return false
}

// Field describes a well-known reading field: its unit and the range of
// values that a working sensor can physically report. A value outside the
// range is rejected as a sensor or encoding fault; it says nothing about
// clinical normality (the alerting rules do that).
type Field struct {
	Name     string
	Unit     string
	Min, Max float64
	Doc      string
}

// Fields are the well-known reading fields. The unit is the name's suffix:
// _bpm beats/min, _per_min breaths/min, _pct percent, _c degrees Celsius,
// _ppm parts per million, _ms2 m/s^2. Other fields are accepted when their
// names are well formed (see ValidateFieldName) and their values finite.
var Fields = map[string]Field{
	"hr_bpm":       {"hr_bpm", "beats/min", 0, 300, "heart rate from the ECG (BIDMC column HR)"},
	"pulse_bpm":    {"pulse_bpm", "beats/min", 0, 300, "pulse rate from the pulse oximeter (BIDMC column PULSE)"},
	"resp_per_min": {"resp_per_min", "breaths/min", 0, 200, "respiration rate (BIDMC column RESP)"},
	"spo2_pct":     {"spo2_pct", "%", 0, 100, "peripheral oxygen saturation (BIDMC column SpO2)"},
	"sbp_mmhg":     {"sbp_mmhg", "mmHg", 0, 300, "systolic blood pressure"},
	"temp_c":       {"temp_c", "°C", 20, 45, "body temperature"},
	"in_bed":       {"in_bed", "0|1", 0, 1, "bed occupancy: 1 in bed, 0 out of bed"},
	"on_oxygen":    {"on_oxygen", "0|1", 0, 1, "0 breathing air, 1 on supplemental oxygen (NEWS2)"},
	"acvpu":        {"acvpu", "0-4", 0, 4, "level of consciousness: 0 alert, 1 new confusion, 2 voice, 3 pain, 4 unresponsive (NEWS2)"},
	"battery_pct":  {"battery_pct", "%", 0, 100, "battery charge"},
	"room_temp_c":  {"room_temp_c", "°C", -40, 80, "room air temperature"},
	"humidity_pct": {"humidity_pct", "%", 0, 100, "room relative humidity"},
	"co2_ppm":      {"co2_ppm", "ppm", 0, 10000, "room CO2 concentration"},
	"accel_ms2":    {"accel_ms2", "m/s^2", 0, 1000, "acceleration magnitude including gravity"},

	// Home safety kit: states as 0|1 (see docs/protocol.md).
	"smoke":       {"smoke", "0|1", 0, 1, "smoke alarm state: 1 smoke detected (zigbee2mqtt smoke)"},
	"gas":         {"gas", "0|1", 0, 1, "gas alarm state: 1 gas detected (zigbee2mqtt gas)"},
	"water_leak":  {"water_leak", "0|1", 0, 1, "1 water detected (zigbee2mqtt water_leak)"},
	"open":        {"open", "0|1", 0, 1, "door or window contact: 1 open, 0 closed (zigbee2mqtt contact inverted)"},
	"motion":      {"motion", "0|1", 0, 1, "PIR: 1 motion in the occupancy timeout, 0 none (zigbee2mqtt occupancy)"},
	"tamper":      {"tamper", "0|1", 0, 1, "1 the casing is open or the device was removed"},
	"valve_open":  {"valve_open", "0|1", 0, 1, "shut-off valve: 1 open (gas or water flows), 0 closed (zigbee2mqtt state ON|OFF)"},
	"siren_on":    {"siren_on", "0|1", 0, 1, "siren: 1 sounding, 0 silent"},
	"gas_lel_pct": {"gas_lel_pct", "%LEL", 0, 100, "gas concentration in % of the lower explosive limit"},
	// Location (WGS 84).
	"lat_deg":    {"lat_deg", "°", -90, 90, "latitude, WGS 84 degrees"},
	"lon_deg":    {"lon_deg", "°", -180, 180, "longitude, WGS 84 degrees"},
	"accuracy_m": {"accuracy_m", "m", 0, 100000, "radius of the position's 68 % confidence circle, m"},
	// Facility safety.
	"appliance_temp_c": {"appliance_temp_c", "°C", -60, 60, "temperature inside a fridge, freezer or cold store"},
}

// Power is how a device is powered; it selects the default report interval
// of a device that reports only on change (zigbee2mqtt availability).
type Power string

// The power sources of a device.
const (
	// PowerMains: mains-powered (a router in a Zigbee mesh). zigbee2mqtt
	// pings such "active" devices and marks them offline after 10 min.
	PowerMains Power = "mains"
	// PowerBattery: battery-powered (a sleepy end device). zigbee2mqtt
	// marks such "passive" devices offline after 25 h without a message.
	PowerBattery Power = "battery"
)

// Valid reports whether p is "", mains or battery.
func (p Power) Valid() bool { return p == "" || p == PowerMains || p == PowerBattery }

// Report intervals: the longest a working device stays silent. A device is
// offline only when nothing was heard from it (a reading, an event, a
// status, or its gateway's heartbeat reporting it online) for longer than
// its own interval.
const (
	// MainsInterval is zigbee2mqtt's availability timeout for active
	// (mains-powered) devices: 10 min (zigbee2mqtt docs, "Device
	// availability": availability.active.timeout default 10).
	MainsInterval = 10 * time.Minute
	// BatteryInterval is zigbee2mqtt's availability timeout for passive
	// (battery) devices: 25 h (availability.passive.timeout default 1500
	// min); such devices report only on change and check in about daily.
	BatteryInterval = 25 * time.Hour
	// VitalsInterval: a bedside vitals monitor samples at 1 Hz (the BIDMC
	// recordings); 10 s without a reading is a monitor that stopped.
	VitalsInterval = 10 * time.Second
	// HeartbeatInterval is how often a gateway publishes its heartbeat
	// (ReasonHeartbeat) by default.
	HeartbeatInterval = 30 * time.Second
	// GatewayInterval is a gateway's report interval: three heartbeats
	// missed.
	GatewayInterval = 3 * HeartbeatInterval
)

// DefaultInterval returns the report interval of a device of kind k powered
// by p when neither the registry's kind nor the device sets one:
//
//   - vitals_monitor: VitalsInterval (10 s);
//   - gateway: GatewayInterval (90 s, three heartbeats);
//   - env_sensor: MainsInterval (10 min) unless battery-powered;
//   - meal_terminal: MainsInterval (10 min);
//   - fall_detector, bed_sensor, sos_button, other: BatteryInterval (25 h)
//     unless mains-powered, when MainsInterval (10 min). These report only
//     on change; their gateway's heartbeat (zigbee2mqtt availability) keeps
//     them alive in between.
func DefaultInterval(k Kind, p Power) time.Duration {
	switch k {
	case VitalsMonitor:
		return VitalsInterval
	case Gateway:
		return GatewayInterval
	case EnvSensor, MealTerminal:
		if p == PowerBattery {
			return BatteryInterval
		}
		return MainsInterval
	}
	if p == PowerMains {
		return MainsInterval
	}
	return BatteryInterval
}

// VitalFields returns the reading fields a device of kind k exists to
// measure: a device that keeps sending readings without one of them (a
// vitals monitor sending heart rate while its SpO2 probe is off) is flagged.
// vitals_monitor: hr_bpm and spo2_pct. Other kinds: none.
// (A smart_mattress is not listed: it measures only while someone is in
// bed, so a missing hr_bpm with in_bed 0 is normal.)
func VitalFields(k Kind) []string {
	if k == VitalsMonitor {
		return []string{"hr_bpm", "spo2_pct"}
	}
	return nil
}

// Actions returns the command actions a device of kind k accepts (see
// Command); every kind also accepts ActionPing.
//
//   - valve: valve_close, valve_open
//   - siren: siren_on, siren_silence
//   - smoke_alarm, gas_alarm: alarm_test, siren_silence (mutes the buzzer)
//   - env_sensor, other: setpoint (a register the Modbus profile declares writable)
//   - sos_button, call_button, fall_detector, gateway: call_acknowledged (call assurance)
func Actions(k Kind) []Action {
	switch k {
	case Valve:
		return []Action{ActionPing, ActionValveClose, ActionValveOpen}
	case Siren:
		return []Action{ActionPing, ActionSirenOn, ActionSirenSilence}
	case SmokeAlarm, GasAlarm:
		return []Action{ActionPing, ActionAlarmTest, ActionSirenSilence}
	case EnvSensor, Other:
		return []Action{ActionPing, ActionSetpoint}
	case SOSButton, CallButton, FallDetector, Gateway:
		// Call assurance: the device (or the gateway for it) was told help
		// is coming.
		return []Action{ActionPing, ActionCallAcknowledged}
	}
	return []Action{ActionPing}
}
