package device

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

// advBatch is a batch of n readings, oldest first, each with k values.
func advBatch(dev string, n, k int) string {
	var b strings.Builder
	b.WriteString(`{"v":1,"device":"` + dev + `","boot":1,"id":7,"readings":[`)
	names := []string{"hr_bpm", "spo2_pct", "resp_bpm", "temp_c", "x", "y_1"}
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"seq":` + itoa(int64(i+1)) + `,"ts":` + itoa(now.UnixMilli()-int64(n-i)) + `,"values":{`)
		for j := range k {
			if j > 0 {
				b.WriteByte(',')
			}
			b.WriteString(`"` + names[j%len(names)] + `":` + itoa(int64(60+i%30)))
		}
		b.WriteString(`}}`)
	}
	b.WriteString(`]}`)
	return b.String()
}

// advPayloads: the seeds, batches around maxKeptMaps, and mutations.
func advPayloads(r *rand.Rand) []string {
	out := fastSeeds()
	for _, n := range []int{1, 2, 127, 128, 129, 300} {
		out = append(out, advBatch("gw-1.d"+itoa(int64(n)), n, 1+n%4))
	}
	base := slices2(out)
	for range 200 {
		s := []byte(base[r.IntN(len(base))])
		if len(s) == 0 {
			continue
		}
		switch r.IntN(4) {
		case 0: // truncate
			s = s[:r.IntN(len(s))]
		case 1: // flip a byte
			s[r.IntN(len(s))] = "{}[],:\"0-.eE x"[r.IntN(14)]
		case 2: // duplicate a slice
			i := r.IntN(len(s))
			j := i + r.IntN(len(s)-i)
			s = append(s[:j:j], append(bytes.Clone(s[i:j]), s[j:]...)...)
		case 3: // drop a slice
			i := r.IntN(len(s))
			j := i + r.IntN(len(s)-i)
			s = append(s[:i:i], s[j:]...)
		}
		out = append(out, string(s))
	}
	return out
}

// advShort is v as text, cut to 400 bytes (batches make long messages).
func advShort(v any) string {
	s := fmt.Sprintf("%+v", v)
	if len(s) > 400 {
		s = s[:400] + "..."
	}
	return s
}

func slices2(s []string) []string { return append([]string(nil), s...) }

// advLimits are the limits a sequence cycles through (MaxReadings below a
// batch: the scanner has read and the validation refuses).
var advLimits = []Limits{{}, {MaxReadings: 2}, {MaxReadings: 128}, {MaxPayload: 200}}

// checkSeqSame decodes each payload with one decoder and compares with
// DecodeTelemetry; it also checks that what a caller may keep past the
// next Decode (the device id, and an error's text: ingest's reject loop
// formats an error after later messages were decoded) does not change.
func checkSeqSame(t *testing.T, d *TelemetryDecoder, payloads []string, limits []int) {
	t.Helper()
	type kept struct {
		err, dev   string
		errv       error
		devCurrent *string
	}
	var keep []kept
	for i, in := range payloads {
		l := advLimits[limits[i]%len(advLimits)]
		want, wantErr := DecodeTelemetry([]byte(in), now, l)
		buf := []byte(in) // a buffer of its own, overwritten below
		got, gotErr := d.Decode(buf, now, l)
		clear(buf)
		if errText(gotErr) != errText(wantErr) {
			t.Fatalf("payload %d %s (limits %+v): error %s, DecodeTelemetry says %s", i, advShort(in), l, advShort(gotErr), advShort(wantErr))
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("payload %d %s (limits %+v): got %s, DecodeTelemetry gives %s", i, advShort(in), l, advShort(got), advShort(want))
		}
		k := kept{errv: gotErr}
		if gotErr != nil {
			k.err = gotErr.Error()
		}
		if got != nil {
			k.dev = strings.Clone(got.Device)
			dev := got.Device // the string, not the decoder's Telemetry
			k.devCurrent = &dev
		}
		keep = append(keep, k)
	}
	for i, k := range keep {
		if k.errv != nil && k.errv.Error() != k.err {
			t.Fatalf("payload %d: its error changed after later decodes: %q, was %q", i, k.errv.Error(), k.err)
		}
		if k.devCurrent != nil && *k.devCurrent != k.dev {
			t.Fatalf("payload %d: its device id changed after later decodes: %q, was %q", i, *k.devCurrent, k.dev)
		}
	}
}

// TestTelemetryDecoderRandomSequences: random sequences of payloads
// (valid, near misses, batches around maxKeptMaps, mutations) and limits
// through one decoder decode as DecodeTelemetry does each time.
func TestTelemetryDecoderRandomSequences(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	all := advPayloads(r)
	for seq := range 300 {
		var d TelemetryDecoder
		n := 2 + r.IntN(12)
		ps, ls := make([]string, n), make([]int, n)
		for i := range n {
			ps[i], ls[i] = all[r.IntN(len(all))], r.IntN(len(advLimits))
		}
		t.Run(itoa(int64(seq)), func(t *testing.T) { checkSeqSame(t, &d, ps, ls) })
	}
}

// TestTelemetryDecoderDeviceAndErrorOutliveNextDecode: the device id of a
// result and the text of an error do not change when the decoder decodes
// again (ingest keeps neither the Telemetry nor its maps, but dedup keys
// hold the device id and the reject loop formats the error later).
func TestTelemetryDecoderDeviceAndErrorOutliveNextDecode(t *testing.T) {
	var d TelemetryDecoder
	seeds := fastSeeds()
	got, err := d.Decode([]byte(seeds[0]), now, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	dev := got.Device
	bad := strings.Replace(seeds[1], `"hr_bpm":80`, `"hr_bpm":800`, 1)
	_, badErr := d.Decode([]byte(bad), now, Limits{})
	if badErr == nil {
		t.Fatal("800 bpm accepted")
	}
	text := badErr.Error()
	for _, s := range append(seeds, advBatch("gw-9.zz", 200, 3)) {
		_, _ = d.Decode([]byte(s), now, Limits{})
	}
	if dev != "vm-1" || badErr.Error() != text {
		t.Fatalf("device %q (want vm-1), error %q (was %q)", dev, badErr.Error(), text)
	}
}

// FuzzTelemetryDecoderSequence: the fuzz input is several payloads
// separated by a 0x00 byte; the first byte of each picks its limits.
func FuzzTelemetryDecoderSequence(f *testing.F) {
	seeds := fastSeeds()
	f.Add([]byte("\x00" + seeds[1] + "\x00\x01" + seeds[0] + "\x00\x02" + seeds[1]))
	f.Add([]byte("\x00" + advBatch("gw-1.a", 130, 2) + "\x00\x00" + seeds[0] + "\x00\x01" + advBatch("gw-1.b", 3, 1)))
	f.Fuzz(func(t *testing.T, b []byte) {
		var ps []string
		var ls []int
		for part := range bytes.SplitSeq(b, []byte{0}) {
			if len(part) == 0 {
				continue
			}
			ls = append(ls, int(part[0]))
			ps = append(ps, string(part[1:]))
		}
		var d TelemetryDecoder
		checkSeqSame(t, &d, ps, ls)
	})
}
