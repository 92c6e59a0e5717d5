// Package alerting turns device readings and events into alerts, keeps them
// in a SQL store with a history of every change, and notifies receivers
// through a durable outbox.
//
// The engine ([Service]) subscribes to the broker itself, so an InfluxDB
// outage never delays a fall alert. The public operations ([Manager]: List,
// Get, History, Acknowledge, Resolve) work from any process that opens the
// same database; the alerting service's dispatcher delivers what they write.
// The rules, the sustain windows and the webhook signature are described in
// docs/alerting.md.
//
// A message takes this path, one stage per group of files (each file says
// its stage at the top): service.go takes it from the broker (fall and SOS
// on an urgent lane); 1. decode.go decodes and validates it; 2. the rules
// (rulesvc.go, rules.go, news2.go, absence.go, battery.go, offline.go)
// decide; 3. raise.go writes each decision to the store (store.go: the
// lifecycle with its history; escalation.go) and only then is the message
// acknowledged; 4. outbox.go delivers the outbox rows to the receivers
// (notify.go, email.go).
package alerting

import (
	"time"

	"github.com/eldercare-iot/eldercare/device"
)

// Alert types.
const (
	TypeFall          = "fall"
	TypeSOS           = "sos"
	TypeSpO2Low       = "spo2_low"
	TypeHeartRate     = "heart_rate"
	TypeRespiration   = "respiration"
	TypeDeviceOffline = "device_offline"
)

// Severities, most urgent first.
const (
	SeverityCritical = "critical"
	SeverityHigh     = "high"
	SeverityWarning  = "warning"
)

// Statuses of an alert. Open and acknowledged alerts are both "open" for
// deduplication: at most one per key is not resolved.
const (
	StatusOpen         = "open"
	StatusAcknowledged = "acknowledged"
	StatusResolved     = "resolved"
)

// Outcomes recorded when an alert is resolved.
const (
	OutcomeInjury     = "injury"
	OutcomeNoInjury   = "no_injury"
	OutcomeFalseAlarm = "false_alarm"
	OutcomeOther      = "other"
)

// Outcomes lists the valid outcomes.
var Outcomes = []string{OutcomeInjury, OutcomeNoInjury, OutcomeFalseAlarm, OutcomeOther}

// History actions.
const (
	ActionOpened       = "opened"
	ActionRepeated     = "repeated"
	ActionAcknowledged = "acknowledged"
	ActionResolved     = "resolved"
	ActionComment      = "comment"
	ActionNotified     = "notified"
)

// Notification events: the alert changes that are announced to receivers.
const (
	EventOpened       = "opened"
	EventAcknowledged = "acknowledged"
	EventResolved     = "resolved"
	// EventRepeated: a new distinct fall or SOS event (a new device, boot,
	// seq) arrived while the alert was open or acknowledged.
	EventRepeated = "repeated"
)

// ActorSystem is the actor of changes made by the rules and the dispatcher.
const ActorSystem = "system"

// ChannelRule is the channel of changes made by the rules.
const ChannelRule = "rule"

// Alert is one alert. Times are UTC; JSON times are RFC 3339.
type Alert struct {
	ID   int64  `json:"id"`
	Site string `json:"site"`
	// Resident is nil when the device was bound to no resident at the
	// time of the reading or event (Unassigned is then true).
	Resident *string `json:"resident"`
	Device   string  `json:"device"`
	// Type is one of fall, sos, spo2_low, heart_rate, respiration,
	// device_offline.
	Type string `json:"type"`
	// Severity is critical, high or warning.
	Severity string `json:"severity"`
	// Status is open, acknowledged or resolved.
	Status         string     `json:"status"`
	OpenedAt       time.Time  `json:"opened_at"`
	AcknowledgedAt *time.Time `json:"acknowledged_at"`
	AcknowledgedBy string     `json:"acknowledged_by"`
	ResolvedAt     *time.Time `json:"resolved_at"`
	ResolvedBy     string     `json:"resolved_by"`
	// Outcome is injury, no_injury, false_alarm or other once resolved.
	Outcome string `json:"outcome"`
	Note    string `json:"note"`
	// Detail is human text, e.g. "SpO2 84 % for 30 s".
	Detail string `json:"detail"`
	// Value is the worst value of the breach in the rule's unit (%, bpm,
	// breaths/min); nil for events and offline alerts.
	Value      *float64 `json:"value"`
	Unassigned bool     `json:"unassigned"`
	// Repeats counts how many times the condition was raised again while
	// the alert was open: each new distinct fall or SOS event (another
	// device event id), each further sustain period of a vitals breach.
	Repeats int `json:"repeats"`
	// LastOccurredAt is when the condition last occurred (device time of
	// the latest event or reading that raised or repeated it); nil on
	// alerts stored before it was recorded.
	LastOccurredAt *time.Time `json:"last_occurred_at"`
}

// Open reports whether the alert is not resolved.
func (a Alert) Open() bool { return a.Status != StatusResolved }

// HistoryEntry is one change of an alert.
type HistoryEntry struct {
	AlertID int64     `json:"alert_id"`
	Seq     int64     `json:"seq"`
	At      time.Time `json:"at"`
	// Actor is "system" or the user or token name that made the change.
	Actor string `json:"actor"`
	// Channel is where the change came from: rule, dashboard, api, or the
	// receiver name for "notified".
	Channel string `json:"channel"`
	// Action is opened, repeated, acknowledged, resolved, comment or
	// notified.
	Action string `json:"action"`
	Detail string `json:"detail"`
}

// Change is one notification: an alert as it was right after a change.
// Its JSON form is the body of webhook and MQTT notifications:
//
//	{"id":"alert-7-1","event":"opened","alert":{...},"at":"2026-01-02T03:04:05Z"}
type Change struct {
	// ID is stable across retries and restarts: "alert-<alert id>-<seq>".
	ID string `json:"id"`
	// Event is opened, acknowledged, resolved or repeated.
	Event string    `json:"event"`
	Alert Alert     `json:"alert"`
	At    time.Time `json:"at"`
}

// AlertTopic is the MQTT topic on which the changes of one site's alerts are
// published (QoS 1, not retained): "<root>/v1/alerts/<site>".
func AlertTopic(root, site string) string {
	if root == "" {
		root = device.DefaultRoot
	}
	return root + "/v1/alerts/" + site
}

// AlertSubscription is the topic filter for the alert changes of every site
// under root: "<root>/v1/alerts/+".
func AlertSubscription(root string) string {
	return AlertTopic(root, "+")
}
