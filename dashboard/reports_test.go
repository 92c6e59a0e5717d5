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
	url := testenv.InfluxDB(t, "eldercare")
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
	if err := client.WriteAPIBlocking("", "eldercare/autogen").WritePoint(ctx, points...); err != nil {
		t.Fatalf("write: %v", err)
	}
	q := NewFluxVitals(url, "", "eldercare/autogen")
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
}

func TestMealsAndVisits(t *testing.T) {
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
