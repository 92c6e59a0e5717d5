package registry

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/eldercare-iot/eldercare/device"
)

// Bed types of the home-care-bed programme ([Bed.Type]).
const (
	// BedHomeCare is a home care bed (家庭照护床位): care delivered at the
	// elder's own home, watched by the home's devices.
	BedHomeCare = "home_care"
	// BedHomeHospital is a home hospital bed (家庭病床): medical care at
	// home under a doctor.
	BedHomeHospital = "home_hospital"
	// BedNursing is a nursing-type bed (护理型床位) in a care home or
	// station; the programme targets 90 % of beds nursing-type.
	BedNursing = "nursing"
	// BedOrdinary is any other bed.
	BedOrdinary = "ordinary"
)

// BedTypes lists the bed types in documentation order.
var BedTypes = []string{BedHomeCare, BedHomeHospital, BedNursing, BedOrdinary}

// BedTypeChange is one conversion of a bed's type: from, to, when, who
// (a user name) and why.
type BedTypeChange struct {
	BedID  string    `json:"bed_id"`
	At     time.Time `json:"at"`
	From   string    `json:"from"`
	To     string    `json:"to"`
	By     string    `json:"by"`
	Reason string    `json:"reason,omitempty"`
}

// DefaultVisitCadence is the visit cadence of a vulnerable resident whose
// [Resident.VisitCadenceDays] is 0: at least one visit per calendar month
// in the site's zone (the programme's "monthly visit to every vulnerable
// elder").
const DefaultVisitCadence = "monthly"

// Dose is one slot of a resident's medication schedule: a local time of day
// in the site's zone ("08:00") and how late the dose may be taken before it
// counts as missed.
type Dose struct {
	// Time is the slot, HH:MM (24 h) in the site's IANA zone. A pill box's
	// dose_taken event names it in its "slot" attribute.
	Time string `json:"time" yaml:"time"`
	// Tolerance is how long after Time a dose may still be taken
	// (1 min - 12 h); after that the dose is missed.
	Tolerance time.Duration `json:"tolerance_ns" yaml:"tolerance"`
	// Medication names what is taken (optional).
	Medication string `json:"medication,omitempty" yaml:"medication,omitempty"`
}

// Point is a WGS 84 position in degrees.
type Point struct {
	Lat float64 `json:"lat" yaml:"lat"`
	Lon float64 `json:"lon" yaml:"lon"`
}

// SafeZone is an area a resident may be in: a circle (Center and RadiusM)
// or a polygon (at least three vertices, in order; closed implicitly).
// From and To (HH:MM in the site's zone, both or neither) limit the zone
// to a time of day, wrapping midnight when To is before From ("20:00" to
// "07:00" is the night). A resident outside every zone that applies at the
// moment has left the safe zones (the wandering rule).
type SafeZone struct {
	Name    string  `json:"name" yaml:"name"`
	Center  *Point  `json:"center,omitempty" yaml:"center,omitempty"`
	RadiusM float64 `json:"radius_m,omitempty" yaml:"radius_m,omitempty"`
	Polygon []Point `json:"polygon,omitempty" yaml:"polygon,omitempty"`
	From    string  `json:"from,omitempty" yaml:"from,omitempty"`
	To      string  `json:"to,omitempty" yaml:"to,omitempty"`
}

// Limit is a per-device limit on one reading field, for facility-safety
// rules: a fridge or cold store's appliance_temp_c above Max, a room's
// co2_ppm above Max, for at least Sustain (measured in device time). Min
// and Max are in the field's unit; at least one is set.
type Limit struct {
	Field   string        `json:"field" yaml:"field"`
	Min     *float64      `json:"min,omitempty" yaml:"min,omitempty"`
	Max     *float64      `json:"max,omitempty" yaml:"max,omitempty"`
	Sustain time.Duration `json:"sustain_ns,omitempty" yaml:"sustain,omitempty"`
}

// Bounds of the programme's settings.
const (
	MinDoseTolerance = time.Minute
	MaxDoseTolerance = 12 * time.Hour
	MaxVisitCadence  = 366 // days
	MaxSafeZoneM     = 100_000
	MaxLimitSustain  = 24 * time.Hour
)

// ParseClock parses a local time of day "HH:MM" (00:00-23:59) into minutes
// after midnight.
func ParseClock(s string) (int, error) {
	t, err := time.Parse("15:04", s)
	if err != nil || len(s) != 5 {
		return 0, fmt.Errorf("%q is not a time of day HH:MM (00:00-23:59)", s)
	}
	return t.Hour()*60 + t.Minute(), nil
}

// checkBedType is the one check of a bed type, used by the YAML import
// and [Store.ChangeBedType].
func (v *validator) bedType(path, t string) {
	if !contains(BedTypes, t) {
		v.addf(path, "unknown bed type %q (want one of %s)", t, strings.Join(BedTypes, ", "))
	}
}

// care checks a resident's programme settings: visit cadence, medication
// schedule and safe zones. The YAML import and [Store.PutResident] both
// use it, so both refuse the same input with the same message after the
// path.
func (v *validator) care(p string, r Resident) {
	if r.VisitCadenceDays < 0 || r.VisitCadenceDays > MaxVisitCadence {
		v.addf(p+".visit_cadence_days", "%d is outside 0 (monthly) - %d days", r.VisitCadenceDays, MaxVisitCadence)
	}
	slots := map[string]bool{}
	for i, d := range r.Medication {
		dp := fmt.Sprintf("%s.medication[%d]", p, i)
		if _, err := ParseClock(d.Time); err != nil {
			v.addf(dp+".time", "%v", err)
		} else if slots[d.Time] {
			v.addf(dp+".time", "slot %s listed twice", d.Time)
		}
		slots[d.Time] = true
		if d.Tolerance < MinDoseTolerance || d.Tolerance > MaxDoseTolerance {
			v.addf(dp+".tolerance", "%s is outside %s - %s", d.Tolerance, MinDoseTolerance, MaxDoseTolerance)
		}
		v.name(dp+".medication", d.Medication, false)
	}
	names := map[string]bool{}
	for i, z := range r.SafeZones {
		zp := fmt.Sprintf("%s.safe_zones[%d]", p, i)
		v.name(zp+".name", z.Name, true)
		if names[z.Name] {
			v.addf(zp+".name", "zone %q listed twice", z.Name)
		}
		names[z.Name] = true
		switch {
		case z.Center != nil && len(z.Polygon) > 0:
			v.addf(zp, "a zone is a circle (center, radius_m) or a polygon, not both")
		case z.Center != nil:
			v.point(zp+".center", *z.Center)
			if !(z.RadiusM > 0 && z.RadiusM <= MaxSafeZoneM) {
				v.addf(zp+".radius_m", "%g is outside (0, %d] m", z.RadiusM, MaxSafeZoneM)
			}
		case len(z.Polygon) > 0:
			if len(z.Polygon) < 3 {
				v.addf(zp+".polygon", "%d vertices; a polygon needs at least 3", len(z.Polygon))
			}
			for j, pt := range z.Polygon {
				v.point(fmt.Sprintf("%s.polygon[%d]", zp, j), pt)
			}
		default:
			v.addf(zp, "a zone needs a center and radius_m, or a polygon")
		}
		if (z.From == "") != (z.To == "") {
			v.addf(zp, "from and to: give both or neither")
		}
		for _, x := range []struct{ k, s string }{{"from", z.From}, {"to", z.To}} {
			if x.s != "" {
				if _, err := ParseClock(x.s); err != nil {
					v.addf(zp+"."+x.k, "%v", err)
				}
			}
		}
	}
}

func (v *validator) point(path string, pt Point) {
	if math.IsNaN(pt.Lat) || pt.Lat < -90 || pt.Lat > 90 {
		v.addf(path+".lat", "%g is outside [-90, 90] degrees", pt.Lat)
	}
	if math.IsNaN(pt.Lon) || pt.Lon < -180 || pt.Lon > 180 {
		v.addf(path+".lon", "%g is outside [-180, 180] degrees", pt.Lon)
	}
}

// limits checks a device's limits; see care.
func (v *validator) limits(p string, dev Device) {
	seen := map[string]bool{}
	for i, l := range dev.Limits {
		lp := fmt.Sprintf("%s.limits[%d]", p, i)
		if err := device.ValidateFieldName(l.Field); err != nil {
			v.addf(lp+".field", "%q is not a reading field name (1-64 of [a-z0-9_], starting with a letter)", l.Field)
		} else if seen[l.Field] {
			v.addf(lp+".field", "field %s limited twice", l.Field)
		}
		seen[l.Field] = true
		switch {
		case l.Min == nil && l.Max == nil:
			v.addf(lp, "set min, max or both")
		case l.Min != nil && l.Max != nil && *l.Min >= *l.Max:
			v.addf(lp, "min %g is not below max %g", *l.Min, *l.Max)
		}
		if f, ok := device.Fields[l.Field]; ok {
			for _, x := range []*float64{l.Min, l.Max} {
				if x != nil && (*x < f.Min || *x > f.Max) {
					v.addf(lp, "%g is outside the protocol's range of %s, [%g, %g] %s", *x, l.Field, f.Min, f.Max, f.Unit)
				}
			}
		}
		if l.Sustain < 0 || l.Sustain > MaxLimitSustain {
			v.addf(lp+".sustain", "%s is outside 0 - %s", l.Sustain, MaxLimitSustain)
		}
	}
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}
