// Stage 2, rules: the rules applied to a decoded reading or event (vitals, NEWS2, battery, absence, meals,
// fall and SOS). Each decision goes to the store through raise.go before the message is acknowledged.

package alerting

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/device/registry"
)

// Directory is what the schedule and device-health rules need from the
// registry. A *registry.Snapshot satisfies it.
type Directory interface {
	Residents
	// Location is the site's IANA zone (time.UTC when unknown).
	Location(siteID string) *time.Location
	// Device returns a device (its kind) by id.
	Device(id string) (registry.Device, bool)
	// ResidentByCard returns the holder of a meal card.
	ResidentByCard(cardID string, t time.Time) (registry.Resident, bool)
}

// CardHolders is implemented by a [Directory] that can list the residents
// with a meal card (resident id -> site id). Without it, the meal deadlines
// apply to a resident from their first meal event seen by this process.
type CardHolders interface {
	CardHolders() map[string]string
}

// RuleConfig configures the rules beyond the vitals thresholds.
type RuleConfig struct {
	// Directory returns the current registry view (e.g. a registry Cache's
	// Current). nil: site zones are UTC, device kinds come from the status
	// messages' "kind", and meal cards are not resolved.
	Directory func() Directory
	// Absence is the absence rules; the zero value means DefaultAbsence.
	Absence AbsenceRules
	// NEWS2 is the NEWS2 rule; the zero value means DefaultNEWS2.
	NEWS2 NEWS2Rule
	// Battery is the low-battery rule; the zero value means DefaultBattery.
	Battery BatteryRule
	// Artefacts are the suspected-sensor-fault checks; the zero value
	// means DefaultArtefacts.
	Artefacts ArtefactRule
	// InhibitWindow is how long after a vitals alert of a resident opens a
	// further vitals rule of the same resident is taken as the same cause
	// (see inhibit.go); default DefaultInhibitWindow.
	InhibitWindow time.Duration
	// TickEvery is how often (wall time) the absence timers are checked;
	// default 10 s.
	TickEvery time.Duration
	// ThresholdsEvery is how often per-resident thresholds are re-read
	// from the store when they changed; default 2 s.
	ThresholdsEvery time.Duration
}

func (c RuleConfig) withDefaults() RuleConfig {
	if c.Absence.OutOfBed == 0 && c.Absence.NoActivity == 0 && c.Absence.Meals == nil {
		c.Absence = DefaultAbsence
	}
	if c.NEWS2 == (NEWS2Rule{}) {
		c.NEWS2 = DefaultNEWS2
	}
	if c.Battery == (BatteryRule{}) {
		c.Battery = DefaultBattery
	}
	if c.Artefacts == (ArtefactRule{}) {
		c.Artefacts = DefaultArtefacts
	}
	if c.InhibitWindow <= 0 {
		c.InhibitWindow = DefaultInhibitWindow
	}
	if c.TickEvery <= 0 {
		c.TickEvery = 10 * time.Second
	}
	if c.ThresholdsEvery <= 0 {
		c.ThresholdsEvery = 2 * time.Second
	}
	return c
}

// Validate reports every problem of the rule settings.
func (c RuleConfig) Validate() error {
	c = c.withDefaults()
	var errs []error
	if err := c.Absence.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("absence rules: %w", err))
	}
	if c.NEWS2.Window <= 0 || c.NEWS2.Stale < c.NEWS2.Window || c.NEWS2.Clear <= 0 || c.NEWS2.Sustain < 0 {
		errs = append(errs, fmt.Errorf("news2: want window > 0, stale >= window, clear > 0, sustain >= 0, got %+v", c.NEWS2))
	}
	if c.Battery.Low <= 0 || c.Battery.Clear < c.Battery.Low || c.Battery.Clear > 100 {
		errs = append(errs, fmt.Errorf("battery: want 0 < low <= clear <= 100 %%, got %+v", c.Battery))
	}
	return errors.Join(errs...)
}

// ruleState is the state of the rules of rulesvc.go; guarded by mu, never
// held while writing to the store.
type ruleState struct {
	cfg RuleConfig

	mu      sync.Mutex
	absence *absence
	// absenceOrder is held from an absence decision (under mu) until its
	// alerts are written (apply), by the timer and the event lanes alike,
	// so that the writes follow the decisions' order: without it a resident
	// back in bed right as the out-of-bed timer fired had the clear applied
	// before the raise it follows (autoResolve found nothing open yet) and
	// out_of_bed_night stayed open (TestRulesThroughService, once under load).
	absenceOrder sync.Mutex
	news2        map[string]*news2Tracker
	battery      map[string]*batteryState
	unprot       unprotected
	kinds        map[string]string // device -> kind from status messages
	inBed        map[string]float64

	// artefacts: device -> suspected-sensor-fault state; guarded by
	// Service.mu (it runs with the vitals windows), not by mu.
	artefacts       map[string]*artefacts
	artefactMetrics artefactMetrics
	// absorbed: the findings already added to an alert by inhibition
	// (inhibit.go); guarded by mu.
	absorbed map[absorbedKey]bool

	// Per-resident thresholds, and the store version they were read at.
	thMu      sync.RWMutex
	own       map[string][]Threshold
	thVersion int64
	thLoaded  bool
}

func newRuleState(c RuleConfig) *ruleState {
	c = c.withDefaults()
	return &ruleState{cfg: c, absence: newAbsence(c.Absence), news2: map[string]*news2Tracker{},
		battery: map[string]*batteryState{}, unprot: unprotected{}, kinds: map[string]string{}, inBed: map[string]float64{},
		artefacts: map[string]*artefacts{}, artefactMetrics: newArtefactMetrics(), absorbed: map[absorbedKey]bool{}}
}

func (s *Service) directory() Directory {
	if s.rules.cfg.Directory == nil {
		return nil
	}
	return s.rules.cfg.Directory()
}

func (s *Service) location(site string) *time.Location {
	if d := s.directory(); d != nil {
		return d.Location(site)
	}
	return time.UTC
}

// kindOf returns a device's kind from the registry, else from its status.
func (s *Service) kindOf(dev string) string {
	if d := s.directory(); d != nil {
		if x, ok := d.Device(dev); ok && x.Kind != "" {
			return x.Kind
		}
	}
	s.rules.mu.Lock()
	defer s.rules.mu.Unlock()
	return s.rules.kinds[dev]
}

func (s *Service) residentOf(dev string, t time.Time) (string, bool) {
	if s.residents == nil {
		return "", false
	}
	r, ok := s.residents.ResidentAt(dev, t)
	return r.ID, ok
}

// noteKind remembers the kind a device announced in its status.
func (s *Service) noteKind(dev string, k device.Kind) {
	if k == "" {
		return
	}
	s.rules.mu.Lock()
	s.rules.kinds[dev] = string(k)
	s.rules.mu.Unlock()
}

// thresholdsFor returns the vitals thresholds for a resident ("" = none):
// the defaults with the resident's own in place of the same type.
func (s *Service) thresholdsFor(resident string) []Threshold {
	if resident == "" {
		return s.cfg.Thresholds
	}
	s.rules.thMu.RLock()
	own := s.rules.own[resident]
	s.rules.thMu.RUnlock()
	return mergeThresholds(s.cfg.Thresholds, own)
}

// reloadThresholds re-reads the per-resident thresholds when the store's
// version moved.
func (s *Service) reloadThresholds(ctx context.Context) error {
	v, err := s.m.thresholdsVersion(ctx)
	if err != nil {
		return err
	}
	s.rules.thMu.RLock()
	same := s.rules.thLoaded && v == s.rules.thVersion
	s.rules.thMu.RUnlock()
	if same {
		return nil
	}
	own, err := s.m.ResidentThresholds(ctx)
	if err != nil {
		return err
	}
	s.rules.thMu.Lock()
	s.rules.own, s.rules.thVersion, s.rules.thLoaded = own, v, true
	s.rules.thMu.Unlock()
	s.log.Info("alerting: per-resident thresholds loaded", "residents", len(own), "version", v)
	return nil
}

// rulesLoop checks the absence timers every TickEvery and reloads
// per-resident thresholds every ThresholdsEvery (wall time, s.cfg.Now).
func (s *Service) rulesLoop(ctx context.Context) {
	tick := time.NewTicker(s.rules.cfg.TickEvery)
	defer tick.Stop()
	th := time.NewTicker(s.rules.cfg.ThresholdsEvery)
	defer th.Stop()
	var every logLimit
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if err := s.tickAbsence(ctx); err != nil && ctx.Err() == nil {
				s.log.Error("alerting: absence rules", "err", err)
			}
		case <-th.C:
			if err := s.reloadThresholds(ctx); err != nil && ctx.Err() == nil && every.allow(time.Now()) {
				s.log.Error("alerting: reload per-resident thresholds (logged at most once a minute)", "err", err)
			}
		}
	}
}

// tickAbsence runs the absence timers at s.cfg.Now().
func (s *Service) tickAbsence(ctx context.Context) error {
	now := s.cfg.Now()
	if d := s.directory(); d != nil {
		if ch, ok := d.(CardHolders); ok {
			holders := ch.CardHolders()
			s.rules.mu.Lock()
			for r, site := range holders {
				s.rules.absence.HasCard(r, site, now)
			}
			s.rules.mu.Unlock()
		}
	}
	s.rules.absenceOrder.Lock()
	defer s.rules.absenceOrder.Unlock()
	s.rules.mu.Lock()
	acts := s.rules.absence.Tick(now, s.location)
	s.rules.mu.Unlock()
	return s.apply(ctx, acts)
}

// apply raises or resolves what the absence rules asked for.
func (s *Service) apply(ctx context.Context, acts []absenceAction) error {
	for _, a := range acts {
		resident := a.Resident
		var err error
		if a.Clear {
			err = s.autoResolve(ctx, alertKey(&resident, a.Device, a.Type), a.Detail)
		} else {
			err = s.raiseFor(ctx, openSpec{Site: a.Site, Resident: &resident, Device: a.Device, Type: a.Type, Severity: a.Severity,
				At: a.At, Detail: a.Detail})
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// vitalsFor returns the device's vitals windows with the thresholds of
// the resident bound to it at t. Call with s.mu held.
func (s *Service) vitalsFor(dev string, t time.Time) *vitals {
	resident, _ := s.residentOf(dev, t)
	ths := s.thresholdsFor(resident)
	v := s.vitals[dev]
	if v == nil {
		v = newVitals(ths, s.cfg.MaxGap)
		s.vitals[dev] = v
	} else if !sameThresholds(v.thresholds, ths) {
		v.setThresholds(ths)
	}
	return v
}

func sameThresholds(a, b []Threshold) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !sameThreshold(a[i], b[i]) {
			return false
		}
	}
	return true
}

// afterTelemetry runs the rules other than the vitals thresholds on a
// telemetry message: threshold clears (hysteresis), NEWS2, battery, bed
// occupancy and activity.
func (s *Service) afterTelemetry(ctx context.Context, t device.Topic, tel *device.Telemetry, checked []artefactResult, cleared []clearing) error {
	for _, c := range cleared {
		var resident *string
		if r, ok := s.residentOf(t.Device, c.At); ok {
			resident = &r
		}
		if err := s.autoResolve(ctx, alertKey(resident, t.Device, c.Threshold.Type), c.Note()); err != nil {
			return err
		}
	}
	if err := s.kitTelemetry(ctx, t, tel); err != nil {
		return err
	}
	kind := s.kindOf(t.Device)
	var acts []absenceAction
	var n2 []news2Result
	var battery []batteryResult
	var batteryVal []float64
	var batteryAt []time.Time
	// Readings that are activity feed the absence rules: decide and write
	// in order with the out-of-bed timer (ruleState.absenceOrder).
	if slices.ContainsFunc(tel.Readings, func(r device.Reading) bool { return isActivity(kind, r.Values) }) {
		s.rules.absenceOrder.Lock()
		defer s.rules.absenceOrder.Unlock()
	}
	s.rules.mu.Lock()
	for i, r := range tel.Readings {
		at := r.Time()
		if kind == "" || kind == string(device.VitalsMonitor) {
			if hasVitals(r.Values) {
				tr := s.rules.news2[t.Device]
				if tr == nil {
					tr = newNEWS2Tracker(s.rules.cfg.NEWS2)
					s.rules.news2[t.Device] = tr
				}
				if len(checked[i].Began) > 0 {
					tr.forget(checked[i].Began)
				}
				// Suspect samples are kept out of the score.
				if res := tr.observe(at, checked[i].Values); res.Fired || res.Cleared {
					n2 = append(n2, res)
				}
			}
		}
		if v, ok := r.Values["battery_pct"]; ok {
			b := s.rules.battery[t.Device]
			if b == nil {
				b = &batteryState{}
				s.rules.battery[t.Device] = b
			}
			if res := b.observe(s.rules.cfg.Battery, v); res.Raise || res.Clear {
				battery, batteryVal, batteryAt = append(battery, res), append(batteryVal, v), append(batteryAt, at)
			}
		}
		resident, ok := s.residentOf(t.Device, at)
		if !ok || !isActivity(kind, r.Values) {
			continue
		}
		if v, ok := r.Values["in_bed"]; ok {
			prev, seen := s.rules.inBed[t.Device]
			s.rules.inBed[t.Device] = v
			switch {
			case seen && prev >= 0.5 && v < 0.5:
				acts = append(acts, s.rules.absence.BedExit(resident, t.Site, t.Device, at, s.location(t.Site))...)
				continue
			case seen && prev < 0.5 && v >= 0.5:
				acts = append(acts, s.rules.absence.BedEntry(resident, t.Site, t.Device, at, s.location(t.Site))...)
				continue
			}
		}
		acts = append(acts, s.rules.absence.Activity(resident, t.Site, t.Device, at)...)
	}
	s.rules.mu.Unlock()
	for _, res := range n2 {
		var resident *string
		if r, ok := s.residentOf(t.Device, res.At); ok {
			resident = &r
		}
		var err error
		if res.Cleared {
			err = s.autoResolve(ctx, alertKey(resident, t.Device, TypeNEWS2),
				fmt.Sprintf("cleared: NEWS2 below the urgent threshold for %d s (%s)", int(res.Calm/time.Second), res.Score))
		} else {
			total := float64(res.Score.Total)
			var absorbed bool
			absorbed, err = s.raiseVitals(ctx, openSpec{Site: t.Site, Device: t.Device, Type: TypeNEWS2, Severity: SeverityHigh, At: res.At,
				Detail: res.Score.String(), Value: &total})
			if err == nil && absorbed {
				// Added to another alert: fire again on the next urgent
				// score, so NEWS2 opens its own alert if that one resolves
				// while NEWS2 is still urgent.
				s.rules.mu.Lock()
				if tr := s.rules.news2[t.Device]; tr != nil {
					tr.urgent = false
				}
				s.rules.mu.Unlock()
			}
		}
		if err != nil {
			return err
		}
	}
	for i, res := range battery {
		var err error
		if res.Clear {
			err = s.autoResolve(ctx, alertKey(nil, t.Device, TypeLowBattery), fmt.Sprintf("cleared: battery %g %%", batteryVal[i]))
		} else {
			v := batteryVal[i]
			err = s.raise(ctx, openSpec{Site: t.Site, Device: t.Device, Type: TypeLowBattery, Severity: SeverityWarning, At: batteryAt[i],
				Detail: fmt.Sprintf("battery %g %% (below %g %%)", v, s.rules.cfg.Battery.Low), Value: &v})
		}
		if err != nil {
			return err
		}
	}
	return s.apply(ctx, acts)
}

// hasVitals reports whether a reading carries a NEWS2 observation.
func hasVitals(v map[string]float64) bool {
	for _, f := range news2Fields {
		if _, ok := v[f]; ok {
			return true
		}
	}
	return false
}

// Kinds of the home-safety kit whose reports are not the resident's
// activity (an alarm's or a valve's state report says nothing about the
// resident moving), and the two whose reports are activity only when they
// say someone moved (device.ContactSensor, device.MotionSensor; named here
// by value so the rules do not depend on the kit's constants).
const (
	kindContactSensor = "contact_sensor"
	kindMotionSensor  = "motion_sensor"
)

var notActivityKinds = []string{string(device.VitalsMonitor), string(device.Gateway), "smoke_alarm", "gas_alarm",
	"water_leak_sensor", "siren", "valve"}

// isActivity reports whether a reading of a device of kind is activity of
// its resident (values nil: a report known to be activity, as in a
// replay). A door or window contact's reading is activity when it carries
// its "open" state (it reports on change), a motion sensor's when
// "motion" is 1 (its 0 is its own timeout); vitals monitors, gateways and
// the alarms, sirens and valves of the safety kit are not activity; any
// other device is (bed, meal terminal, buttons, environment sensors ...).
// A device of unknown kind is, unless its reading carries vitals.
func isActivity(kind string, values map[string]float64) bool {
	switch {
	case slices.Contains(notActivityKinds, kind):
		return false
	case kind == kindContactSensor:
		_, ok := values["open"]
		return values == nil || ok
	case kind == kindMotionSensor:
		return values == nil || values["motion"] >= 0.5
	case kind == "":
		return values == nil || !hasVitals(values)
	}
	return true
}

// isActivityEvent reports whether an event of a device of kind is
// activity: a contact sensor's contact_open and contact_close, a motion
// sensor's motion, and every event of the kinds whose readings are (see
// isActivity); none of a vitals monitor, a gateway or the safety kit's
// alarms, sirens and valves.
func isActivityEvent(kind string, typ device.EventType) bool {
	switch {
	case slices.Contains(notActivityKinds, kind):
		return false
	case kind == kindContactSensor:
		return typ == "contact_open" || typ == "contact_close"
	case kind == kindMotionSensor:
		return typ == "motion"
	}
	return true
}

// ruleEvent handles the events other than fall and SOS: bed_exit,
// bed_entry, meal, low_battery, and activity for the absence rules (every
// event of a bound non-vitals device, card_tap included). A redelivery
// (same device, boot and seq) does nothing.
func (s *Service) ruleEvent(ctx context.Context, t device.Topic, e *device.Event) error {
	key := eventKey{device: t.Device, boot: e.Boot, seq: e.Seq}
	if s.recent.seen(key) {
		return nil // a redelivery
	}
	if err := s.ruleEventOnce(ctx, t, e); err != nil {
		return err
	}
	s.recent.add(key)
	return nil
}

func (s *Service) ruleEventOnce(ctx context.Context, t device.Topic, e *device.Event) error {
	at := e.Time()
	kind := s.kindOf(t.Device)
	var acts []absenceAction
	if e.Type == device.EventLowBattery {
		s.rules.mu.Lock()
		b := s.rules.battery[t.Device]
		if b == nil {
			b = &batteryState{}
			s.rules.battery[t.Device] = b
		}
		res := b.event()
		s.rules.mu.Unlock()
		if res.Raise {
			detail := "low battery reported by the device"
			var val *float64
			if p, ok := e.Attrs["battery_pct"].(float64); ok {
				detail = fmt.Sprintf("low battery reported by the device: %g %%", p)
				val = &p
			}
			if err := s.raise(ctx, openSpec{Site: t.Site, Device: t.Device, Type: TypeLowBattery, Severity: SeverityWarning, At: at,
				Detail: detail, Value: val}); err != nil {
				return err
			}
		}
	}
	resident, bound := s.residentOf(t.Device, at)
	if e.Type == device.EventMeal {
		return s.meal(ctx, t, e)
	}
	if !bound {
		if e.Type == device.EventBedExit {
			// Unassigned: the night window is the site's; still alert.
			if s.rules.cfg.Absence.Night.Contains(at, s.location(t.Site)) {
				return s.raise(ctx, openSpec{Site: t.Site, Device: t.Device, Type: TypeBedExit, Severity: SeverityHigh, At: at,
					Detail: "out of bed at " + at.In(s.location(t.Site)).Format("15:04") + " (unassigned bed sensor)"})
			}
		}
		return nil
	}
	loc := s.location(t.Site)
	s.rules.absenceOrder.Lock()
	defer s.rules.absenceOrder.Unlock()
	s.rules.mu.Lock()
	switch {
	case e.Type == device.EventBedExit:
		acts = s.rules.absence.BedExit(resident, t.Site, t.Device, at, loc)
	case e.Type == device.EventBedEntry:
		acts = s.rules.absence.BedEntry(resident, t.Site, t.Device, at, loc)
	case isActivityEvent(kind, e.Type):
		acts = s.rules.absence.Activity(resident, t.Site, t.Device, at)
	}
	s.rules.mu.Unlock()
	return s.apply(ctx, acts)
}

// meal applies a meal event: the meal's resident is the card holder, not
// the terminal's.
func (s *Service) meal(ctx context.Context, t device.Topic, e *device.Event) error {
	at := e.Time()
	card, _ := e.Attrs["card"].(string)
	meal, _ := e.Attrs["meal"].(string)
	d := s.directory()
	if d == nil || card == "" {
		return nil
	}
	r, ok := d.ResidentByCard(card, at)
	if !ok {
		return nil
	}
	if r.SiteID != "" && r.SiteID != t.Site {
		// A gateway speaks only for the residents of its own site: a card
		// of another site's resident would record (or clear) that
		// resident's meal.
		s.refuse(t, device.ChanEvent, ReasonCardOtherSite,
			fmt.Sprintf("meal card %s belongs to resident %s of site %s, not to site %s", card, r.ID, r.SiteID, t.Site))
		return nil
	}
	s.rules.absenceOrder.Lock()
	defer s.rules.absenceOrder.Unlock()
	s.rules.mu.Lock()
	acts := s.rules.absence.Meal(r.ID, r.SiteID, t.Device, meal, at, s.location(r.SiteID))
	s.rules.mu.Unlock()
	return s.apply(ctx, acts)
}

// event applies a decoded event: fall and SOS open (or repeat) their
// critical alert at once; the others go to ruleEvent.
func (s *Service) event(ctx context.Context, t device.Topic, e *device.Event) error {
	s.events.WithLabelValues(string(e.Type)).Inc()
	var typ, detail string
	switch e.Type {
	case device.EventFall:
		typ, detail = TypeFall, "fall detected"
		if p, ok := e.Attrs["peak_accel_ms2"].(float64); ok {
			detail += fmt.Sprintf(", peak %g m/s^2", p)
		}
	case device.EventSOS:
		typ, detail = TypeSOS, "SOS button pressed"+s.sosWhere(t, e)
	default:
		if done, err := s.safetyEvent(ctx, t, e); done || err != nil {
			return err
		}
		return s.ruleEvent(ctx, t, e)
	}
	// A redelivery of an event already raised (QoS 1, a reconnect, a
	// replayed spool) raises nothing, even if its alert was resolved since.
	key := eventKey{device: t.Device, boot: e.Boot, seq: e.Seq}
	if s.recent.seen(key) {
		s.log.Info("alerting: duplicate event ignored", "event", key.String(), "type", e.Type)
		return nil
	}
	// A new distinct event on an open alert is announced as "repeated".
	err := s.raise(ctx, openSpec{Site: t.Site, Device: t.Device, Type: typ, Severity: SeverityCritical, At: e.Time(), Detail: detail,
		NotifyRepeat: true, EventKey: key.String()})
	if err != nil {
		return err
	}
	s.recent.add(key)
	return nil
}

// telemetry applies a decoded telemetry message: the vitals windows, then
// the other rules (afterTelemetry).
func (s *Service) telemetry(ctx context.Context, t device.Topic, tel *device.Telemetry) error {
	kind := s.kindOf(t.Device)
	s.mu.Lock()
	var v *vitals
	if len(tel.Readings) > 0 {
		v = s.vitalsFor(t.Device, tel.Readings[0].Time())
	}
	var fired []firing
	checked := make([]artefactResult, len(tel.Readings))
	var flags []artefactResult
	for i, r := range tel.Readings {
		checked[i] = artefactResult{Values: r.Values}
		if (kind == "" || kind == string(device.VitalsMonitor)) && hasVitals(r.Values) {
			a := s.rules.artefacts[t.Device]
			if a == nil {
				a = newArtefacts(s.rules.cfg.Artefacts)
				s.rules.artefacts[t.Device] = a
			}
			checked[i] = a.check(r.Time(), r.Values)
			if len(checked[i].Began) > 0 {
				v.forget(checked[i].Began)
			}
			for k, n := range checked[i].Kept {
				s.rules.artefactMetrics.kept.WithLabelValues(k[0], k[1]).Add(float64(n))
			}
			if checked[i].Flag || checked[i].Unflag {
				flags = append(flags, checked[i])
			}
		}
		fired = append(fired, v.observe(tel.Boot, r.Seq, r.Time(), checked[i].Values)...)
	}
	var cleared []clearing
	if v != nil {
		cleared = v.takeCleared()
	}
	s.mu.Unlock()
	for _, f := range flags {
		at := tel.Readings[len(tel.Readings)-1].Time()
		var err error
		if f.Flag {
			err = s.raise(ctx, openSpec{Site: t.Site, Device: t.Device, Type: TypeSensorSuspect, Severity: SeverityWarning, At: at,
				Detail: f.Detail})
		} else {
			var resident *string
			if r, ok := s.residentOf(t.Device, at); ok {
				resident = &r
			}
			err = s.autoResolve(ctx, alertKey(resident, t.Device, TypeSensorSuspect), "cleared: plausible readings again")
		}
		if err != nil {
			return err
		}
	}
	for _, f := range fired {
		worst := f.Worst
		if _, err := s.raiseVitals(ctx, openSpec{Site: t.Site, Device: t.Device, Type: f.Threshold.Type, Severity: f.Threshold.Severity,
			At: f.At, Detail: f.Detail(), Value: &worst}); err != nil {
			return err
		}
	}
	return s.afterTelemetry(ctx, t, tel, checked, cleared)
}
