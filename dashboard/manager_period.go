package dashboard

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"html/template"
	"net/url"
	"time"

	"github.com/gofiber/fiber/v2"
)

// Period kinds of the manager's period picker.
const (
	PeriodWeek   = "week"   // this week, Monday 00:00 in the site's zone to now
	PeriodMonth  = "month"  // a calendar month (month=YYYY-MM, default this one)
	PeriodCustom = "custom" // from=YYYY-MM-DD to=YYYY-MM-DD, both days included
)

// MaxCustomDays is the longest custom report period, in days.
const MaxCustomDays = 366

// periodPick is what the period picker of a manager page shows.
type periodPick struct {
	Kind, Month, From, To string
	// Query is the query string that selects this period again, encoded
	// (url.Values) from validated values, for links.
	Query template.URL
}

// ParsePeriod reads the period picker: kind week, month (with month
// YYYY-MM, default this month) or custom (from and to as YYYY-MM-DD in
// loc, to included, at most MaxCustomDays). "" = month. Errors name the
// field: "period", "month", "from" or "to".
func ParsePeriod(kind, month, from, to string, now time.Time, loc *time.Location) (Period, string, error) {
	switch kind {
	case "", PeriodMonth:
		p, err := MonthPeriod(month, now, loc)
		return p, "month", err
	case PeriodWeek:
		l := now.In(loc)
		y, m, d := l.Date()
		off := (int(l.Weekday()) + 6) % 7 // days since Monday
		start := time.Date(y, m, d-off, 0, 0, 0, 0, loc)
		return Period{From: start, To: start.AddDate(0, 0, 7), Loc: loc, Label: "week-" + start.Format("2006-01-02")}, "", nil
	case PeriodCustom:
		f, err := time.ParseInLocation(time.DateOnly, from, loc)
		if err != nil {
			return Period{}, "from", fmt.Errorf("from %q: want a date YYYY-MM-DD", truncate(from, 16))
		}
		t, err := time.ParseInLocation(time.DateOnly, to, loc)
		if err != nil {
			return Period{}, "to", fmt.Errorf("to %q: want a date YYYY-MM-DD", truncate(to, 16))
		}
		if t.Before(f) {
			return Period{}, "to", fmt.Errorf("to %s is before from %s", to, from)
		}
		end := t.AddDate(0, 0, 1)
		if end.Sub(f) > MaxCustomDays*24*time.Hour+2*time.Hour {
			return Period{}, "to", fmt.Errorf("period %s to %s: at most %d days", from, to, MaxCustomDays)
		}
		return Period{From: f, To: end, Loc: loc, Label: from + "_" + to}, "", nil
	}
	return Period{}, "period", fmt.Errorf("period %q: want week, month or custom", truncate(kind, 16))
}

// managerPeriod reads the period picker of c (see ParsePeriod); on a bad
// input it returns this month and the error by field, so the page shows
// the picker with the reason beside the field.
func (s *Server) managerPeriod(c *fiber.Ctx, loc *time.Location) (Period, periodPick, formErrors) {
	pick := periodPick{Kind: c.Query("period"), Month: c.Query("month"), From: c.Query("from"), To: c.Query("to")}
	if pick.Kind == "" {
		pick.Kind = PeriodMonth
	}
	p, field, err := ParsePeriod(pick.Kind, pick.Month, pick.From, pick.To, s.now(), loc)
	errs := formErrors{}
	if err != nil {
		errs[field] = periodErrorText(langOf(c), field, pick, loc, s.now())
		p, _ = MonthPeriod("", s.now(), loc)
		pick = periodPick{Kind: PeriodMonth}
	}
	if pick.Month == "" && pick.Kind == PeriodMonth {
		pick.Month = p.Label
	}
	if pick.From == "" {
		pick.From = p.From.Format(time.DateOnly)
	}
	if pick.To == "" {
		pick.To = p.To.AddDate(0, 0, -1).Format(time.DateOnly)
	}
	q := url.Values{}
	switch pick.Kind {
	case PeriodMonth:
		q.Set("month", p.Label)
	case PeriodWeek:
		q.Set("period", PeriodWeek)
	default:
		q.Set("period", PeriodCustom)
		q.Set("from", p.From.Format(time.DateOnly))
		q.Set("to", p.To.AddDate(0, 0, -1).Format(time.DateOnly))
	}
	pick.Query = template.URL(q.Encode()) // only dates and fixed words
	return p, pick, errs
}

// sendCSV answers rows (header first) as a CSV attachment
// <name>-<label>.csv; every cell after the header goes through csvCell
// (formula injection). The export is audited.
func (s *Server) sendCSV(c *fiber.Ctx, name, label string, rows [][]string) error {
	var buf bytes.Buffer
	cw := csv.NewWriter(&buf)
	for i, row := range rows {
		if i > 0 {
			for j := range row {
				row[j] = csvCell(row[j])
			}
		}
		if err := cw.Write(row); err != nil {
			return fmt.Errorf("write %s.csv: %w", name, err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("write %s.csv: %w", name, err)
	}
	s.audit(c, "export_report", "report:"+name, label)
	c.Set(fiber.HeaderContentType, "text/csv; charset=utf-8")
	c.Set(fiber.HeaderContentDisposition, fmt.Sprintf(`attachment; filename="%s-%s.csv"`, name, label))
	return c.Send(buf.Bytes())
}

// csvTime formats t in loc as RFC 3339 with the zone's offset ("" for
// zero).
func csvTime(t time.Time, loc *time.Location) string {
	if t.IsZero() {
		return ""
	}
	return t.In(loc).Format(time.RFC3339)
}

// periodErrorText is why ParsePeriod refused the picker's field, in lang
// (ParsePeriod's own errors are English, for the API and logs).
func periodErrorText(lang, field string, pick periodPick, loc *time.Location, now time.Time) string {
	switch field {
	case "month":
		return trf(lang, "mg.err.month", "example", now.In(loc).Format("2006-01"))
	case "from":
		return trIn(lang, "mg.err.date")
	case "to":
		to, err := time.ParseInLocation(time.DateOnly, pick.To, loc)
		if err != nil {
			return trIn(lang, "mg.err.date")
		}
		if from, err := time.ParseInLocation(time.DateOnly, pick.From, loc); err == nil && to.Before(from) {
			return trIn(lang, "mg.err.order")
		}
		return trf(lang, "mg.err.too_long", "n", fmt.Sprint(MaxCustomDays))
	}
	return trIn(lang, "mg.err.period")
}

// periodRefused is the error of a manager page's CSV asked for with a bad
// period (400 with the first reason), nil when errs is empty: a CSV
// never falls back to another period than the one asked for.
func periodRefused(errs formErrors) error {
	for _, f := range []string{"period", "month", "from", "to"} {
		if msg, ok := errs[f]; ok {
			return fiber.NewError(fiber.StatusBadRequest, msg)
		}
	}
	return nil
}

// periodStatus is the page's status for errs: 400 when the period was
// refused (the page shows this month with the reason), else 0 (200).
func periodStatus(errs formErrors) int {
	if len(errs) > 0 {
		return fiber.StatusBadRequest
	}
	return 0
}
