package alerting

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/device/registry"
	"github.com/eldercare-iot/eldercare/internal/sqldb"
	"github.com/eldercare-iot/eldercare/internal/sqldb/sqldbtest"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// wardRegistry: site demo with room r1 in ward East, r2 in ward West and
// r3 in no ward; res-001, res-002 and res-003 in their beds.
const wardRegistry = `
sites:
  - id: demo
    name: Demo
    timezone: UTC
    rooms:
      - {id: r1, name: "101", ward: East, beds: [{id: b1, name: A}]}
      - {id: r2, name: "201", ward: West, beds: [{id: b2, name: A}]}
      - {id: r3, name: "301", beds: [{id: b3, name: A}]}
residents:
  - {id: res-001, site: demo, bed: b1, name: One}
  - {id: res-002, site: demo, bed: b2, name: Two}
  - {id: res-003, site: demo, bed: b3, name: Three}
`

func openWardRegistry(t *testing.T, dsn string) *RegistryWards {
	t.Helper()
	ctx := context.Background()
	db, err := sqldb.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	st, err := registry.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := registry.ParseYAML(strings.NewReader(wardRegistry))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Import(ctx, doc); err != nil {
		t.Fatal(err)
	}
	sn, err := st.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return NewRegistryWards(func() *registry.Snapshot { return sn }, st.Rooms)
}

// wardSettings: a nurse per ward and one for the site, each on an
// all-day shift (Start == End) of their roster.
func wardSettings() Settings {
	allDay := func(id string) []Shift {
		return []Shift{{Name: "all", Start: mustClock("00:00"), End: mustClock("00:00"), OnDuty: []string{id}}}
	}
	return Settings{
		Recipients: []Recipient{
			{ID: "east-nurse", Name: "East nurse", Role: "caregiver", Email: "east@example.org"},
			{ID: "west-nurse", Name: "West nurse", Role: "caregiver", Email: "west@example.org"},
			{ID: "site-nurse", Name: "Site nurse", Role: "caregiver", Email: "site@example.org"},
		},
		Rosters: []Roster{
			{Site: "demo", Zone: "UTC", Shifts: allDay("site-nurse")},
			{Site: "demo", Ward: "East", Zone: "UTC", Shifts: allDay("east-nurse")},
			{Site: "demo", Ward: "West", Zone: "UTC", Shifts: allDay("west-nurse")},
		},
		Policies: []Policy{
			{ID: "a-fall", Types: []string{TypeFall}, Steps: []Step{{Targets: []string{"ward:West"}}}},
			{ID: "b-sos", Types: []string{TypeSOS}, Steps: []Step{{Targets: []string{"on_duty"}}}},
		},
	}
}

// End to end through a real broker and a real registry (rooms with
// wards): an SOS of a resident in ward East pages the East nurse and not
// the West one, ward West's the West nurse, a resident in a room without a
// ward the site's roster; a "ward:West" step pages the West nurse for a
// fall in East.
func TestWardRosterPagesWardNurse(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	wards := openWardRegistry(t, sqldbtest.SQLiteDSN(t))
	for dev, res := range map[string]string{"sos-1": "res-001", "sos-2": "res-002", "sos-3": "res-003", "fall-1": "res-001"} {
		e.binding[dev] = res
	}
	r := e.start(func(c *Config) { c.Wards = wards })
	ctx := context.Background()
	if err := r.m.ImportSettings(ctx, "test", wardSettings()); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixMilli()
	for _, dev := range []string{"sos-1", "sos-2", "sos-3"} {
		e.publish(dev, device.ChanEvent, device.Event{V: 1, Device: dev, Boot: 1, ID: 1, Seq: 1, TS: now, Type: device.EventSOS})
	}
	e.publish("fall-1", device.ChanEvent, device.Event{V: 1, Device: "fall-1", Boot: 1, ID: 1, Seq: 1, TS: now, Type: device.EventFall})
	testenv.EventuallyTrue(t, 10*time.Second, "three sos and a fall", func() bool {
		return len(openAlerts(t, r.m, TypeSOS)) == 3 && len(openAlerts(t, r.m, TypeFall)) == 1
	})
	want := map[string][]string{"res-001": {"east-nurse"}, "res-002": {"west-nurse"}, "res-003": {"site-nurse"}}
	for _, a := range openAlerts(t, r.m, TypeSOS) {
		ns := notices(t, r.m, a.ID)
		if len(ns) == 0 || ns[0].Escalation == nil || ns[0].Escalation.Fallback || !slices.Equal(ids(ns[0].Escalation.Recipients), want[*a.Resident]) {
			t.Errorf("sos of %s paged %+v, want %v", *a.Resident, ns, want[*a.Resident])
		}
	}
	fall := openAlerts(t, r.m, TypeFall)[0]
	if ns := notices(t, r.m, fall.ID); len(ns) == 0 || ns[0].Escalation == nil || !slices.Equal(ids(ns[0].Escalation.Recipients), []string{"west-nurse"}) {
		t.Errorf("fall with a ward:West step paged %+v, want west-nurse", ns)
	}
	if got := openAlerts(t, r.m, TypeEscalationUnrouted); len(got) != 0 {
		t.Errorf("unrouted alerts %+v", got)
	}
}

// A roster of a ward the site does not have, and a step naming a ward
// without a roster, are refused with the reason; a known ward is stored
// under "<site>/<ward>" next to the site's roster.
func TestWardValidation(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, dsn string) {
		t.Parallel()
		ctx := context.Background()
		m := openTestManager(t, dsn)
		m.SetWards(openWardRegistry(t, dsn))
		if err := m.ImportSettings(ctx, "test", wardSettings()); err != nil {
			t.Fatal(err)
		}
		bad := Roster{Site: "demo", Ward: "North", Zone: "UTC", Shifts: []Shift{{Name: "all", OnDuty: []string{"east-nurse"}}}}
		err := m.PutRoster(ctx, "admin", bad)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `unknown ward "North"`) || !strings.Contains(err.Error(), "East, West") {
			t.Fatalf("roster of an unknown ward: %v", err)
		}
		err = m.PutPolicy(ctx, "admin", Policy{ID: "p", Steps: []Step{{Targets: []string{"ward:North"}}}})
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `unknown ward "North"`) {
			t.Fatalf("policy naming a ward without a roster: %v", err)
		}
		ok := Roster{Site: "demo", Ward: "East", Zone: "UTC", Shifts: []Shift{{Name: "all", OnDuty: []string{"west-nurse"}}}}
		if err := m.PutRoster(ctx, "admin", ok); err != nil {
			t.Fatal(err)
		}
		s, err := m.Settings(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Rosters) != 3 {
			t.Fatalf("rosters %+v, want site, East and West", s.Rosters)
		}
		if r, _ := s.wardRoster("demo", "East"); !slices.Equal(r.Shifts[0].OnDuty, []string{"west-nurse"}) {
			t.Errorf("East roster %+v", r)
		}
		if r, _ := s.wardRoster("demo", ""); !slices.Equal(r.Shifts[0].OnDuty, []string{"site-nurse"}) {
			t.Errorf("site roster %+v, replaced by the ward's", r)
		}
		long := Roster{Site: "demo", Ward: strings.Repeat("w", MaxWardLen+1), Zone: "UTC", Shifts: []Shift{{Name: "all", OnDuty: []string{"east-nurse"}}}}
		if err := long.Validate(); err == nil {
			t.Error("a 41-character ward accepted")
		}
	})
}

// fixedWards puts every resident's alert in one ward.
type fixedWards string

func (w fixedWards) WardOf(a Alert) string {
	if a.Resident == nil {
		return ""
	}
	return string(w)
}
func (w fixedWards) SiteWards(string) ([]string, bool) { return []string{string(w)}, true }

// TestWardRosterGapFallsBackToSite: ward East is staffed by day only
// (07:00-19:00 Europe/London); the site's roster has a night nurse. At
// 03:00 local, on an ordinary night and on both nights the clocks change,
// an SOS of an East resident pages the site's night nurse through
// "on_duty" (before the fix the ward's roster won even with no shift
// covering 03:00: the step reached nobody and only the fallback was
// paged). By day it pages the East nurse; a day whose exception leaves
// East with nobody pages the site's roster, and with nobody there either
// the step reaches nobody (fallback). An explicit "ward:East" target stays
// the ward's own staff: at night it reaches nobody.
func TestWardRosterGapFallsBackToSite(t *testing.T) {
	t.Parallel()
	s := Settings{
		Recipients: []Recipient{
			{ID: "east-nurse", Name: "East nurse", Role: "caregiver", Email: "east@example.org"},
			{ID: "night-nurse", Name: "Night nurse", Role: "caregiver", Email: "night@example.org"},
			{ID: "station", Name: "Station", Role: "station", InApp: true},
		},
		Rosters: []Roster{
			{Site: "demo", Zone: "Europe/London", Shifts: []Shift{{Name: "night", Start: mustClock("19:00"), End: mustClock("07:00"), OnDuty: []string{"night-nurse"}}}},
			{Site: "demo", Ward: "East", Zone: "Europe/London",
				Shifts:     []Shift{{Name: "day", Start: mustClock("07:00"), End: mustClock("19:00"), OnDuty: []string{"east-nurse"}}},
				Exceptions: []RosterException{{Date: "2026-12-08", Shift: "day", OnDuty: []string{}}}},
		},
		Fallbacks: []Fallback{{Site: "demo", Recipients: []string{"station"}}},
	}.withWards(fixedWards("East"))
	res := "res-001"
	sos := Alert{ID: 1, Site: "demo", Resident: &res, Type: TypeSOS, Severity: SeverityCritical}
	onDuty := Policy{ID: "sos", Types: []string{TypeSOS}, Steps: []Step{{Targets: []string{"on_duty"}}}}
	ward := Policy{ID: "ward", Types: []string{TypeSOS}, Steps: []Step{{Targets: []string{"ward:East"}}}}
	london, err := time.LoadLocation("Europe/London")
	if err != nil {
		t.Skipf("no tz database: %v", err)
	}
	for _, c := range []struct {
		name     string
		at       time.Time
		p        Policy
		want     []string
		fallback bool
		shift    string
	}{
		{"ordinary night", time.Date(2026, 12, 7, 3, 0, 0, 0, london), onDuty, []string{"night-nurse"}, false, "night"},
		{"spring forward", time.Date(2026, 3, 29, 3, 0, 0, 0, london), onDuty, []string{"night-nurse"}, false, "night"},
		{"fall back, first 01:30", time.Date(2026, 10, 25, 0, 30, 0, 0, time.UTC), onDuty, []string{"night-nurse"}, false, "night"},
		{"fall back, 03:00", time.Date(2026, 10, 25, 3, 0, 0, 0, london), onDuty, []string{"night-nurse"}, false, "night"},
		{"day", time.Date(2026, 12, 7, 10, 0, 0, 0, london), onDuty, []string{"east-nurse"}, false, "day"},
		{"day emptied by an exception, no site day shift", time.Date(2026, 12, 8, 10, 0, 0, 0, london), onDuty, []string{"station"}, true, ""},
		{"ward target at night", time.Date(2026, 12, 7, 3, 0, 0, 0, london), ward, []string{"station"}, true, "night"},
	} {
		e := s.stepInfo(c.p, 0, sos, c.at)
		if !slices.Equal(ids(e.Recipients), c.want) || e.Fallback != c.fallback || e.Shift != c.shift {
			t.Errorf("%s (%s): paged %v fallback %v shift %q, want %v fallback %v shift %q", c.name, c.at.In(london).Format(time.RFC3339),
				ids(e.Recipients), e.Fallback, e.Shift, c.want, c.fallback, c.shift)
		}
	}
}
