// Package registry holds who and what is where: sites (each with an IANA time
// zone), rooms, beds, residents, devices, meal cards, and the bindings that say
// which resident a device measured at a given instant.
//
// The registry is written from a YAML file ([ParseYAML], [LoadFile]) or from
// the dashboard ([Store.Bind], [Store.Unbind]) into a SQL [Store] on SQLite or
// PostgreSQL. Hot paths (ingest tags every reading, alerting every event) read
// an immutable in-memory [Snapshot] kept fresh by a [Cache].
package registry

import (
	"errors"
	"time"
)

// ErrNotFound is returned, wrapped with what was looked up, when a site,
// room, bed, resident, device or binding does not exist.
var ErrNotFound = errors.New("not found")

// ErrOverlap is returned, wrapped with the bindings involved, when a write
// would bind one device to two residents at the same instant.
var ErrOverlap = errors.New("binding overlap")

// Device kinds accepted in [Device.Kind].
const (
	KindVitalsMonitor = "vitals_monitor"
	KindFallDetector  = "fall_detector"
	KindBedSensor     = "bed_sensor"
	KindSOSButton     = "sos_button"
	KindMealTerminal  = "meal_terminal"
	KindGateway       = "gateway"
	KindEnvSensor     = "env_sensor"
	KindOther         = "other"
	// The home safety kit, medication, location and visits (issue 13;
	// device.Kind has the readings and events of each).
	KindSmokeAlarm      = "smoke_alarm"
	KindGasAlarm        = "gas_alarm"
	KindWaterLeakSensor = "water_leak_sensor"
	KindContactSensor   = "contact_sensor"
	KindMotionSensor    = "motion_sensor"
	KindCallButton      = "call_button"
	KindSmartMattress   = "smart_mattress"
	KindSiren           = "siren"
	KindValve           = "valve"
	KindPillBox         = "pill_box"
	KindLocator         = "locator"
	KindCardReader      = "card_reader"
)

// Power sources accepted in [Device.Power] (device.Power values).
const (
	PowerMains   = "mains"
	PowerBattery = "battery"
)

// Kinds lists every valid device kind, in documentation order.
var Kinds = []string{
	KindVitalsMonitor, KindFallDetector, KindBedSensor, KindSOSButton,
	KindMealTerminal, KindGateway, KindEnvSensor, KindOther,
	KindSmokeAlarm, KindGasAlarm, KindWaterLeakSensor, KindContactSensor, KindMotionSensor, KindCallButton,
	KindSmartMattress, KindSiren, KindValve, KindPillBox, KindLocator, KindCardReader,
}

// ValidKind reports whether kind is one of [Kinds].
func ValidKind(kind string) bool {
	for _, k := range Kinds {
		if k == kind {
			return true
		}
	}
	return false
}

// Site is a care station, care home or private home. TimeZone is an IANA zone
// name (for example "Asia/Shanghai"); schedules and displayed times use it.
type Site struct {
	ID       string `json:"id" yaml:"id"`
	Name     string `json:"name" yaml:"name"`
	TimeZone string `json:"timezone" yaml:"timezone"`
}

// Room is a room on a site.
type Room struct {
	ID     string `json:"id" yaml:"id"`
	SiteID string `json:"site_id" yaml:"site"`
	Name   string `json:"name" yaml:"name"`
	// Ward groups rooms of a site for rosters, escalation and reports
	// ("east", "2F"); "" is the site's default ward.
	Ward string `json:"ward,omitempty" yaml:"ward,omitempty"`
	// Names are display names by language tag ("zh-CN": "101 室"); see
	// [DisplayName].
	Names Names `json:"names,omitempty" yaml:"names,omitempty"`
}

// Names are display names by BCP 47 language tag, for example
// {"zh-CN": "李秀英", "en": "Li Xiuying"}. The plain Name field is the
// fallback in every language.
type Names map[string]string

// DisplayName returns names[lang] when set, else fallback.
func DisplayName(names Names, lang, fallback string) string {
	if n := names[lang]; n != "" {
		return n
	}
	return fallback
}

// Bed is a bed in a room. Type is one of [BedTypes] (home_care,
// home_hospital, nursing, ordinary); Nursing is true exactly when Type is
// nursing (kept for the readers that predate bed types). A change of type
// goes through [Store.ChangeBedType], which keeps its history.
type Bed struct {
	ID      string `json:"id" yaml:"id"`
	RoomID  string `json:"room_id" yaml:"room"`
	SiteID  string `json:"site_id" yaml:"site"`
	Name    string `json:"name" yaml:"name"`
	Nursing bool   `json:"nursing" yaml:"nursing"`
	Type    string `json:"type" yaml:"type"`
}

// Resident is a person in care. BedID is empty for home care without a
// registered bed. BirthYear is a calendar year, 0 when unknown. Vulnerable
// residents get scheduled visits and stricter escalation.
type Resident struct {
	ID         string `json:"id" yaml:"id"`
	SiteID     string `json:"site_id" yaml:"site"`
	BedID      string `json:"bed_id,omitempty" yaml:"bed,omitempty"`
	Name       string `json:"name" yaml:"name"`
	BirthYear  int    `json:"birth_year,omitempty" yaml:"birth_year,omitempty"`
	Vulnerable bool   `json:"vulnerable" yaml:"vulnerable"`
	Notes      string `json:"notes,omitempty" yaml:"notes,omitempty"`
	// VisitCadenceDays is how often a vulnerable resident must be visited,
	// in days; 0 is [DefaultVisitCadence] (once per calendar month in the
	// site's zone).
	VisitCadenceDays int `json:"visit_cadence_days,omitempty" yaml:"visit_cadence_days,omitempty"`
	// Names are display names by language (see [Names]).
	Names Names `json:"names,omitempty" yaml:"names,omitempty"`
	// Medication is the resident's schedule of doses (see [Dose]); the
	// store returns them ordered by time.
	Medication []Dose `json:"medication,omitempty" yaml:"medication,omitempty"`
	// SafeZones are where the resident may be (see [SafeZone]); none: no
	// wandering rule. The store returns them ordered by name.
	SafeZones []SafeZone `json:"safe_zones,omitempty" yaml:"safe_zones,omitempty"`
}

// Device is a sensor, terminal or gateway. Kind is one of [Kinds]. BedID is
// the bed it is installed at, if any; GatewayID the gateway (a Device of kind
// "gateway" on the same site) that publishes for it, if any.
//
// Power (mains, battery or "" unknown) and ReportInterval drive device
// supervision: the device is offline only when nothing was heard from it for
// longer than its report interval. ReportInterval 0 takes the kind's
// interval ([KindSetting], else device.DefaultInterval of kind and power);
// see [Snapshot.ReportInterval].
type Device struct {
	ID             string        `json:"id" yaml:"id"`
	SiteID         string        `json:"site_id" yaml:"site"`
	Kind           string        `json:"kind" yaml:"kind"`
	Name           string        `json:"name" yaml:"name"`
	BedID          string        `json:"bed_id,omitempty" yaml:"bed,omitempty"`
	GatewayID      string        `json:"gateway_id,omitempty" yaml:"gateway,omitempty"`
	Power          string        `json:"power,omitempty" yaml:"power,omitempty"`
	ReportInterval time.Duration `json:"report_interval_ns,omitempty" yaml:"report_interval,omitempty"`
	// Limits are per-device limits on reading fields (a fridge's
	// appliance_temp_c max 8 °C for 30 min); see [Limit]. A device with
	// limits and no resident binding is a site-level device: its alerts
	// go to the site's duty staff.
	Limits []Limit `json:"limits,omitempty" yaml:"limits,omitempty"`
	// Names are display names by language (see [Names]).
	Names Names `json:"names,omitempty" yaml:"names,omitempty"`
}

// KindSetting sets the report interval of every device of one kind that does
// not set its own, in place of the built-in default (device.DefaultInterval:
// vitals monitor 10 s, gateway 90 s, mains-powered 10 min, battery 25 h).
type KindSetting struct {
	Kind           string        `json:"kind" yaml:"kind"`
	ReportInterval time.Duration `json:"report_interval_ns" yaml:"report_interval"`
}

// Bounds of a report interval.
const (
	MinReportInterval = time.Second
	MaxReportInterval = 31 * 24 * time.Hour
)

// MealCard is a resident's meal card; ID is the card UID as the terminal reads
// it (for example "04A1B2C3").
type MealCard struct {
	ID         string `json:"id" yaml:"id"`
	ResidentID string `json:"resident_id" yaml:"resident"`
}

// Binding says that the device measured the resident during [From, To). To is
// nil while the binding is open. A device is bound to at most one resident at
// any instant. Times are stored with millisecond resolution, in UTC.
type Binding struct {
	DeviceID   string     `json:"device_id" yaml:"device"`
	ResidentID string     `json:"resident_id" yaml:"resident"`
	From       time.Time  `json:"from" yaml:"from"`
	To         *time.Time `json:"to,omitempty" yaml:"to,omitempty"`
}

// Contains reports whether t lies in [From, To), at millisecond resolution.
func (b Binding) Contains(t time.Time) bool {
	ms := t.UnixMilli()
	if ms < b.From.UnixMilli() {
		return false
	}
	return b.To == nil || ms < b.To.UnixMilli()
}

// overlaps reports whether two bindings share an instant.
func (b Binding) overlaps(o Binding) bool {
	return b.From.UnixMilli() < endMS(o.To) && o.From.UnixMilli() < endMS(b.To)
}

// endMS is the end of a binding in unix ms; an open binding ends never.
func endMS(to *time.Time) int64 {
	if to == nil {
		return openEnd
	}
	return to.UnixMilli()
}

// openEnd stands for "no end" in unix ms.
const openEnd = int64(1<<63 - 1)
