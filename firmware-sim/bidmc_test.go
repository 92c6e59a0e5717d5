package firmwaresim

import (
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestReadBIDMC(t *testing.T) {
	nan := math.NaN()
	tests := []struct {
		name string
		in   string
		want []VitalsRow
	}{
		{"plain", "Time [s], HR, PULSE, RESP, SpO2\n0,94,93,25,97\n1,92,93,26,96\n",
			[]VitalsRow{{0, 94, 93, 25, 97}, {time.Second, 92, 93, 26, 96}}},
		{"minus zero and fractions", "Time [s], HR, PULSE, RESP, SpO2\n-0,80,81,18,98\n0.5,81,81,18,98\n",
			[]VitalsRow{{0, 80, 81, 18, 98}, {500 * time.Millisecond, 81, 81, 18, 98}}},
		{"NaN missing", "Time [s], HR, PULSE, RESP, SpO2\n0,92,NaN,23,NaN\n1,NaN,NaN,NaN,NaN\n",
			[]VitalsRow{{0, 92, nan, 23, nan}, {time.Second, nan, nan, nan, nan}}},
		{"blank trailing lines, CRLF, BOM", "\ufeffTime [s],HR,PULSE,RESP,SpO2\r\n0,70,70,15,99\r\n\r\n\n  \n",
			[]VitalsRow{{0, 70, 70, 15, 99}}},
		{"header only", "Time [s], HR, PULSE, RESP, SpO2\n", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReadBIDMC(strings.NewReader(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d rows %v, want %d", len(got), got, len(tc.want))
			}
			for i := range got {
				if !sameRow(got[i], tc.want[i]) {
					t.Errorf("row %d: got %+v, want %+v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func sameRow(a, b VitalsRow) bool {
	eq := func(x, y float64) bool { return x == y || math.IsNaN(x) && math.IsNaN(y) }
	return a.T == b.T && eq(a.HR, b.HR) && eq(a.Pulse, b.Pulse) && eq(a.Resp, b.Resp) && eq(a.SpO2, b.SpO2)
}

func TestReadBIDMCErrors(t *testing.T) {
	const h = "Time [s], HR, PULSE, RESP, SpO2\n"
	tests := []struct{ name, in, want string }{
		{"empty", "", "empty file"},
		{"bad header", "Time, HR, PULSE, RESP, SpO2\n0,1,2,3,4\n", `line 1: header column 1 is "Time"`},
		{"short header", "Time [s], HR, PULSE\n", "line 1: header"},
		{"non-number cell", h + "0,94,93,25,97\n1,94,abc,25,97\n", `line 3: column PULSE: "abc" is not a number`},
		{"empty cell", h + "0,94,,25,97\n", `line 2: column PULSE: "" is not a number`},
		{"inf", h + "0,94,93,25,Inf\n", `line 2: column SpO2: "Inf"`},
		{"NaN time", h + "NaN,94,93,25,97\n", `line 2: column Time [s]`},
		{"cell count", h + "0,94,93,25\n", "line 2: 4 cells, want 5"},
		{"time not increasing", h + "0,94,93,25,97\n0,94,93,25,97\n", "line 3: time 0 s is not after"},
		{"negative time", h + "-1,94,93,25,97\n", "line 2: column Time [s]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadBIDMC(strings.NewReader(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestReadBIDMCFileNamesFile(t *testing.T) {
	_, err := ReadBIDMCFile("/nonexistent/bidmc_99_Numerics.csv")
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/bidmc_99_Numerics.csv") {
		t.Fatalf("got %v, want the path named", err)
	}
}

func TestVitalsRowValues(t *testing.T) {
	nan := math.NaN()
	tests := []struct {
		name string
		row  VitalsRow
		want map[string]float64
	}{
		{"all", VitalsRow{0, 80, 79, 16, 97}, map[string]float64{"hr_bpm": 80, "pulse_bpm": 79, "resp_per_min": 16, "spo2_pct": 97}},
		{"some missing", VitalsRow{0, 92, nan, 23, nan}, map[string]float64{"hr_bpm": 92, "resp_per_min": 23}},
		{"none", VitalsRow{0, nan, nan, nan, nan}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.row.Values(); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func FuzzReadBIDMC(f *testing.F) {
	f.Add("Time [s], HR, PULSE, RESP, SpO2\n0,94,93,25,97\n1,NaN,93,25,97\n")
	f.Fuzz(func(t *testing.T, s string) {
		rows, err := ReadBIDMC(strings.NewReader(s))
		if err != nil {
			return
		}
		for i := 1; i < len(rows); i++ {
			if rows[i].T <= rows[i-1].T {
				t.Fatalf("times not increasing: %v", rows)
			}
		}
	})
}
