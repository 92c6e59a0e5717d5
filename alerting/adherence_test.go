package alerting

import (
	"context"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/internal/sqldb/sqldbtest"
)

// TestDoseRecords: a missed dose taken later becomes late; a missed
// record never overwrites a taken one; Doses filters by resident and due
// time.
func TestDoseRecords(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, dsn string) {
		t.Parallel()
		m := openTestManager(t, dsn)
		ctx := context.Background()
		loc, _ := time.LoadLocation("Asia/Shanghai")
		d1 := time.Date(2026, 12, 7, 8, 0, 0, 0, loc)
		d2 := time.Date(2026, 12, 7, 20, 0, 0, 0, loc)
		for _, x := range []DoseRecord{
			{Resident: "r1", Site: "s", Slot: "08:00", Due: d1, State: DoseMissed},
			{Resident: "r1", Site: "s", Slot: "08:00", Due: d1, State: DoseTaken, Taken: d1.Add(2 * time.Hour)},
			{Resident: "r1", Site: "s", Slot: "20:00", Due: d2, State: DoseTaken, Taken: d2.Add(5 * time.Minute)},
			{Resident: "r1", Site: "s", Slot: "20:00", Due: d2, State: DoseMissed},
			{Resident: "r2", Site: "s", Slot: "08:00", Due: d1, State: DoseMissed},
		} {
			if err := m.recordDose(ctx, x); err != nil {
				t.Fatal(err)
			}
		}
		got, err := m.Doses(ctx, []string{"r1"}, d1.Add(-time.Hour), d2.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || got[0].State != DoseLate || !got[0].Taken.Equal(d1.Add(2*time.Hour)) || got[1].State != DoseTaken {
			t.Errorf("r1 doses %+v", got)
		}
		all, err := m.Doses(ctx, nil, d1, d1.Add(time.Minute))
		if err != nil || len(all) != 2 || all[1].Resident != "r2" || all[1].State != DoseMissed {
			t.Errorf("all doses at 08:00: %+v %v", all, err)
		}
	})
}
