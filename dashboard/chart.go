package dashboard

import (
	"fmt"
	"html"
	"html/template"
	"math"
	"strings"
	"time"
)

// Chart geometry in SVG user units.
const (
	chartW, chartH        = 600.0, 140.0
	chartLeft, chartRight = 44.0, 8.0
	chartTop, chartBottom = 20.0, 22.0
	chartGap              = 2 * time.Minute // a longer gap breaks the line
)

// lineChartIn renders pts in [from, to] as an inline SVG line chart with
// the value range on the y axis and the time range (in loc) on the x axis,
// the empty-chart text in lang and the line broken at gaps longer than
// gap. Only numbers and escaped text go into the markup.
func lineChartIn(lang, title string, pts []Point, from, to time.Time, loc *time.Location, gap time.Duration) template.HTML {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %.0f %.0f" role="img" aria-label="%s" preserveAspectRatio="none">`, chartW, chartH, html.EscapeString(title))
	fmt.Fprintf(&b, `<text class="chart-title" x="%.0f" y="14">%s</text>`, chartLeft, html.EscapeString(title))
	plotW, plotH := chartW-chartLeft-chartRight, chartH-chartTop-chartBottom
	fmt.Fprintf(&b, `<rect class="chart-frame" x="%.0f" y="%.0f" width="%.0f" height="%.0f" fill="none"/>`, chartLeft, chartTop, plotW, plotH)
	fmt.Fprintf(&b, `<text class="chart-axis" x="%.0f" y="%.0f">%s</text>`, chartLeft, chartH-6, from.In(loc).Format("15:04 MST"))
	fmt.Fprintf(&b, `<text class="chart-axis" x="%.0f" y="%.0f" text-anchor="end">%s</text>`, chartW-chartRight, chartH-6, to.In(loc).Format("15:04 MST"))
	if len(pts) == 0 {
		fmt.Fprintf(&b, `<text class="chart-empty" x="%.0f" y="%.0f" text-anchor="middle">%s</text></svg>`, chartLeft+plotW/2, chartTop+plotH/2+4, html.EscapeString(trIn(lang, "res.novitals")))
		return template.HTML(b.String())
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, p := range pts {
		lo, hi = math.Min(lo, p.V), math.Max(hi, p.V)
	}
	if hi-lo < 1 {
		lo, hi = lo-1, hi+1
	}
	span := to.Sub(from).Seconds()
	x := func(t time.Time) float64 {
		f := t.Sub(from).Seconds() / span
		return chartLeft + math.Max(0, math.Min(1, f))*plotW
	}
	y := func(v float64) float64 { return chartTop + (hi-v)/(hi-lo)*plotH }
	fmt.Fprintf(&b, `<text class="chart-axis" x="%.0f" y="%.0f" text-anchor="end">%.0f</text>`, chartLeft-4, chartTop+8, hi)
	fmt.Fprintf(&b, `<text class="chart-axis" x="%.0f" y="%.0f" text-anchor="end">%.0f</text>`, chartLeft-4, chartTop+plotH, lo)
	var seg []string
	flush := func() {
		if len(seg) == 1 {
			fmt.Fprintf(&b, `<circle class="chart-dot" cx="%s" r="2"/>`, strings.Replace(seg[0], ",", `" cy="`, 1))
		} else if len(seg) > 1 {
			fmt.Fprintf(&b, `<polyline class="chart-line" fill="none" points="%s"/>`, strings.Join(seg, " "))
		}
		seg = seg[:0]
	}
	for i, p := range pts {
		if i > 0 && p.T.Sub(pts[i-1].T) > gap {
			flush()
		}
		seg = append(seg, fmt.Sprintf("%.1f,%.1f", x(p.T), y(p.V)))
	}
	flush()
	last := pts[len(pts)-1]
	fmt.Fprintf(&b, `<text class="chart-last" x="%.0f" y="14" text-anchor="end">%s</text>`, chartW-chartRight, formatValue("", last.V))
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}
