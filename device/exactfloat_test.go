package device

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
)

// TestExactFloat: exactFloat agrees bit for bit with encoding/json (which
// uses strconv.ParseFloat) on every number it accepts, accepts the usual
// shapes of readings, and refuses what it cannot convert exactly.
func TestExactFloat(t *testing.T) {
	check := func(s string) bool {
		t.Helper()
		got, ok := exactFloat([]byte(s))
		if !ok {
			return false
		}
		var want float64
		if err := json.Unmarshal([]byte(s), &want); err != nil {
			t.Fatalf("exactFloat accepted %q, which encoding/json refuses: %v", s, err)
		}
		if math.Float64bits(got) != math.Float64bits(want) {
			t.Fatalf("exactFloat(%q) = %v (%#x), encoding/json %v (%#x)", s, got, math.Float64bits(got), want, math.Float64bits(want))
		}
		return true
	}
	for _, s := range []string{"0", "-0", "72", "97", "36.5", "-12.25", "0.1", "0.3", "99.99", "123456789012345", "0.00000000000001", "-0.0"} {
		if !check(s) {
			t.Errorf("exactFloat refused %q", s)
		}
	}
	for _, s := range []string{"1e3", "1E-2", "1234567890123456", "0.0000000000000001", "", "-", "1.", ".5", "-.5", "01", "-01.5", "1.2.3", "NaN"} {
		if _, ok := exactFloat([]byte(s)); ok {
			t.Errorf("exactFloat accepted %q", s)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	accepted := 0
	for range 200_000 {
		m := r.Int64N(1_000_000_000_000_000) // up to 15 digits
		s := strconv.FormatInt(m, 10)
		if k := r.IntN(len(s) + 1); k > 0 && k < len(s) {
			s = s[:len(s)-k] + "." + s[len(s)-k:]
		}
		if r.IntN(2) == 0 {
			s = "-" + s
		}
		if check(s) {
			accepted++
		}
	}
	if accepted < 100_000 {
		t.Errorf("exactFloat accepted only %d of 200,000 random decimals of at most 15 digits", accepted)
	}
}

// FuzzExactFloat: whatever exactFloat accepts, it converts as
// strconv.ParseFloat does.
func FuzzExactFloat(f *testing.F) {
	for _, s := range []string{"72", "36.5", "-0.001", "123456789012345"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := exactFloat([]byte(s))
		if !ok {
			return
		}
		want, err := strconv.ParseFloat(s, 64)
		if err != nil || math.Float64bits(got) != math.Float64bits(want) {
			t.Fatalf("exactFloat(%q) = %v, ParseFloat = %v, %v", s, got, want, err)
		}
	})
}
