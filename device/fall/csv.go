package fall

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// maxSeconds bounds times read from files so that they fit a time.Duration
// (about 292 years) with room to spare.
const maxSeconds = 1e9

// Column names of the WEDA-FALL accelerometer files.
const (
	colTime = "accel_time_list"
	colX    = "accel_x_list"
	colY    = "accel_y_list"
	colZ    = "accel_z_list"
)

// ReadAccelCSV parses a WEDA-FALL accelerometer file (`*_accel.csv`,
// WEDA-FALL dataset, github.com/joaojtmarques/WEDA-FALL): a header naming the
// columns accel_time_list, accel_x_list, accel_y_list, accel_z_list (in any
// order; extra columns are ignored), then one row per reading with the time
// in seconds since the start of the recording and the acceleration in m/s²
// including gravity.
//
// It tolerates a UTF-8 byte-order mark, CRLF line ends, blank lines and
// spaces around values. Rows with a NaN or infinite value are skipped.
// Rows are returned sorted by time (stable, so rows with equal times keep
// their file order); a row identical to the previous one in time and
// values is a repeated reading and is dropped.
//
// The error names the 1-based line for a missing or incomplete header, a
// row with too few fields, an unparsable number, or a negative or
// implausibly large (> 1e9 s) time.
func ReadAccelCSV(r io.Reader) ([]Sample, error) {
	cr := newCSVReader(r)
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, errors.New("fall: accel CSV: empty input, want header " + strings.Join([]string{colTime, colX, colY, colZ}, ","))
	}
	if err != nil {
		return nil, fmt.Errorf("fall: accel CSV: %w", err)
	}
	idx, err := columnIndex(header, colTime, colX, colY, colZ)
	if err != nil {
		line, _ := cr.FieldPos(0)
		return nil, fmt.Errorf("fall: accel CSV line %d: %w", line, err)
	}
	need := 0
	for _, i := range idx {
		need = max(need, i+1)
	}
	var out []Sample
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("fall: accel CSV: %w", err)
		}
		line, _ := cr.FieldPos(0)
		if len(rec) < need {
			return nil, fmt.Errorf("fall: accel CSV line %d: %d fields, want at least %d", line, len(rec), need)
		}
		var v [4]float64
		skip := false
		for k, i := range idx {
			f, err := strconv.ParseFloat(strings.TrimSpace(rec[i]), 64)
			if err != nil {
				return nil, fmt.Errorf("fall: accel CSV line %d: column %s: %w", line, header[i], err)
			}
			if math.IsNaN(f) || math.IsInf(f, 0) {
				skip = true
			}
			v[k] = f
		}
		if skip {
			continue
		}
		t, err := seconds(v[0])
		if err != nil {
			return nil, fmt.Errorf("fall: accel CSV line %d: %w", line, err)
		}
		out = append(out, Sample{T: t, X: v[1], Y: v[2], Z: v[3]})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].T < out[j].T })
	dedup := out[:0]
	for i, s := range out {
		if i > 0 && s == out[i-1] {
			continue
		}
		dedup = append(dedup, s)
	}
	return dedup, nil
}

// ReadFallWindows parses WEDA-FALL's fall_timestamps.csv: a header
// `filename,start_time,end_time` (a UTF-8 byte-order mark is allowed), then
// rows such as `F01/U01_R01,4.7,7.7`. It returns, for each filename (the
// trial folder and the recording prefix, e.g. "F01/U01_R01"), the
// hand-marked fall window [start, end] in seconds from the start of the
// recording.
//
// The error names the line for a bad header, a missing field, an
// unparsable or non-finite number, end < start, or a repeated filename.
func ReadFallWindows(r io.Reader) (map[string][2]float64, error) {
	cr := newCSVReader(r)
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, errors.New("fall: fall windows CSV: empty input, want header filename,start_time,end_time")
	}
	if err != nil {
		return nil, fmt.Errorf("fall: fall windows CSV: %w", err)
	}
	idx, err := columnIndex(header, "filename", "start_time", "end_time")
	if err != nil {
		line, _ := cr.FieldPos(0)
		return nil, fmt.Errorf("fall: fall windows CSV line %d: %w", line, err)
	}
	need := max(idx[0], idx[1], idx[2]) + 1
	out := make(map[string][2]float64)
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("fall: fall windows CSV: %w", err)
		}
		line, _ := cr.FieldPos(0)
		if len(rec) < need {
			return nil, fmt.Errorf("fall: fall windows CSV line %d: %d fields, want at least %d", line, len(rec), need)
		}
		name := strings.TrimSpace(rec[idx[0]])
		if name == "" {
			return nil, fmt.Errorf("fall: fall windows CSV line %d: empty filename", line)
		}
		var w [2]float64
		for k, i := range idx[1:] {
			f, err := strconv.ParseFloat(strings.TrimSpace(rec[i]), 64)
			if err != nil {
				return nil, fmt.Errorf("fall: fall windows CSV line %d: column %s: %w", line, header[i], err)
			}
			if math.IsNaN(f) || math.IsInf(f, 0) {
				return nil, fmt.Errorf("fall: fall windows CSV line %d: column %s: non-finite value %v", line, header[i], f)
			}
			w[k] = f
		}
		if w[1] < w[0] {
			return nil, fmt.Errorf("fall: fall windows CSV line %d: end_time %v before start_time %v", line, w[1], w[0])
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("fall: fall windows CSV line %d: filename %q repeated", line, name)
		}
		out[name] = w
	}
	return out, nil
}

func newCSVReader(r io.Reader) *csv.Reader {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	cr.ReuseRecord = false
	return cr
}

// columnIndex finds the named columns in header (case-insensitive, spaces
// and a leading BOM ignored).
func columnIndex(header []string, names ...string) ([]int, error) {
	norm := make(map[string]int, len(header))
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))
		if _, ok := norm[h]; !ok {
			norm[h] = i
		}
	}
	idx := make([]int, len(names))
	for k, n := range names {
		i, ok := norm[n]
		if !ok {
			return nil, fmt.Errorf("header %q lacks column %q", strings.Join(header, ","), n)
		}
		idx[k] = i
	}
	return idx, nil
}

// seconds converts a non-negative time in seconds to a Duration, rounded
// to the nanosecond.
func seconds(s float64) (time.Duration, error) {
	if s < 0 || s > maxSeconds {
		return 0, fmt.Errorf("time %v s out of range [0, %g]", s, maxSeconds)
	}
	return time.Duration(math.Round(s * 1e9)), nil
}
