package firmwaresim

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"time"
)

// VitalsRow is one row of a BIDMC numerics file: the vital signs of one
// second. A missing value is NaN.
type VitalsRow struct {
	// T is the time since the start of the recording (column "Time [s]").
	T time.Duration
	// HR is the heart rate from the ECG in beats/min (column HR).
	HR float64
	// Pulse is the pulse rate from the pulse oximeter in beats/min
	// (column PULSE).
	Pulse float64
	// Resp is the respiration rate in breaths/min (column RESP).
	Resp float64
	// SpO2 is the peripheral oxygen saturation in % (column SpO2).
	SpO2 float64
}

// Values returns the row as reading values (hr_bpm, pulse_bpm,
// resp_per_min, spo2_pct), omitting missing (NaN) values. It returns nil
// when every value is missing: such a row is not sent.
func (r VitalsRow) Values() map[string]float64 {
	var m map[string]float64
	for _, kv := range []struct {
		k string
		v float64
	}{{"hr_bpm", r.HR}, {"pulse_bpm", r.Pulse}, {"resp_per_min", r.Resp}, {"spo2_pct", r.SpO2}} {
		if math.IsNaN(kv.v) {
			continue
		}
		if m == nil {
			m = make(map[string]float64, 4)
		}
		m[kv.k] = kv.v
	}
	return m
}

// bidmcColumns are the columns of a BIDMC numerics file, in file order.
var bidmcColumns = []string{"Time [s]", "HR", "PULSE", "RESP", "SpO2"}

// ReadBIDMC parses a numerics file of the BIDMC PPG and Respiration Dataset
// (PhysioNet, Pimentel et al. 2017): the header
// "Time [s], HR, PULSE, RESP, SpO2" (spaces after the commas allowed),
// then one row per second. Time is in seconds and may be "-0"; HR and
// PULSE are in beats/min, RESP in breaths/min, SpO2 in %. The literal NaN
// (any case) is a missing value and is kept as NaN. A UTF-8 byte-order
// mark, CRLF line ends and blank lines are tolerated.
//
// Errors name the 1-based line: a bad header, a row with the wrong number
// of cells, a cell that is not a number (Inf included), or a time that is
// not after the previous row's.
func ReadBIDMC(r io.Reader) ([]VitalsRow, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var rows []VitalsRow
	line := 0
	header := false
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if line == 1 {
			text = strings.TrimSpace(strings.TrimPrefix(text, "\ufeff"))
		}
		if text == "" {
			continue
		}
		cells := strings.Split(text, ",")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if !header {
			if len(cells) != len(bidmcColumns) {
				return nil, fmt.Errorf("line %d: header %q: want %q", line, text, strings.Join(bidmcColumns, ", "))
			}
			for i, c := range cells {
				if c != bidmcColumns[i] {
					return nil, fmt.Errorf("line %d: header column %d is %q, want %q (header %q)", line, i+1, c, bidmcColumns[i], strings.Join(bidmcColumns, ", "))
				}
			}
			header = true
			continue
		}
		if len(cells) != len(bidmcColumns) {
			return nil, fmt.Errorf("line %d: %d cells, want %d (%s)", line, len(cells), len(bidmcColumns), strings.Join(bidmcColumns, ", "))
		}
		var v [5]float64
		for i, c := range cells {
			f, err := strconv.ParseFloat(c, 64)
			if err != nil || math.IsInf(f, 0) || (math.IsNaN(f) && i == 0) {
				return nil, fmt.Errorf("line %d: column %s: %q is not a number (NaN marks a missing value)", line, bidmcColumns[i], c)
			}
			v[i] = f
		}
		if v[0] < 0 || v[0] > 1e9 {
			return nil, fmt.Errorf("line %d: column %s: %q is not a time in [0, 1e9] s", line, bidmcColumns[0], cells[0])
		}
		t := time.Duration(math.Round(v[0] * float64(time.Second)))
		if n := len(rows); n > 0 && t <= rows[n-1].T {
			return nil, fmt.Errorf("line %d: time %s s is not after the previous row's %s s", line, cells[0], strconv.FormatFloat(rows[n-1].T.Seconds(), 'f', -1, 64))
		}
		rows = append(rows, VitalsRow{T: t, HR: v[1], Pulse: v[2], Resp: v[3], SpO2: v[4]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w", line+1, err)
	}
	if !header {
		return nil, errors.New("empty file: want the header " + strings.Join(bidmcColumns, ", "))
	}
	return rows, nil
}

// ReadBIDMCFile reads a BIDMC numerics file with ReadBIDMC. Errors name
// the file (and the line).
func ReadBIDMCFile(path string) ([]VitalsRow, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("vitals recording: %w", err)
	}
	defer f.Close()
	rows, err := ReadBIDMC(f)
	if err != nil {
		return nil, fmt.Errorf("vitals recording %s: %w", path, err)
	}
	return rows, nil
}
