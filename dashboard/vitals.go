package dashboard

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
	"github.com/influxdata/influxdb-client-go/v2/api"

	"github.com/eldercare-iot/eldercare/device"
)

// VitalFields are the reading fields shown on the resident page, in
// display order: heart rate (bpm), SpO2 (%), respiration (breaths/min) and
// pulse (bpm).
var VitalFields = []string{"hr_bpm", "spo2_pct", "resp_per_min", "pulse_bpm"}

// Point is one sample of a vitals series: device time and value in the
// field's unit.
type Point struct {
	T time.Time `json:"t"`
	V float64   `json:"v"`
}

// VitalsQuerier reads a resident's vitals history.
type VitalsQuerier interface {
	// ResidentVitals returns, per field of VitalFields that has data, the
	// samples of the resident in [from, to), oldest first.
	ResidentVitals(ctx context.Context, residentID string, from, to time.Time) (map[string][]Point, error)
}

// FluxVitals is a VitalsQuerier over InfluxDB (1.8 with flux-enabled, or
// 2.x) through influxdb-client-go's QueryAPI. It reads measurement
// "readings", tag "resident", fields VitalFields, averaged over 10 s
// windows (aggregateWindow mean) across the resident's devices.
type FluxVitals struct {
	client influxdb2.Client
	query  api.QueryAPI
	bucket string
	every  time.Duration
}

// NewFluxVitals returns a querier for the InfluxDB at url. token is "" or
// "user:pass" for 1.8; bucket is "database/retention-policy" ("" =
// DefaultBucket). Close it when done.
func NewFluxVitals(url, token, bucket string) *FluxVitals {
	if bucket == "" {
		bucket = DefaultBucket
	}
	c := influxdb2.NewClientWithOptions(url, token, influxdb2.DefaultOptions().SetHTTPRequestTimeout(30))
	return &FluxVitals{client: c, query: c.QueryAPI(""), bucket: bucket, every: 10 * time.Second}
}

// Close releases the HTTP client.
func (f *FluxVitals) Close() { f.client.Close() }

// fluxString quotes s as a Flux string literal.
func fluxString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "${", `\${`, "\n", `\n`, "\r", `\r`, "\t", `\t`)
	return `"` + r.Replace(s) + `"`
}

// fluxQuery builds the query of ResidentVitals.
func (f *FluxVitals) fluxQuery(residentID string, from, to time.Time) string {
	fields := make([]string, len(VitalFields))
	for i, name := range VitalFields {
		fields[i] = "r._field == " + fluxString(name)
	}
	return fmt.Sprintf(`from(bucket: %s)
  |> range(start: %s, stop: %s)
  |> filter(fn: (r) => r._measurement == "readings" and r.resident == %s)
  |> filter(fn: (r) => %s)
  |> group(columns: ["_field"])
  |> aggregateWindow(every: %s, fn: mean, createEmpty: false)
  |> keep(columns: ["_time", "_field", "_value"])`,
		fluxString(f.bucket), from.UTC().Format(time.RFC3339Nano), to.UTC().Format(time.RFC3339Nano),
		fluxString(residentID), strings.Join(fields, " or "), f.every)
}

// ResidentVitals implements VitalsQuerier. Errors: an invalid resident id
// (not [A-Za-z0-9_.-]{1,64}), from not before to, or InfluxDB's error
// wrapped with the bucket.
func (f *FluxVitals) ResidentVitals(ctx context.Context, residentID string, from, to time.Time) (map[string][]Point, error) {
	if err := device.ValidateID("resident", residentID); err != nil {
		return nil, fmt.Errorf("query vitals: %w", err)
	}
	if !from.Before(to) {
		return nil, fmt.Errorf("query vitals of %s: start %s is not before stop %s", residentID, from, to)
	}
	res, err := f.query.Query(ctx, f.fluxQuery(residentID, from, to))
	if err != nil {
		return nil, fmt.Errorf("query vitals of %s from bucket %s: %w", residentID, f.bucket, err)
	}
	defer res.Close()
	out := map[string][]Point{}
	for res.Next() {
		r := res.Record()
		v, ok := toFloat(r.Value())
		if !ok {
			continue
		}
		out[r.Field()] = append(out[r.Field()], Point{T: r.Time(), V: v})
	}
	if err := res.Err(); err != nil {
		return nil, fmt.Errorf("read vitals of %s from bucket %s: %w", residentID, f.bucket, err)
	}
	for _, pts := range out {
		sort.Slice(pts, func(i, j int) bool { return pts[i].T.Before(pts[j].T) })
	}
	return out, nil
}

func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case int64:
		return float64(x), true
	case uint64:
		return float64(x), true
	}
	return 0, false
}
