package device

import (
	"time"
)

// Reading is one sample of one or more quantities, taken at one instant by
// one device.
//
// Values maps a field name to a finite number. The unit is part of the name
// (see Field); a missing value is an absent key, never NaN or null.
type Reading struct {
	// Seq is the reading's sequence number, strictly increasing per device
	// and boot. (device, boot, seq) identifies a reading for deduplication.
	Seq uint64 `json:"seq"`
	// TS is the device's timestamp in ms since the Unix epoch (UTC).
	TS int64 `json:"ts"`
	// Values holds the measured quantities, e.g. {"hr_bpm": 81, "spo2_pct": 97}.
	Values map[string]float64 `json:"values"`
}

// Time returns TS as a time.Time.
func (r Reading) Time() time.Time { return time.UnixMilli(r.TS) }

// Telemetry is the payload on the telemetry channel. It carries one reading
// (Seq, TS and Values at the top level) or a batch (Readings); Decode
// normalises both forms into Readings.
//
//	{"v":1,"device":"vm-101","boot":3,"id":42,"seq":420,"ts":1764400000000,
//	 "values":{"hr_bpm":81,"pulse_bpm":80,"resp_per_min":18,"spo2_pct":97}}
type Telemetry struct {
	V      int    `json:"v"`
	Device string `json:"device"`
	// Boot counts the device's restarts. A higher boot with lower sequence
	// numbers is a restart, not a replay.
	Boot uint32 `json:"boot"`
	// ID is the message id, strictly increasing per device and boot.
	// (device, boot, id) identifies a message for deduplication.
	ID uint64 `json:"id"`

	// Single-reading form.
	Seq    uint64             `json:"seq,omitempty"`
	TS     int64              `json:"ts,omitempty"`
	Values map[string]float64 `json:"values,omitempty"`

	// Batch form, oldest first.
	Readings []Reading `json:"readings,omitempty"`
}

// EventType names a discrete event.
type EventType string

// Event types of protocol v1, with the attributes each carries.
const (
	// EventFall: a fall was detected. Attrs: "peak_accel_ms2" (number,
	// optional), "confidence" (0-1, optional).
	EventFall EventType = "fall"
	// EventSOS: the SOS button was pressed. No attrs.
	EventSOS EventType = "sos"
	// EventBedExit: the occupant left the bed. No attrs.
	EventBedExit EventType = "bed_exit"
	// EventBedEntry: the bed became occupied. No attrs.
	EventBedEntry EventType = "bed_entry"
	// EventMeal: a meal was served at a meal terminal. Attrs: "card"
	// (string, required), "meal" (breakfast|lunch|dinner|snack, required),
	// "eaten_pct" (0-100, share of the portion eaten, required).
	EventMeal EventType = "meal"
	// EventCardTap: a card was tapped at a reader, e.g. a caregiver's visit
	// check-in at a home gateway. Attrs: "card" (string, required).
	EventCardTap EventType = "card_tap"
	// EventLowBattery: the device's battery is low. Attrs: "battery_pct".
	EventLowBattery EventType = "low_battery"
)

// EventTypes lists every event type of protocol v1.
var EventTypes = []EventType{EventFall, EventSOS, EventBedExit, EventBedEntry, EventMeal, EventCardTap, EventLowBattery}

// Meals are the values of the "meal" attribute of EventMeal.
var Meals = []string{"breakfast", "lunch", "dinner", "snack"}

// Event is the payload on the event channel.
//
//	{"v":1,"device":"fd-101","boot":1,"id":7,"seq":7,"ts":1764400000000,
//	 "type":"fall","attrs":{"peak_accel_ms2":61.2}}
type Event struct {
	V      int       `json:"v"`
	Device string    `json:"device"`
	Boot   uint32    `json:"boot"`
	ID     uint64    `json:"id"`
	Seq    uint64    `json:"seq"`
	TS     int64     `json:"ts"`
	Type   EventType `json:"type"`
	// Attrs carries the event's attributes: strings, finite numbers or
	// booleans only.
	Attrs map[string]any `json:"attrs,omitempty"`
}

// Time returns TS as a time.Time.
func (e Event) Time() time.Time { return time.UnixMilli(e.TS) }

// State is a device's connection state as seen by the platform.
type State string

// The states of a device.
const (
	Online  State = "online"
	Offline State = "offline"
	// Unknown: the device's gateway is gone, so nothing is known of it.
	Unknown State = "unknown"
)

// Reasons given in a Status.
const (
	// ReasonBoot: the device (or gateway) has just connected.
	ReasonBoot = "boot"
	// ReasonShutdown: a clean, deliberate disconnect. No offline alert.
	ReasonShutdown = "shutdown"
	// ReasonLastWill: the broker published the device's last will because
	// its connection was lost. Raises an offline alert at once.
	ReasonLastWill = "last_will"
	// ReasonGatewayLost: the gateway's last will; its devices are unknown.
	ReasonGatewayLost = "gateway_lost"
	// ReasonNoReadings: a gateway reports that a device behind it has sent
	// nothing within its expected interval.
	ReasonNoReadings = "no_readings"
	// ReasonHeartbeat: a gateway's periodic status (every HeartbeatMS,
	// default HeartbeatInterval): it is alive, lists the devices behind it
	// in Devices and reports what it knows of each in Report.
	ReasonHeartbeat = "heartbeat"
)

// DeviceReport is what a gateway's heartbeat says of one device behind it.
//
//	{"device":"fr-7","state":"online","last_seen":1764400000000,"via":"availability"}
type DeviceReport struct {
	Device string `json:"device"`
	// State is online or offline as the gateway sees the device; a device
	// the gateway has not heard from since it started is not reported.
	State State `json:"state"`
	// LastSeen is the wall time in ms since the epoch when the device was
	// last heard from (a reading, an event, or zigbee2mqtt's last_seen),
	// or the heartbeat's time when Via is "availability": zigbee2mqtt's own
	// availability check says the device is alive. 0: not known.
	LastSeen int64 `json:"last_seen,omitempty"`
	// Via says how the gateway knows: "readings" (its own messages or
	// polls) or "availability" (zigbee2mqtt's availability topic).
	Via string `json:"via,omitempty"`
}

// Ways a gateway knows a device's state, for DeviceReport.Via.
const (
	ViaReadings     = "readings"
	ViaAvailability = "availability"
)

// Status is the retained payload on the status channel.
//
// A device with its own MQTT connection publishes {"state":"online",
// "reason":"boot"} on connect, {"state":"offline","reason":"shutdown"}
// before a clean disconnect, and sets {"state":"offline",
// "reason":"last_will"} as its last will.
//
// A gateway publishes the status of each device behind it on that device's
// status topic, with Gateway set. On its own status topic it lists the
// devices behind it in Devices; its last will there is {"state":"offline",
// "reason":"gateway_lost","devices":[...]}, which the platform reads as
// "each listed device is unknown".
//
// While connected, a gateway publishes a heartbeat on its own status topic
// every HeartbeatMS (default 30 s), retained:
//
//	{"v":1,"device":"gw-7","ts":1764400000000,"state":"online","reason":"heartbeat",
//	 "kind":"gateway","devices":["env-7","fr-7"],"heartbeat_ms":30000,
//	 "report":[{"device":"env-7","state":"online","last_seen":1764399990000,"via":"readings"},
//	           {"device":"fr-7","state":"online","last_seen":1764400000000,"via":"availability"}]}
type Status struct {
	V      int    `json:"v"`
	Device string `json:"device"`
	// TS is the time of the status in ms since the epoch. A last will is
	// composed at connect time, so its TS is the connect time.
	TS     int64  `json:"ts"`
	State  State  `json:"state"`
	Reason string `json:"reason,omitempty"`
	// Kind announces the device kind on boot (see Kind).
	Kind Kind `json:"kind,omitempty"`
	// Gateway is the id of the gateway that publishes on the device's
	// behalf; empty for a device with its own connection.
	Gateway string `json:"gateway,omitempty"`
	// Devices lists the devices behind a gateway (gateway status only).
	// The platform accepts only devices registered behind this gateway;
	// any other id is refused (counted and logged once).
	Devices []string `json:"devices,omitempty"`
	// HeartbeatMS is the gateway's heartbeat period in ms (gateway status
	// only); the platform expects the next heartbeat within three of them.
	HeartbeatMS int64 `json:"heartbeat_ms,omitempty"`
	// Report says, per device behind the gateway, what the gateway knows
	// of it (heartbeat only; see DeviceReport).
	Report []DeviceReport `json:"report,omitempty"`
}

// Command is the payload on the downlink (cmd channel).
//
//	{"v":1,"id":"c-7f3a","ts":1764400000000,"name":"identify","args":{"seconds":10}}
type Command struct {
	V int `json:"v"`
	// ID identifies the command; the acknowledgement repeats it.
	ID   string         `json:"id"`
	TS   int64          `json:"ts"`
	Name string         `json:"name"`
	Args map[string]any `json:"args,omitempty"`
}

// Command results carried by CommandAck.
const (
	ResultOK          = "ok"
	ResultError       = "error"
	ResultUnsupported = "unsupported"
)

// CommandAck is a device's answer to a Command, on the cmd/ack channel.
//
//	{"v":1,"device":"vm-101","id":"c-7f3a","ts":1764400000100,"result":"ok"}
type CommandAck struct {
	V      int    `json:"v"`
	Device string `json:"device"`
	ID     string `json:"id"`
	TS     int64  `json:"ts"`
	Result string `json:"result"`
	Error  string `json:"error,omitempty"`
}
