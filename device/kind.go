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
)

// Kinds lists every known kind.
var Kinds = []Kind{VitalsMonitor, FallDetector, BedSensor, SOSButton, MealTerminal, Gateway, EnvSensor, Other}

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
func VitalFields(k Kind) []string {
	if k == VitalsMonitor {
		return []string{"hr_bpm", "spo2_pct"}
	}
	return nil
}
