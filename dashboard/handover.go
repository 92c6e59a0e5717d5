package dashboard

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/eldercare-iot/eldercare/alerting"
	"github.com/eldercare-iot/eldercare/device/registry"
)

// HandoverWindow is how far back the handover page looks for residents to
// watch and for notes.
const HandoverWindow = 24 * time.Hour

// watchCategory sorts alert types into what the next shift watches for:
// vitals (abnormal values, NEWS2), dose (missed doses), sensor (a device
// to check: suspect sensor, a vital missing, unprotected, offline) and
// event (everything else: falls, SOS, bed exits, wandering, meals).
func watchCategory(typ string) string {
	switch typ {
	case alerting.TypeSpO2Low, alerting.TypeHeartRate, alerting.TypeRespiration, alerting.TypeNEWS2:
		return "vitals"
	case alerting.TypeDoseMissed:
		return "dose"
	case alerting.TypeSensorSuspect, alerting.TypeVitalMissing, alerting.TypeUnprotected, alerting.TypeDeviceOffline, alerting.TypeLowBattery:
		return "sensor"
	}
	return "event"
}

// watchCategories in page order.
var watchCategories = []string{"event", "vitals", "dose", "sensor"}

// WatchRow is a resident to watch at handover: the alerts of the last
// HandoverWindow by category (Counts[category]), the newest alert's type
// and time, and whether one is still open.
type WatchRow struct {
	Resident, Name, Room, Bed string
	Counts                    map[string]int
	Types                     []string // distinct alert types, newest first
	Last                      time.Time
	Open                      bool
}

// HandoverSite is the handover of one site.
type HandoverSite struct {
	Site, SiteName string
	Loc            *time.Location
	Shift, Date    string // the current shift (alerting.Shift*) and the local date it started
	Open           []alertRow
	Watch          []WatchRow
	Notes          []HandoverNote
}

// buildHandover assembles the handover of each visible site from the open
// alerts, the alerts opened in the last HandoverWindow and the notes.
func buildHandover(lang string, d *directory, keep func(string) bool, active []alerting.Alert, recent []alerting.AlertResponse, shifts alerting.ShiftBounds, now time.Time) []*HandoverSite {
	var out []*HandoverSite
	by := map[string]*HandoverSite{}
	for _, s := range d.sites {
		if !keep(s.ID) {
			continue
		}
		h := &HandoverSite{Site: s.ID, SiteName: s.Name, Loc: d.loc(s.ID)}
		h.Shift, h.Date = shifts.Shift(now, h.Loc)
		by[s.ID] = h
		out = append(out, h)
	}
	openRes := map[string]bool{}
	for _, a := range active {
		h := by[a.Site]
		if h == nil {
			continue
		}
		h.Open = append(h.Open, d.row(a))
		if a.Resident != nil {
			openRes[*a.Resident] = true
		}
	}
	watch := map[string]*WatchRow{}
	for _, r := range recent {
		h := by[r.Site]
		if h == nil || r.Resident == "" {
			continue
		}
		w := watch[r.Resident]
		if w == nil {
			res := d.resByID[r.Resident]
			w = &WatchRow{Resident: r.Resident, Name: residentName(d, lang, r.Resident), Counts: map[string]int{}, Open: openRes[r.Resident]}
			if w.Name == "" {
				w.Name = r.Resident
			}
			w.Room, w.Bed = d.bedLabel(res.BedID)
			watch[r.Resident] = w
		}
		w.Counts[watchCategory(r.Type)]++
		if r.Opened.After(w.Last) {
			w.Last = r.Opened
		}
		if !slices.Contains(w.Types, r.Type) {
			w.Types = append([]string{r.Type}, w.Types...)
		}
	}
	for _, w := range watch {
		site := d.resByID[w.Resident].SiteID
		if h := by[site]; h != nil {
			h.Watch = append(h.Watch, *w)
		}
	}
	for _, h := range out {
		sort.Slice(h.Watch, func(i, j int) bool {
			a, b := h.Watch[i], h.Watch[j]
			if a.Open != b.Open {
				return a.Open
			}
			return a.Last.After(b.Last)
		})
	}
	return out
}

// canWriteHandover: nurse leads, managers and admins write handover notes.
func canWriteHandover(c *fiber.Ctx) bool {
	u, ok := userFrom(c)
	return ok && (u.Role == RoleNurseLead || u.Role == RoleManager || u.Role == RoleAdmin)
}

// handover reads everything of the handover page.
func (s *Server) handover(ctx context.Context, lang string, keep func(string) bool) ([]*HandoverSite, error) {
	d, err := s.directory(ctx)
	if err != nil {
		return nil, err
	}
	now := s.now()
	set, err := s.reportSettings(ctx)
	if err != nil {
		return nil, err
	}
	active, err := s.activeAlerts(ctx, alerting.Filter{})
	if err != nil {
		return nil, err
	}
	var recent []alerting.AlertResponse
	if tr := s.deps.Trends; tr != nil {
		if recent, err = tr.AlertResponses(ctx, now.Add(-HandoverWindow), now.Add(time.Minute)); err != nil {
			return nil, err
		}
	}
	sites := buildHandover(lang, d, keep, active, recent, set.Shifts, now)
	if s.deps.Accounts != nil {
		for _, h := range sites {
			if h.Notes, err = s.deps.Accounts.HandoverNotes(ctx, h.Site, now.Add(-HandoverWindow), now.Add(time.Minute)); err != nil {
				return nil, err
			}
		}
	}
	return sites, nil
}

// handoverPage is GET /manager/handover: per visible site, the current
// shift, open alerts, residents to watch (alerts of the last 24 h by
// category) and the handover notes of the last 24 h, with a form to write
// one (nurse lead, manager, admin).
//
// csv=watch answers the residents to watch and csv=notes the notes as CSV
// (times in each site's zone).
func (s *Server) handoverPage(c *fiber.Ctx) error {
	name := c.Query("csv")
	if name == "" {
		return s.renderHandover(c, 0, "", formErrors{})
	}
	keep, _, err := s.reportScope(c)
	if err != nil {
		return err
	}
	sites, err := s.handover(c.UserContext(), langOf(c), keep)
	if err != nil {
		return err
	}
	var rows [][]string
	switch name {
	case "watch":
		rows = [][]string{append(append([]string{"site", "resident", "name", "room", "bed"}, watchCategories...), "types", "last_alert", "alert_open")}
		for _, h := range sites {
			for _, w := range h.Watch {
				row := []string{h.Site, w.Resident, w.Name, w.Room, w.Bed}
				for _, k := range watchCategories {
					row = append(row, strconv.Itoa(w.Counts[k]))
				}
				rows = append(rows, append(row, strings.Join(w.Types, " "), csvTime(w.Last, h.Loc), strconv.FormatBool(w.Open)))
			}
		}
	case "notes":
		rows = [][]string{{"site", "shift", "shift_date", "written", "author", "author_name", "note"}}
		for _, h := range sites {
			for _, n := range h.Notes {
				rows = append(rows, []string{h.Site, n.Shift, n.ShiftDate, csvTime(n.At, h.Loc), n.Author, n.AuthorName, n.Body})
			}
		}
	default:
		return fiber.NewError(fiber.StatusNotFound, fmt.Sprintf("no table %q: want watch or notes", truncate(name, 32)))
	}
	return s.sendCSV(c, "handover_"+name, s.now().UTC().Format("2006-01-02"), rows)
}

func (s *Server) renderHandover(c *fiber.Ctx, code int, draft string, errs formErrors) error {
	keep, _, err := s.reportScope(c)
	if err != nil {
		return err
	}
	sites, err := s.handover(c.UserContext(), langOf(c), keep)
	if err != nil {
		return err
	}
	return s.renderView(c, code, "handover", "mg.handover.title", map[string]any{"Sites": sites, "CanWrite": canWriteHandover(c),
		"Draft": draft, "DraftSite": c.FormValue("site"), "Errors": errs, "Categories": watchCategories, "Saved": c.Query("saved") != ""})
}

// addHandoverNote is POST /manager/handover/notes (site, note): stores a
// note for the site's current shift, written by the logged-in nurse lead,
// manager or admin. A bad note re-renders the page with the reason and the
// text kept.
func (s *Server) addHandoverNote(c *fiber.Ctx) error {
	lang := langOf(c)
	if !canWriteHandover(c) {
		return fiber.NewError(fiber.StatusForbidden, trIn(lang, "mg.handover.forbidden"))
	}
	u, _ := userFrom(c)
	site := c.FormValue("site")
	body := c.FormValue("note")
	keep, _, err := s.reportScope(c)
	if err != nil {
		return err
	}
	d, err := s.directory(c.UserContext())
	if err != nil {
		return err
	}
	if _, ok := d.siteByID[site]; !ok || !keep(site) {
		return s.renderHandover(c, fiber.StatusBadRequest, body, formErrors{"note": trIn(lang, "mg.err.site")})
	}
	set, err := s.reportSettings(c.UserContext())
	if err != nil {
		return err
	}
	shift, date := set.Shifts.Shift(s.now(), d.loc(site))
	n := HandoverNote{Site: site, Shift: shift, ShiftDate: date, Author: u.Username, AuthorName: u.Name, Body: body, At: s.now()}
	if err := s.deps.Accounts.AddHandoverNote(c.UserContext(), n); err != nil {
		if !errors.Is(err, ErrBadNote) {
			return err
		}
		msg := trIn(lang, "mg.err.note")
		if strings.TrimSpace(body) == "" {
			msg = trIn(lang, "mg.err.note_empty")
		}
		return s.renderHandover(c, fiber.StatusBadRequest, body, formErrors{"note": msg})
	}
	s.audit(c, "handover_note", "site:"+site, shift+" "+date)
	return c.Redirect("/manager/handover?saved=1", fiber.StatusSeeOther)
}

// residentName is the resident's display name in lang (registry Names,
// else Name, else the id).
func residentName(d *directory, lang, id string) string {
	r, ok := d.resByID[id]
	if !ok || r.Name == "" && len(r.Names) == 0 {
		return id
	}
	return registry.DisplayName(r.Names, lang, r.Name)
}
