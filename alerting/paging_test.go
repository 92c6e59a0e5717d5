package alerting

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/internal/sqldb/sqldbtest"
)

// pagingSettings: two families (of res-001 and res-002), a carer, a team
// holding everyone, and a fallback receiver.
func pagingSettings() Settings {
	return Settings{
		Recipients: []Recipient{
			{ID: "carer", Name: "Carer", Role: "caregiver", Email: "carer@example.org", Lang: "zh-CN"},
			{ID: "fam1", Name: "Daughter of 1", Role: "family", Email: "f1@example.org", Residents: []string{"res-001"}},
			{ID: "fam2", Name: "Son of 2", Role: "family", Email: "f2@example.org", Residents: []string{"res-002"},
				Quiet: &QuietHours{Start: mustClock("00:00"), End: mustClock("00:00"), Zone: "Asia/Shanghai"}},
			{ID: "station", Name: "Station display", Role: "station", InApp: true},
		},
		Teams:     []Team{{ID: "all", Members: []string{"carer", "fam1", "fam2"}}},
		Fallbacks: []Fallback{{Site: "demo", Recipients: []string{"station"}}},
		Rosters: []Roster{{Site: "demo", Zone: "Asia/Shanghai", Shifts: []Shift{
			{Name: "day", Start: mustClock("07:00"), End: mustClock("19:00"), Weekdays: []string{"mon", "tue", "wed", "thu", "fri"}, OnDuty: []string{"carer"}},
		}}},
	}
}

func mustClock(s string) ClockTime {
	c, err := ParseClock(s)
	if err != nil {
		panic(err)
	}
	return c
}

func ids(cs []Contact) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.ID)
	}
	return out
}

// A family contact is paged only about its own elder, whichever target
// kind names it; its quiet hours hold back non-critical alerts only.
func TestFamilyOnlyAboutOwnElder(t *testing.T) {
	t.Parallel()
	s := pagingSettings()
	res2 := "res-002"
	at := time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC) // Monday 11:00 in Shanghai
	crit := Alert{Site: "demo", Resident: &res2, Type: TypeSOS, Severity: SeverityCritical}
	for _, tc := range []struct {
		target string
		want   []string
	}{
		{"role:family", []string{"fam2"}},
		{"team:all", []string{"carer", "fam2"}},
		{"account:fam1", nil},
		{"account:fam2", []string{"fam2"}},
		{"recipient:fam1", nil},
	} {
		t.Run(tc.target, func(t *testing.T) {
			got, _ := s.resolveTargets([]string{tc.target}, crit, at)
			if !slices.Equal(ids(got), tc.want) {
				t.Fatalf("%s for res-002's SOS pages %v, want %v", tc.target, ids(got), tc.want)
			}
		})
	}
	t.Run("quiet hours hold a warning, not a critical", func(t *testing.T) {
		warn := Alert{Site: "demo", Resident: &res2, Type: TypeSpO2Low, Severity: SeverityWarning}
		got, quiet := s.resolveTargets([]string{"role:family"}, warn, at)
		if len(got) != 0 || !slices.Equal(quiet, []string{"fam2"}) {
			t.Fatalf("warning pages %v quiet %v, want nobody and fam2 quiet", ids(got), quiet)
		}
	})
	t.Run("channels", func(t *testing.T) {
		s := pagingSettings()
		s.Recipients[2].Channels = []string{"in_app"}
		s.Recipients[2].InApp = true
		got, _ := s.resolveTargets([]string{"role:family"}, crit, at)
		if len(got) != 1 || got[0].Email != "" || !got[0].InApp {
			t.Fatalf("fam2 chose in-app only, got %+v", got)
		}
	})
	t.Run("unassigned device pages no family", func(t *testing.T) {
		a := crit
		a.Resident = nil
		if got, _ := s.resolveTargets([]string{"role:family", "team:all"}, a, at); !slices.Equal(ids(got), []string{"carer"}) {
			t.Fatalf("got %v, want carer only", ids(got))
		}
	})
}

func TestRosterWeekdaysExceptionsSwaps(t *testing.T) {
	t.Parallel()
	r := Roster{Site: "demo", Zone: "Asia/Shanghai", Shifts: []Shift{
		{Name: "night", Start: mustClock("19:00"), End: mustClock("07:00"), Weekdays: []string{"fri"}, OnDuty: []string{"a", "b"}},
		{Name: "night", Start: mustClock("19:00"), End: mustClock("07:00"), OnDuty: []string{"c"}},
	},
		Exceptions: []RosterException{{Date: "2026-12-24", Shift: "night", OnDuty: []string{"x"}}},
		Swaps:      []Swap{{Date: "2026-12-11", Shift: "night", Out: "b", In: "d"}},
	}
	sh := mustZone("Asia/Shanghai")
	for _, tc := range []struct {
		at   time.Time
		want []string
	}{
		{time.Date(2026, 12, 4, 23, 0, 0, 0, sh), []string{"a", "b"}},  // Friday night
		{time.Date(2026, 12, 5, 3, 0, 0, 0, sh), []string{"a", "b"}},   // still Friday's shift after midnight
		{time.Date(2026, 12, 5, 23, 0, 0, 0, sh), []string{"c"}},       // Saturday
		{time.Date(2026, 12, 11, 20, 0, 0, 0, sh), []string{"a", "d"}}, // swap
		{time.Date(2026, 12, 25, 1, 0, 0, 0, sh), []string{"x"}},       // Christmas Eve's night, exception
	} {
		got, ok := r.ShiftAt(tc.at)
		if !ok || !slices.Equal(got.OnDuty, tc.want) {
			t.Errorf("%s: on duty %v (%v), want %v", tc.at, got.OnDuty, ok, tc.want)
		}
	}
}

// Forms that name someone who cannot be paged, or a policy that reaches
// nobody, are refused with the reason; nothing is stored.
func TestPutRefusesUnpageable(t *testing.T) {
	t.Parallel()
	m := openTestManager(t, sqldbtest.SQLiteDSN(t))
	ctx := context.Background()
	if err := m.ImportSettings(ctx, "test", pagingSettings()); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		put  func() error
		want string
	}{
		{"unknown account in roster", func() error {
			return m.PutRoster(ctx, "admin", Roster{Site: "demo", Zone: "UTC", Shifts: []Shift{{Name: "day", OnDuty: []string{"carer", "lead"}}}})
		}, `unknown staff account "lead"`},
		{"account without contact", func() error {
			if err := m.PutSetting(ctx, "test", KindRecipient, "mute", Recipient{ID: "mute", Role: "caregiver"}); err != nil {
				return err
			}
			return m.PutPolicy(ctx, "admin", Policy{ID: "p", Steps: []Step{{Targets: []string{"account:mute", "account:carer"}}}})
		}, `"mute" cannot be paged`},
		{"policy reaches nobody", func() error {
			return m.PutPolicy(ctx, "admin", Policy{ID: "p", Steps: []Step{{Targets: []string{"role:nurse_lead"}}}})
		}, "reach nobody"},
		{"unknown team", func() error {
			return m.PutPolicy(ctx, "admin", Policy{ID: "p", Steps: []Step{{Targets: []string{"team:night", "account:carer"}}}})
		}, `unknown team "night"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.put()
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want ErrInvalid with %q", err, tc.want)
			}
		})
	}
	s, err := m.Settings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Policies) != 0 || len(s.Rosters[0].Shifts[0].OnDuty) != 1 {
		t.Fatalf("a refused form changed the settings: %+v", s)
	}
	if err := m.PutPolicy(ctx, "admin", Policy{ID: "p", Steps: []Step{{Targets: []string{"on_duty"}}, {After: Duration(time.Minute), Targets: []string{"role:family"}}}}); err != nil {
		t.Fatalf("valid policy refused: %v", err)
	}
}

// At alert time a step that resolves to nobody pages the site's fallback
// receivers and says so in the alert's history.
func TestStepReachingNobodyPagesFallback(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC) // Sunday: no day shift
	m := openTestManager(t, sqldbtest.SQLiteDSN(t))
	m.now = func() time.Time { return start }
	ctx := context.Background()
	s := pagingSettings()
	s.Policies = []Policy{{ID: "p", Steps: []Step{{Targets: []string{"on_duty"}}}}}
	if err := m.ImportSettings(ctx, "test", s); err != nil {
		t.Fatal(err)
	}
	a := openAt(t, m, "res-002", TypeFall, SeverityCritical)
	ns := notices(t, m, a.ID)
	if len(ns) == 0 || ns[0].Escalation == nil || !ns[0].Escalation.Fallback || !slices.Equal(ids(ns[0].Escalation.Recipients), []string{"station"}) {
		t.Fatalf("opening notice %+v, want the fallback station paged", ns)
	}
	h, err := m.History(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(h, func(e HistoryEntry) bool { return strings.Contains(e.Detail, "reached nobody") }) {
		t.Fatalf("history %+v has no operations note", h)
	}
}

// The YAML import goes through the same validation, merged with what is
// stored: it may name an account stored earlier; it may not name an
// unknown one.
func TestImportValidatedWithStored(t *testing.T) {
	t.Parallel()
	m := openTestManager(t, sqldbtest.SQLiteDSN(t))
	ctx := context.Background()
	if err := m.PutRecipient(ctx, "dashboard", Recipient{ID: "carer", Role: "caregiver", InApp: true}); err != nil {
		t.Fatal(err)
	}
	ok := Settings{Policies: []Policy{{ID: "p", Steps: []Step{{Targets: []string{"account:carer"}}}}}}
	if err := m.ImportSettings(ctx, "import", ok); err != nil {
		t.Fatalf("import naming a stored account: %v", err)
	}
	bad := Settings{Policies: []Policy{{ID: "q", Steps: []Step{{Targets: []string{"account:ghost"}}}}}}
	if err := m.ImportSettings(ctx, "import", bad); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `unknown staff account "ghost"`) {
		t.Fatalf("import naming an unknown account: %v", err)
	}
}
