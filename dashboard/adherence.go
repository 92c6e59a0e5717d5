package dashboard

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/eldercare-iot/eldercare/alerting"
	"github.com/eldercare-iot/eldercare/device/registry"
)

// Medication adherence per week (issue 13 item 3), from the doses the
// alerting service recorded (alerting.Manager.Doses): on the resident page
// for caregivers, one plain line on the family page, and a table of the
// manager's residents on /manager/adherence. Weeks run Monday to Sunday in
// the site's zone.

// DoseReader reads recorded doses; *alerting.Manager implements it.
type DoseReader interface {
	Doses(ctx context.Context, residents []string, from, to time.Time) ([]alerting.DoseRecord, error)
}

var _ DoseReader = (*alerting.Manager)(nil)

func (s *Server) doses() DoseReader {
	return s.deps.Doses
}

// weekAdherence is one week of one resident's doses.
type weekAdherence struct {
	Week                string // the Monday, 2006-01-02
	Taken, Late, Missed int
	Judged              int    // Taken + Late + Missed
	Rate                string // share taken (on time or late), "–" when none judged
	OnTime, AllTaken    bool
	start               time.Time
}

// weekStart is the Monday 00:00 of t's week in loc.
func weekStart(t time.Time, loc *time.Location) time.Time {
	l := t.In(loc)
	back := (int(l.Weekday()) + 6) % 7 // days since Monday
	return time.Date(l.Year(), l.Month(), l.Day()-back, 0, 0, 0, 0, loc)
}

// adherenceWeeks counts recs by week, for the n weeks ending with now's
// week, newest first.
func adherenceWeeks(recs []alerting.DoseRecord, loc *time.Location, now time.Time, n int) []weekAdherence {
	cur := weekStart(now, loc)
	out := make([]weekAdherence, n)
	for i := range out {
		st := time.Date(cur.Year(), cur.Month(), cur.Day()-7*i, 0, 0, 0, 0, loc)
		out[i] = weekAdherence{Week: st.Format("2006-01-02"), start: st}
	}
	for _, r := range recs {
		ws := weekStart(r.Due, loc)
		i := slices.IndexFunc(out, func(w weekAdherence) bool { return w.start.Equal(ws) })
		if i < 0 {
			continue
		}
		switch r.State {
		case alerting.DoseTaken:
			out[i].Taken++
		case alerting.DoseLate:
			out[i].Late++
		case alerting.DoseMissed:
			out[i].Missed++
		}
	}
	for i := range out {
		w := &out[i]
		w.Judged = w.Taken + w.Late + w.Missed
		w.Rate = "–"
		if w.Judged > 0 {
			w.Rate = fmt.Sprintf("%.0f %%", 100*float64(w.Taken+w.Late)/float64(w.Judged))
		}
		w.AllTaken = w.Judged > 0 && w.Missed == 0
		w.OnTime = w.AllTaken && w.Late == 0
	}
	return out
}

// residentAdherence returns the last n weeks of res (nil when the resident
// has no schedule or no dose reader).
func (s *Server) residentAdherence(ctx context.Context, res registry.Resident, loc *time.Location, n int) ([]weekAdherence, error) {
	dr := s.doses()
	if dr == nil || len(res.Medication) == 0 {
		return nil, nil
	}
	now := s.now()
	from := weekStart(now, loc).AddDate(0, 0, -7*(n-1))
	recs, err := dr.Doses(ctx, []string{res.ID}, from, now.Add(24*time.Hour))
	if err != nil {
		return nil, err
	}
	return adherenceWeeks(recs, loc, now, n), nil
}

// familyAdherence is this week's adherence in plain words ("" when there
// is nothing to say).
func familyAdherence(lang string, w weekAdherence) string {
	if w.Judged == 0 {
		return trIn(lang, "adh.family.none")
	}
	return trf(lang, "adh.family.line", "taken", strconv.Itoa(w.Taken+w.Late), "all", strconv.Itoa(w.Judged),
		"late", strconv.Itoa(w.Late), "missed", strconv.Itoa(w.Missed))
}

// managerAdherenceRow is one resident on /manager/adherence.
type managerAdherenceRow struct {
	Resident registry.Resident
	Site     string
	Weeks    []weekAdherence
}

// managerAdherence is GET /manager/adherence: the residents with a
// medication schedule on the user's sites, with this week and the three
// before (taken, late, missed, share taken).
func (s *Server) managerAdherence(c *fiber.Ctx) error {
	ctx := c.UserContext()
	u, _ := userFrom(c)
	d, err := s.directoryIn(ctx, langOf(c))
	if err != nil {
		return err
	}
	const n = 4
	now := s.now()
	var ids []string
	var rows []managerAdherenceRow
	for _, r := range d.residents {
		if len(r.Medication) == 0 || u == nil || !canSeeSite(u, r.SiteID) {
			continue
		}
		ids = append(ids, r.ID)
		rows = append(rows, managerAdherenceRow{Resident: r, Site: d.siteByID[r.SiteID].Name})
	}
	var recs []alerting.DoseRecord
	if dr := s.doses(); dr != nil && len(ids) > 0 {
		if recs, err = dr.Doses(ctx, ids, now.AddDate(0, 0, -7*n-1), now.Add(24*time.Hour)); err != nil {
			return err
		}
	}
	var weeks []string
	for i := range rows {
		var mine []alerting.DoseRecord
		for _, x := range recs {
			if x.Resident == rows[i].Resident.ID {
				mine = append(mine, x)
			}
		}
		rows[i].Weeks = adherenceWeeks(mine, d.loc(rows[i].Resident.SiteID), now, n)
		if weeks == nil {
			for _, w := range rows[i].Weeks {
				weeks = append(weeks, w.Week)
			}
		}
	}
	return s.renderView(c, 0, "adherence", "adh.title", map[string]any{"Rows": rows, "Weeks": weeks, "Available": s.doses() != nil})
}
