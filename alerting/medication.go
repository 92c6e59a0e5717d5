// Medication (issue 13 item 3): each resident's schedule (registry
// Resident.Medication: local HH:MM in the site's zone and a tolerance) is
// checked against the pill box's dose_taken events (attribute "slot" names
// the schedule's HH:MM). A dose not taken by its time plus tolerance raises
// `dose_missed` for the resident, once per dose; the resident's
// notification routing (caregiver, family by preference) applies. A late
// dose_taken resolves the alert.

package alerting

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/device/registry"
)

// TypeDoseMissed: a scheduled dose was not taken within its tolerance. High.
const TypeDoseMissed = "dose_missed"

// ProgrammeConfig configures the programme rules that run on a schedule
// rather than on a message (dose_missed, overdue visits).
type ProgrammeConfig struct {
	// Residents lists every resident with their medication schedule, visit
	// cadence and vulnerability (e.g. a registry Store's Residents(ctx,
	// "")). nil: the dose_missed and overdue-visit rules are off.
	Residents func(ctx context.Context) ([]registry.Resident, error)
	// Every is how often (wall time, Config.Now) the schedules are checked;
	// default 30 s.
	Every time.Duration
	// DoorOpenTooLong is how long a door contact may stay open before
	// door_open_long; default DefaultDoorOpenTooLong (10 min).
	DoorOpenTooLong time.Duration
}

// doseState remembers doses taken and missed doses raised, by resident,
// slot and the slot's local date. Guarded by commander.mu.
type doseState struct {
	since  time.Time // the first check: doses due before it are not judged
	taken  map[string]time.Time
	raised map[string]bool
}

func newDoseState() *doseState {
	return &doseState{taken: map[string]time.Time{}, raised: map[string]bool{}}
}

func doseKey(resident, slot string, due time.Time) string {
	return resident + "|" + slot + "|" + due.Format("2006-01-02")
}

// doseKeyDate returns the date of a doseKey (midnight UTC of its local
// date, close enough to forget old keys).
func doseKeyDate(k string) (time.Time, bool) {
	i := strings.LastIndexByte(k, '|')
	if i < 0 {
		return time.Time{}, false
	}
	d, err := time.Parse("2006-01-02", k[i+1:])
	return d, err == nil
}

// slotDue returns the occurrence of slot (HH:MM in loc) nearest to at.
func slotDue(slot string, at time.Time, loc *time.Location) (time.Time, bool) {
	m, err := registry.ParseClock(slot)
	if err != nil {
		return time.Time{}, false
	}
	l := at.In(loc)
	var best time.Time
	for d := -1; d <= 1; d++ {
		due := time.Date(l.Year(), l.Month(), l.Day()+d, m/60, m%60, 0, 0, loc)
		if best.IsZero() || absDur(due.Sub(at)) < absDur(best.Sub(at)) {
			best = due
		}
	}
	return best, true
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// doseTaken records a pill box's dose_taken for the resident bound to it.
func (s *Service) doseTaken(ctx context.Context, t device.Topic, e *device.Event) error {
	at := e.Time()
	resident, ok := s.residentOf(t.Device, at)
	slot, _ := e.Attrs["slot"].(string)
	if !ok || slot == "" {
		return nil
	}
	due, ok := slotDue(slot, at, s.location(t.Site))
	if !ok {
		return nil // a compartment label, not a schedule time
	}
	k := doseKey(resident, slot, due)
	s.cmds.mu.Lock()
	s.cmds.doses.taken[k] = at
	wasRaised := s.cmds.doses.raised[k]
	// The resident's dose_missed alert covers every missed dose (one
	// alert per resident): it clears only when none is still missing.
	var stillMissed []string
	for rk := range s.cmds.doses.raised {
		if _, ok := s.cmds.doses.taken[rk]; !ok && strings.HasPrefix(rk, resident+"|") {
			stillMissed = append(stillMissed, strings.TrimPrefix(rk, resident+"|"))
		}
	}
	s.cmds.mu.Unlock()
	state := DoseTaken
	if wasRaised || at.After(due.Add(s.doseTolerance(t.Device, slot, at))) {
		state = DoseLate
	}
	if err := s.durably(ctx, "record dose of "+resident, func(ctx context.Context) error {
		return s.m.recordDose(ctx, DoseRecord{Resident: resident, Site: t.Site, Slot: slot, Due: due, State: state, Taken: at})
	}); err != nil {
		return err
	}
	if wasRaised && len(stillMissed) > 0 {
		slices.Sort(stillMissed)
		s.log.Info("alerting: a missed dose was taken late; the dose_missed alert stays open for the others", "resident", resident,
			"slot", slot, "still_missed", stillMissed)
		return nil
	}
	if wasRaised {
		return s.autoResolve(ctx, alertKey(&resident, t.Device, TypeDoseMissed),
			fmt.Sprintf("cleared: the %s dose was taken late, at %s", slot, at.In(s.location(t.Site)).Format("15:04")))
	}
	return nil
}

// tickDoses raises dose_missed for each dose of today or yesterday (local)
// whose deadline passed by now without a dose_taken.
func (s *Service) tickDoses(ctx context.Context, residents []registry.Resident, now time.Time) error {
	type miss struct {
		r    registry.Resident
		dose registry.Dose
		due  time.Time
	}
	var out []miss
	s.cmds.mu.Lock()
	ds := s.cmds.doses
	if ds.since.IsZero() {
		ds.since = now
	}
	for _, r := range residents {
		if len(r.Medication) == 0 {
			continue
		}
		loc := s.location(r.SiteID)
		l := now.In(loc)
		for d := -1; d <= 0; d++ {
			for _, dose := range r.Medication {
				m, err := registry.ParseClock(dose.Time)
				if err != nil {
					continue
				}
				due := time.Date(l.Year(), l.Month(), l.Day()+d, m/60, m%60, 0, 0, loc)
				deadline := due.Add(dose.Tolerance)
				k := doseKey(r.ID, dose.Time, due)
				if now.Before(deadline) || deadline.Before(ds.since) || ds.raised[k] {
					continue
				}
				if _, ok := ds.taken[k]; ok {
					continue
				}
				ds.raised[k] = true
				out = append(out, miss{r: r, dose: dose, due: due})
			}
		}
	}
	// Forget doses dated more than three days ago, taken and raised
	// alike (by the dose's date), so a raised dose never outlives its
	// taken record.
	for k := range ds.taken {
		if due, ok := doseKeyDate(k); !ok || now.Sub(due) > 72*time.Hour {
			delete(ds.taken, k)
		}
	}
	for k := range ds.raised {
		if due, ok := doseKeyDate(k); !ok || now.Sub(due) > 72*time.Hour {
			delete(ds.raised, k)
		}
	}
	s.cmds.mu.Unlock()
	for _, x := range out {
		id := x.r.ID
		if err := s.durably(ctx, "record missed dose of "+id, func(ctx context.Context) error {
			return s.m.recordDose(ctx, DoseRecord{Resident: id, Site: x.r.SiteID, Slot: x.dose.Time, Due: x.due, State: DoseMissed})
		}); err != nil {
			return err
		}
		what := "the " + x.dose.Time + " dose"
		if x.dose.Medication != "" {
			what += " (" + x.dose.Medication + ")"
		}
		err := s.raiseFor(ctx, openSpec{Site: x.r.SiteID, Resident: &id, Device: "", Type: TypeDoseMissed, Severity: SeverityHigh, At: now,
			Detail: fmt.Sprintf("%s of %s was not taken within %s", what, x.due.Format("2006-01-02"), x.dose.Tolerance)})
		if err != nil {
			return err
		}
	}
	return nil
}
