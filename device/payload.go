package device

import (
	"errors"
	"fmt"
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
	// EventSOS: an SOS button, pull cord or call button was pressed.
	// Attrs: "location" (string, optional: where the button is, e.g.
	// bathroom, bedroom; a call_button should always send it), "source"
	// (button|pull_cord|wearable, optional), and the last known position
	// "lat_deg", "lon_deg", "accuracy_m" (optional, from a locator).
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

	// Home safety kit. An alarm event marks the onset; the matching 0|1
	// reading (smoke, gas, water_leak, open, motion) carries the state, so
	// its return to 0 is the clear.

	// EventSmoke: a smoke alarm detected smoke. Attrs: "smoke_density"
	// (number, optional, the vendor's scale).
	EventSmoke EventType = "smoke"
	// EventGas: a gas alarm detected gas. Attrs: "gas_lel_pct" (0-100,
	// optional).
	EventGas EventType = "gas"
	// EventWaterLeak: a water-leak sensor detected water.
	EventWaterLeak EventType = "water_leak"
	// EventAlarmTest: an alarm's test button was pressed (or a self test
	// ran on command): not a fire or gas alarm. Attrs: "result"
	// (ok|failed, optional).
	EventAlarmTest EventType = "alarm_test"
	// EventTamper: the casing was opened or the device removed.
	EventTamper EventType = "tamper"
	// EventContactOpen / EventContactClose: a door or window contact
	// opened / closed. Attrs: "location" (optional, e.g. front_door).
	EventContactOpen  EventType = "contact_open"
	EventContactClose EventType = "contact_close"
	// EventMotion: a PIR saw motion (activity for the absence rules).
	EventMotion EventType = "motion"
	// EventValveClosed / EventValveOpened: a valve changed state (on
	// command or by hand). Attrs: "command" (the command id, optional).
	EventValveClosed EventType = "valve_closed"
	EventValveOpened EventType = "valve_opened"
	// EventDoseTaken: a dose was taken from a pill box or dispenser.
	// Attrs: "slot" (string, required: the schedule slot as local time
	// HH:MM in the site's zone, e.g. "08:00", or the compartment's label),
	// "compartment" (number, optional), "medication" (string, optional).
	// The event's ts is when the dose was taken.
	EventDoseTaken EventType = "dose_taken"
	// EventZone: a locator entered an indoor zone. Attrs: "zone" (string,
	// required, e.g. bedroom, corridor-2), "accuracy_m" (optional).
	EventZone EventType = "zone"
	// EventCheckIn: a visitor checked in at a resident's home (a visit).
	// Attrs: "method" (card|app|reader, required), "card" (string,
	// required for card and reader), "staff" (string, optional: the
	// visitor's user id), "resident" (string, optional: when the device
	// serves more than one resident).
	EventCheckIn EventType = "check_in"
)

// EventTypes lists every event type of protocol v1.
var EventTypes = []EventType{EventFall, EventSOS, EventBedExit, EventBedEntry, EventMeal, EventCardTap, EventLowBattery,
	EventSmoke, EventGas, EventWaterLeak, EventAlarmTest, EventTamper, EventContactOpen, EventContactClose, EventMotion,
	EventValveClosed, EventValveOpened, EventDoseTaken, EventZone, EventCheckIn}

// CheckInMethods are the values of the "method" attribute of EventCheckIn.
var CheckInMethods = []string{"card", "app", "reader"}

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
	// LocalAlarm is the event type (fall or sos) of the device's local
	// alarm while the gateway holds it active: from the event until a
	// call_acknowledged command for the device arrives. "" = none.
	LocalAlarm EventType `json:"local_alarm,omitempty"`
	// LocalAlarmSince is when the gateway took the event of LocalAlarm,
	// gateway wall time in ms since the epoch (0 = none / not known).
	// Alerting raises the alert from it when the event itself never
	// reached the platform (alerting/localalarm.go).
	LocalAlarmSince int64 `json:"local_alarm_since,omitempty"`
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

// Action is what a Command asks a device to do.
type Action string

// The command actions of protocol v1 (see Actions for which kind accepts
// which). The device's next reading confirms the effect (see Confirms).
const (
	// ActionPing: answer accepted; nothing else. Any device or gateway.
	ActionPing Action = "ping"
	// ActionValveClose / ActionValveOpen: shut / open a valve
	// (zigbee2mqtt {"state":"OFF"} / {"state":"ON"}). Confirmed by
	// valve_open 0 / 1.
	ActionValveClose Action = "valve_close"
	ActionValveOpen  Action = "valve_open"
	// ActionSirenOn: sound a siren. Params: "duration_s" (1-1800,
	// default 60). Confirmed by siren_on 1 where the siren reports it.
	ActionSirenOn Action = "siren_on"
	// ActionSirenSilence: stop a siren, or mute a smoke or gas alarm's
	// buzzer. Confirmed by siren_on 0 where the device reports it.
	ActionSirenSilence Action = "siren_silence"
	// ActionAlarmTest: run a smoke or gas alarm's self test. Confirmed by
	// an alarm_test event.
	ActionAlarmTest Action = "alarm_test"
	// ActionSetpoint: write a value. Params: "field" (string, required: a
	// reading field the device's Modbus profile declares writable) and
	// "value" (number, required, in the field's unit). Confirmed by the
	// next reading of that field.
	ActionSetpoint Action = "setpoint"
	// ActionCallAcknowledged: call assurance (UL 2560's "call assured"
	// indication). A person acknowledged the fall or SOS alert this device
	// raised and is on the way: a call station or pendant shows "help is
	// coming"; the gateway the device is behind stops its local alarm for
	// the device whatever the device can show. Params: "alert" (number,
	// the alert id), "type" (fall or sos), "by" (who acknowledged). Not
	// confirmed by a reading; a device that cannot show it answers
	// refused unsupported (the gateway's alarm has stopped all the same).
	ActionCallAcknowledged Action = "call_acknowledged"
)

// CommandActions lists every action of protocol v1.
var CommandActions = []Action{ActionPing, ActionValveClose, ActionValveOpen, ActionSirenOn, ActionSirenSilence,
	ActionAlarmTest, ActionSetpoint, ActionCallAcknowledged}

// Command is the payload on a device's downlink, {root}/v1/{site}/{device}/cmd
// (QoS 1, not retained). The platform publishes it on the target device's
// topic; the gateway the device is behind carries it to the device
// (zigbee2mqtt <friendly_name>/set, a Modbus register write) and answers on
// the device's cmd/ack topic.
//
//	{"v":1,"id":"c-7f3a","ts":1764400000000,"device":"valve-1","action":"valve_close",
//	 "expires":1764400060000}
//	{"v":1,"id":"c-7f3b","ts":1764400000000,"device":"fridge-1","action":"setpoint",
//	 "params":{"field":"setpoint_c","value":4},"expires":1764400060000}
type Command struct {
	V int `json:"v"`
	// ID identifies the command (1-64 characters); the acknowledgement
	// repeats it. A retry of the same command keeps its id, so a device
	// that executed it once answers the repeat without acting twice.
	ID string `json:"id"`
	// TS is when the platform issued the command, ms since the epoch.
	TS int64 `json:"ts"`
	// Device is the target device; it must equal the topic's device.
	Device string `json:"device"`
	// Action is what to do (see CommandActions).
	Action Action `json:"action"`
	// Params are the action's parameters: strings, finite numbers or
	// booleans.
	Params map[string]any `json:"params,omitempty"`
	// Expires is the time in ms since the epoch after which the command
	// must not be executed (refused with reason "expired"); 0: never.
	// A valve closed ten minutes late may be worse than one never closed.
	Expires int64 `json:"expires,omitempty"`
}

// Expired reports whether c must no longer be executed at now.
func (c Command) Expired(now time.Time) bool { return c.Expires > 0 && now.UnixMilli() > c.Expires }

// Confirms returns the reading field and value by which a device's next
// reading confirms that action a took effect (valve_close: valve_open = 0),
// and false when a reading cannot confirm it (ping, alarm_test: an
// alarm_test event confirms it; setpoint: the written field's next
// reading, see Command.Params).
func Confirms(a Action) (field string, value float64, ok bool) {
	switch a {
	case ActionValveClose:
		return "valve_open", 0, true
	case ActionValveOpen:
		return "valve_open", 1, true
	case ActionSirenOn:
		return "siren_on", 1, true
	case ActionSirenSilence:
		return "siren_on", 0, true
	}
	return "", 0, false
}

// AckStatus is a gateway's or device's answer to a Command.
type AckStatus string

// The statuses of a CommandAck.
const (
	// AckAccepted: the command was handed to the device (zigbee2mqtt /set
	// published; Modbus write answered). The device's next state confirms
	// the effect (see Confirms).
	AckAccepted AckStatus = "accepted"
	// AckRefused: the command was not tried and retrying it will not
	// help: unknown device or action, a register the profile does not
	// declare writable, expired, bad params. Reason says which.
	AckRefused AckStatus = "refused"
	// AckFailed: the command was tried and failed (Modbus exception or
	// timeout, zigbee2mqtt broker unreachable). A retry may succeed.
	AckFailed AckStatus = "failed"
)

// Reasons given in a refused or failed CommandAck.
const (
	ReasonUnknownDevice = "unknown_device" // no device of that id behind this gateway
	ReasonUnsupported   = "unsupported"    // the device's kind or model has no such action
	ReasonNotWritable   = "not_writable"   // the Modbus profile does not declare the register writable
	ReasonExpired       = "expired"        // received after Command.Expires
	ReasonBadParams     = "bad_params"     // a parameter is missing or out of range
	ReasonDeviceError   = "device_error"   // the device or its bus answered with an error
	ReasonTimeout       = "timeout"        // no answer from the device or its bus in time
	ReasonNotConnected  = "not_connected"  // the gateway's link to the device is down
)

// CommandAck answers a Command, on the target device's cmd/ack channel,
// published by the gateway the device is behind (or the device itself).
//
//	{"v":1,"device":"valve-1","id":"c-7f3a","ts":1764400000100,"status":"accepted","action":"valve_close"}
//	{"v":1,"device":"meter-1","id":"c-7f3c","ts":1764400000100,"status":"refused",
//	 "reason":"not_writable","error":"register voltage_v (input register 0) is not writable in profile sdm120"}
type CommandAck struct {
	V      int    `json:"v"`
	Device string `json:"device"`
	// ID is the id of the command answered.
	ID string `json:"id"`
	TS int64  `json:"ts"`
	// Action repeats the command's action (optional).
	Action Action    `json:"action,omitempty"`
	Status AckStatus `json:"status"`
	// Reason is a short stable word (see the Reason* constants) for
	// refused and failed; Error the human-readable detail.
	Reason string `json:"reason,omitempty"`
	Error  string `json:"error,omitempty"`
}

// CommandTopic returns the cmd topic of dev at site under root.
func CommandTopic(root, site, dev string) string {
	return Topic{Root: root, Site: site, Device: dev, Channel: ChanCommand}.String()
}

// CommandAckTopic returns the cmd/ack topic of dev at site under root.
func CommandAckTopic(root, site, dev string) string {
	return Topic{Root: root, Site: site, Device: dev, Channel: ChanCommandAck}.String()
}

// NewCommand builds a command for the platform to publish: id is the
// platform's command id, ttl how long it may wait before execution (0: no
// expiry). It validates the command as DecodeCommand would.
func NewCommand(id, dev string, a Action, params map[string]any, now time.Time, ttl time.Duration) (Command, error) {
	c := Command{V: Version, ID: id, TS: now.UnixMilli(), Device: dev, Action: a, Params: params}
	if ttl > 0 {
		c.Expires = now.Add(ttl).UnixMilli()
	}
	return c, c.Validate()
}

// CommandError is why a gateway or device did not accept a command: its
// Status (refused or failed) and Reason (a Reason* word) go into the
// CommandAck, Detail into its Error.
type CommandError struct {
	Status AckStatus
	Reason string
	Detail string
}

func (e *CommandError) Error() string {
	return fmt.Sprintf("command %s (%s): %s", e.Status, e.Reason, e.Detail)
}

// Refused returns a *CommandError with status refused.
func Refused(reason, format string, args ...any) error {
	return &CommandError{Status: AckRefused, Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

// Failed returns a *CommandError with status failed.
func Failed(reason, format string, args ...any) error {
	return &CommandError{Status: AckFailed, Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

// AckFor builds the acknowledgement of cmd by dev at now from the outcome
// err of carrying it out: nil is accepted, a *CommandError its status and
// reason, any other error failed with reason device_error.
func AckFor(cmd Command, dev string, now time.Time, err error) CommandAck {
	a := CommandAck{V: Version, Device: dev, ID: cmd.ID, TS: now.UnixMilli(), Action: cmd.Action, Status: AckAccepted}
	if err == nil {
		return a
	}
	var ce *CommandError
	if errors.As(err, &ce) {
		a.Status, a.Reason, a.Error = ce.Status, ce.Reason, ce.Detail
	} else {
		a.Status, a.Reason, a.Error = AckFailed, ReasonDeviceError, err.Error()
	}
	return a
}
