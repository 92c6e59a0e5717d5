package dashboard

import (
	"slices"
	"testing"
	"time"

	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
	"github.com/influxdata/influxdb-client-go/v2/api/write"

	"github.com/eldercare-iot/eldercare/device/registry"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// TestFluxReports runs the manager's InfluxDB queries (meals served, card
// taps, windowed vitals) against a real InfluxDB 1.8 with points shaped as
// ingest writes them (measurement events: tags site, device, resident,
// type; field count = 1).
func TestFluxReports(t *testing.T) {
	t.Parallel()
	url, db := testenv.SharedInflux(t, true)
	bucket := db + "/autogen"
	ctx := t.Context()
	client := influxdb2.NewClient(url, "")
	defer client.Close()

	now := time.Now().UTC()
	base := now.Truncate(time.Minute).Add(-30 * time.Minute)
	event := func(dev, res, typ, card string, at time.Duration) *write.Point {
		tags := map[string]string{"site": "demo-station", "device": dev, "type": typ}
		if res != "" {
			tags["resident"] = res
		}
		fields := map[string]any{"count": int64(1), "seq": int64(at / time.Second)}
		if card != "" {
			fields["attr_card"] = card
		}
		return influxdb2.NewPoint("events", tags, fields, base.Add(at))
	}
	reading := func(at time.Duration, hr float64) *write.Point {
		return influxdb2.NewPoint("readings", map[string]string{"site": "demo-station", "device": "vm-101", "resident": "res-001"},
			map[string]any{"hr_bpm": hr}, base.Add(at))
	}
	points := []*write.Point{
		event("mt-1", "", "meal", "04A1", time.Minute), // a terminal bound to nobody: the card says who ate
		event("mt-1", "", "meal", "04A1", 2*time.Minute),
		event("mt-1", "", "meal", "04B2", 3*time.Minute),
		event("gw-1", "res-001", "card_tap", "CARE-9", 5*time.Minute),
		event("gw-1", "", "card_tap", "CARE-9", 6*time.Minute),       // gateway bound to nobody
		event("gw-1", "res-001", "card_tap", "CARE-9", -2*time.Hour), // before the period
		event("bs-1", "res-001", "bed_exit", "", 7*time.Minute),
		reading(0, 60), reading(10*time.Second, 70), reading(40*time.Second, 80), reading(70*time.Second, 90),
	}
	if err := client.WriteAPIBlocking("", bucket).WritePoint(ctx, points...); err != nil {
		t.Fatalf("write: %v", err)
	}
	q := NewFluxVitals(url, "", bucket)
	defer q.Close()
	from, to := base.Add(-time.Minute), now

	t.Run("meals by card", func(t *testing.T) {
		got, err := q.MealsByCard(ctx, from, to)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || got["04A1"] != 2 || got["04B2"] != 1 {
			t.Errorf("got %v, want 04A1: 2, 04B2: 1", got)
		}
	})
	t.Run("card taps", func(t *testing.T) {
		got, err := q.CardTaps(ctx, from, to)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].Resident != "res-001" || got[0].Source != VisitCardTap || !got[0].At.Equal(base.Add(5*time.Minute)) ||
			got[0].Actor != "gw-1" || got[0].Card != "CARE-9" {
			t.Errorf("got %+v", got)
		}
	})
	t.Run("windowed vitals", func(t *testing.T) {
		got, err := q.ResidentVitalsEvery(ctx, "res-001", base, base.Add(2*time.Minute), 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var vals []float64
		for _, p := range got["hr_bpm"] {
			vals = append(vals, p.V)
		}
		if want := []float64{65, 80, 90}; !slices.Equal(vals, want) {
			t.Errorf("30 s means %v, want %v", vals, want)
		}
		if _, err := q.ResidentVitalsEvery(ctx, "res-001", base, now, time.Millisecond); err == nil {
			t.Error("a window under 1 s accepted")
		}
	})
	t.Run("family day", func(t *testing.T) {
		meal := func(card, name string, pct float64, at time.Duration) *write.Point {
			return influxdb2.NewPoint("events", map[string]string{"site": "demo-station", "device": "mt-2", "type": "meal"},
				map[string]any{"count": int64(1), "seq": int64(100 + at/time.Second), "attr_card": card, "attr_meal": name, "attr_eaten_pct": pct}, base.Add(at))
		}
		bed := func(v float64, at time.Duration) *write.Point {
			return influxdb2.NewPoint("readings", map[string]string{"site": "demo-station", "device": "bs-9", "resident": "res-009", "kind": "bed_sensor"},
				map[string]any{"in_bed": v}, base.Add(at))
		}
		if err := client.WriteAPIBlocking("", bucket).WritePoint(ctx,
			meal("C9", "lunch", 75, 20*time.Second), meal("C8", "lunch", 10, 21*time.Second),
			bed(1, 0), bed(1, 30*time.Second), bed(0, time.Minute), bed(1, 90*time.Second)); err != nil {
			t.Fatal(err)
		}
		ms, err := q.Meals(ctx, from, to)
		if err != nil {
			t.Fatal(err)
		}
		mine := residentMeals(ms, []string{"C9"})
		if len(mine) != 1 || mine[0].Meal != "lunch" || mine[0].EatenPct != 75 || !mine[0].At.Equal(base.Add(20*time.Second)) {
			t.Errorf("meals of C9: %+v (all %+v)", mine, ms)
		}
		occ, err := q.Occupancy(ctx, "res-009", from, to)
		if err != nil {
			t.Fatal(err)
		}
		if len(occ) != 4 || occ[2].V != 0 {
			t.Errorf("occupancy: %+v", occ)
		}
		at, typ, ok, err := q.LastEvent(ctx, "res-001", from, to)
		if err != nil || !ok || typ != "bed_exit" || !at.Equal(base.Add(7*time.Minute)) {
			t.Errorf("last event: %s %s %t %v, want bed_exit at +7 min", at, typ, ok, err)
		}
	})
}

func TestMealsAndVisits(t *testing.T) {
	t.Parallel()
	cards := []registry.MealCard{{ID: "04A1", ResidentID: "res-001"}, {ID: "04A2", ResidentID: "res-001"}, {ID: "04B2", ResidentID: "res-002"}}
	served, visits := mealsAndVisits(cards, map[string]int{"04A1": 2, "04A2": 1, "04B2": 1, "LOST": 5},
		[]Visit{{Resident: "res-001", Card: "CARE-9"}, {Resident: "res-001", Card: "04A1"}})
	if len(served) != 2 || served["res-001"] != 3 || served["res-002"] != 1 {
		t.Errorf("served %v, want res-001: 3, res-002: 1 (unknown card dropped)", served)
	}
	if len(visits) != 1 || visits[0].Card != "CARE-9" {
		t.Errorf("visits %+v: a resident's own meal card is not a caregiver visit", visits)
	}
}
