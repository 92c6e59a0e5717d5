package device

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// fastSeeds are payloads of every shape the scanner reads, near misses it
// must hand to encoding/json, and invalid ones.
func fastSeeds() []string {
	ms := itoa(now.UnixMilli())
	single := `{"v":1,"device":"vm-1","boot":2,"id":9,"seq":90,"ts":` + ms + `,"values":{"hr_bpm":81,"spo2_pct":97.5}}`
	batch := `{"v":1,"device":"gw-1.vm-2","boot":3,"id":10,"readings":[{"seq":1,"ts":` + itoa(now.UnixMilli()-1000) +
		`,"values":{"hr_bpm":80}},{"seq":2,"ts":` + ms + `,"values":{"hr_bpm":8.1e1,"resp_bpm":-0,"x":1E-2}}]}`
	return []string{
		single,
		batch,
		" \n\t" + strings.ReplaceAll(single, ",", " ,\r\n ") + "\n",
		strings.ReplaceAll(batch, ":", " : "),
		// near misses: encoding/json decides
		strings.Replace(single, `"v"`, `"V"`, 1),
		strings.Replace(single, `"device":"vm-1"`, `"device":"vm\u002d1"`, 1),
		strings.Replace(single, `"device":"vm-1"`, `"device":"vm-1","device":"vm-2"`, 1),
		strings.Replace(single, `"hr_bpm":81`, `"hr_bpm":81,"hr_bpm":82`, 1),
		strings.Replace(single, `"boot":2`, `"boot":4294967296`, 1),
		strings.Replace(single, `"id":9`, `"id":18446744073709551615`, 1),
		strings.Replace(single, `"id":9`, `"id":09`, 1),
		strings.Replace(single, `"seq":90`, `"seq":-1`, 1),
		strings.Replace(single, `"seq":90`, `"seq":9.0`, 1),
		strings.Replace(single, `"seq":90`, `"seq":null`, 1),
		strings.Replace(single, `"hr_bpm":81`, `"hr_bpm":"81"`, 1),
		strings.Replace(single, `"hr_bpm":81`, `"hr_bpm":1e999`, 1),
		strings.Replace(single, `"hr_bpm":81`, `"hr_bpm":-`, 1),
		strings.Replace(single, `"hr_bpm":81`, `"hr_bpm":.5`, 1),
		strings.Replace(single, `"hr_bpm":81`, `"Hr_bpm":81`, 1),
		strings.Replace(single, `"spo2_pct":97.5`, `"spo2_pct":140`, 1),
		strings.Replace(single, `"values":{"hr_bpm":81,"spo2_pct":97.5}`, `"values":{}`, 1),
		single + `{}`,
		single + ` x`,
		single[:len(single)-1],
		strings.Replace(batch, `"readings":[`, `"seq":1,"readings":[`, 1),
		strings.Replace(batch, `{"seq":2,`, `{"seq":1,`, 1),
		strings.Replace(batch, `"readings":[{`, `"readings":[{},{`, 1),
		`{"v":1,"device":"vm-1","id":1,"readings":[]}`,
		`{}`, `[]`, `null`, ``, `"x"`,
		`{"v":1,"device":"vm-1","boot":2,"id":9,"seq":90,"ts":1764400000,"values":{"hr_bpm":81}}`,
		`{"v":1,"device":"vm-1","boot":2,"id":9,"seq":90,"ts":5,"values":{"in_bed":0.5}}`,
	}
}

// TestDecodeTelemetryFast: same telemetry and same error text as
// DecodeTelemetry on every seed, and the fast scanner really reads the
// shapes devices send.
func TestDecodeTelemetryFast(t *testing.T) {
	for i, in := range fastSeeds() {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			checkFastSame(t, []byte(in))
		})
	}
	for i, in := range fastSeeds()[:4] {
		if _, ok := scanTelemetry([]byte(in)); !ok {
			t.Errorf("seed %d: the scanner refused a common payload: %s", i, in)
		}
	}
}

// TestTelemetryDecoderReuse: one TelemetryDecoder given every seed in turn,
// forwards and backwards (so each shape follows every other and the reused
// maps and slices hold the previous payload's values), decodes each as
// DecodeTelemetry does; and a single reading costs it at most one
// allocation (the device id).
func TestTelemetryDecoderReuse(t *testing.T) {
	var d TelemetryDecoder
	seeds := fastSeeds()
	order := append(slices.Clone(seeds), seeds...)
	slices.Reverse(order[len(seeds):])
	for i, in := range order {
		want, wantErr := DecodeTelemetry([]byte(in), now, Limits{})
		got, gotErr := d.Decode([]byte(in), now, Limits{})
		if errText(gotErr) != errText(wantErr) {
			t.Fatalf("payload %d %q: error %v, DecodeTelemetry says %v", i, in, gotErr, wantErr)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("payload %d %q: got %+v, DecodeTelemetry gives %+v", i, in, got, want)
		}
	}
	single := []byte(seeds[0])
	if n := testing.AllocsPerRun(100, func() {
		if _, err := d.Decode(single, now, Limits{}); err != nil {
			t.Fatal(err)
		}
	}); n > 1 {
		t.Errorf("a single reading costs %v allocations, want at most 1 (the device id)", n)
	}
}

// reuseDecoder is the fuzz target's decoder: it has decoded a batch, so
// every fuzz input meets maps and slices in use before.
var reuseDecoder = func() *TelemetryDecoder {
	var d TelemetryDecoder
	if _, err := d.Decode([]byte(fastSeeds()[1]), now, Limits{}); err != nil {
		panic(err)
	}
	return &d
}()

func checkFastSame(t *testing.T, b []byte) {
	t.Helper()
	want, wantErr := DecodeTelemetry(b, now, Limits{})
	got, gotErr := DecodeTelemetryFast(b, now, Limits{})
	if errText(gotErr) != errText(wantErr) {
		t.Fatalf("%q: error %v, DecodeTelemetry says %v", b, gotErr, wantErr)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%q: got %+v, DecodeTelemetry gives %+v", b, got, want)
	}
	got, gotErr = reuseDecoder.Decode(b, now, Limits{})
	if errText(gotErr) != errText(wantErr) {
		t.Fatalf("%q: TelemetryDecoder: error %v, DecodeTelemetry says %v", b, gotErr, wantErr)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%q: TelemetryDecoder: got %+v, DecodeTelemetry gives %+v", b, got, want)
	}
	if raw, ok := scanTelemetry(b); ok {
		var ref telemetryJSON
		if err := decodeStrict(b, DefaultLimits, &ref); err != nil {
			t.Fatalf("%q: scanner read what encoding/json refuses: %v", b, err)
		}
		if !reflect.DeepEqual(*raw, ref) {
			t.Fatalf("%q: scanner read %+v, encoding/json %+v", b, *raw, ref)
		}
	}
}

// errText is err's text with its lines (the joined errors) sorted:
// DecodeTelemetry checks the values of a map in Go's random order.
func errText(err error) string {
	if err == nil {
		return "<nil>"
	}
	lines := strings.Split(err.Error(), "\n")
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// FuzzDecodeTelemetryFast is the differential proof: for any input, the
// fast decoder returns what DecodeTelemetry returns, error text included,
// and whatever the scanner reads equals encoding/json's reading.
func FuzzDecodeTelemetryFast(f *testing.F) {
	for _, s := range fastSeeds() {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkFastSame(t, b)
	})
}

func BenchmarkDecodeTelemetry(b *testing.B) {
	in := []byte(fastSeeds()[0])
	b.Run("encoding_json", func(b *testing.B) {
		for b.Loop() {
			if _, err := DecodeTelemetry(in, now, Limits{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fast", func(b *testing.B) {
		for b.Loop() {
			if _, err := DecodeTelemetryFast(in, now, Limits{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decoder", func(b *testing.B) {
		var d TelemetryDecoder
		for b.Loop() {
			if _, err := d.Decode(in, now, Limits{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
