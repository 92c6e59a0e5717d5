// Structured escalation-policy and roster forms on /admin: steps with a delay and target pickers (on
// duty, roles, teams, pageable staff accounts, or a typed target), shifts with times, weekdays and staff
// pickers. Validation reasons (unknown account, cannot be paged, reaches nobody) are shown beside the
// step or shift they concern.

package dashboard

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/eldercare-iot/eldercare/alerting"
)

// formRows is how many step or shift rows the structured forms offer.
const formRows = 4

// Weekdays are the roster weekday values, Monday first.
var Weekdays = []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"}

// targetChoice is one option of a step's target picker.
type targetChoice struct{ Value, Label string }

// wardChoice is one option of the roster form's ward picker: a ward of
// a site's rooms (registry Room.Ward).
type wardChoice struct{ Site, SiteName, Ward string }

// wardChoices lists the distinct wards of every site's rooms, by site and
// ward.
func wardChoices(d *directory) []wardChoice {
	var out []wardChoice
	for _, r := range d.roomByID {
		if r.Ward == "" || slices.ContainsFunc(out, func(w wardChoice) bool { return w.Site == r.SiteID && w.Ward == r.Ward }) {
			continue
		}
		name := d.siteByID[r.SiteID].Name
		if name == "" {
			name = r.SiteID
		}
		out = append(out, wardChoice{Site: r.SiteID, SiteName: name, Ward: r.Ward})
	}
	slices.SortFunc(out, func(a, b wardChoice) int { return strings.Compare(a.Site+"\x00"+a.Ward, b.Site+"\x00"+b.Ward) })
	return out
}

// siteWards returns the wards of site among ws.
func siteWards(ws []wardChoice, site string) []string {
	var out []string
	for _, w := range ws {
		if w.Site == site {
			out = append(out, w.Ward)
		}
	}
	return out
}

// pickerData lists the targets and staff a form can pick from: on duty,
// the on-duty staff of each ward with a roster, roles, teams, accounts.
func pickerData(set alerting.Settings) (targets []targetChoice, staff []targetChoice) {
	targets = append(targets, targetChoice{"on_duty", "on_duty"})
	var wards []string
	for _, r := range set.Rosters {
		if r.Ward != "" && !slices.Contains(wards, r.Ward) {
			wards = append(wards, r.Ward)
		}
	}
	slices.Sort(wards)
	for _, w := range wards {
		targets = append(targets, targetChoice{"ward:" + w, "ward:" + w})
	}
	roles := []string{}
	for _, r := range set.Recipients {
		if r.Reachable() && !slices.Contains(roles, r.Role) {
			roles = append(roles, r.Role)
		}
	}
	slices.Sort(roles)
	for _, r := range roles {
		targets = append(targets, targetChoice{"role:" + r, "role:" + r})
	}
	for _, t := range set.Teams {
		targets = append(targets, targetChoice{"team:" + t.ID, "team:" + t.ID})
	}
	for _, r := range set.Recipients {
		if r.Reachable() && r.Role != RoleFamily {
			staff = append(staff, targetChoice{r.ID, r.Name + " (" + r.ID + ")"})
			targets = append(targets, targetChoice{"account:" + r.ID, r.Name + " (" + r.ID + ")"})
		}
	}
	return targets, staff
}

// structured reports whether the request is a structured form (rows)
// rather than the one-line-per-step text.
func structured(c *fiber.Ctx) bool { return c.FormValue("structured") == "1" }

// otherTargets splits a typed list of targets or ids.
func otherTargets(s string) []string { return strings.Fields(strings.ReplaceAll(s, ",", " ")) }

// parsePolicyRows reads the structured policy form: id, repeat, and per
// row N step_after_N (a duration), step_target_N (picked, repeated) and
// step_other_N (typed). Empty rows are skipped.
func parsePolicyRows(c *fiber.Ctx, lang string) (alerting.Policy, formErrors, map[string]string) {
	vals := map[string]string{"id": strings.TrimSpace(c.FormValue("id")), "repeat": strings.TrimSpace(c.FormValue("repeat"))}
	p, errs := parsePolicy(lang, vals["id"], "", vals["repeat"])
	delete(errs, "steps")
	for i := range formRows {
		n := strconv.Itoa(i)
		after := strings.TrimSpace(c.FormValue("step_after_" + n))
		targets := append(formList(c, "step_target_"+n), otherTargets(c.FormValue("step_other_"+n))...)
		vals["step_after_"+n], vals["step_other_"+n] = after, c.FormValue("step_other_"+n)
		for _, v := range formList(c, "step_target_"+n) {
			vals["sel:step_target_"+n+":"+v] = "1"
		}
		if after == "" && len(targets) == 0 {
			continue
		}
		d, err := time.ParseDuration(after)
		if err != nil || d < 0 {
			errs.add("step"+n, trIn(lang, "form.err.a_duration_such_as_5m"))
			continue
		}
		if len(targets) == 0 {
			errs.add("step"+n, trIn(lang, "pol.err.no_target"))
			continue
		}
		p.Steps = append(p.Steps, alerting.Step{After: alerting.Duration(d), Targets: targets})
		vals["row_of_step_"+strconv.Itoa(len(p.Steps)-1)] = n
	}
	if len(p.Steps) == 0 && len(errs) == 0 {
		errs.add("steps", trIn(lang, "pol.err.no_steps"))
	}
	return p, errs, vals
}

var stepRef = regexp.MustCompile(`step (\d+)`)

// placeSettingErrors puts each line of a settings validation error beside
// the step (or shift) it names, else beside field def.
func placeSettingErrors(errs formErrors, err error, vals map[string]string, def string) {
	for _, line := range strings.Split(err.Error(), "\n") {
		line = strings.TrimPrefix(line, alerting.ErrInvalid.Error()+": ")
		field := def
		if m := stepRef.FindStringSubmatch(line); m != nil {
			if row, ok := vals["row_of_step_"+m[1]]; ok {
				field = "step" + row
			}
		}
		if m := shiftRef.FindStringSubmatch(line); m != nil {
			if row, ok := vals["row_of_shift_"+m[1]]; ok {
				field = "shift" + row
			}
		}
		if m := rosterStaffRef.FindStringSubmatch(line); m != nil && field == def {
			// The store names the roster and the account, not the
			// shift: the first row that lists the account.
			if row, ok := vals["row_of_staff_"+m[1]+m[2]]; ok {
				field = "shift" + row
			}
		}
		if e, ok := errs[field]; ok {
			errs[field] = e + "; " + line
		} else {
			errs.add(field, line)
		}
	}
}

var shiftRef = regexp.MustCompile(`(?:shift|roster \S+:? shift) (\S+)`)

// rosterStaffRef is a settings error about an account of a roster
// (alerting.Settings.Validate): unknown, or without a channel to page it.
var rosterStaffRef = regexp.MustCompile(`^roster \S+: (?:unknown staff account "([^"]*)"|"([^"]*)" cannot be paged)`)

// parseRosterRows reads the structured roster form: site, ward ("" = the
// whole site), zone, and per
// row N shift_name_N, shift_start_N, shift_end_N, shift_days_N (repeated
// weekdays; none = every day), shift_staff_N (picked, repeated) and
// shift_other_N (typed ids).
func parseRosterRows(c *fiber.Ctx, lang string) (alerting.Roster, formErrors, map[string]string) {
	vals := map[string]string{"site": strings.TrimSpace(c.FormValue("site")), "zone": strings.TrimSpace(c.FormValue("zone")),
		"ward": strings.TrimSpace(c.FormValue("ward"))}
	r, errs := parseRoster(lang, vals["site"], vals["zone"], "")
	r.Ward = vals["ward"]
	delete(errs, "shifts")
	for i := range formRows {
		n := strconv.Itoa(i)
		name := strings.TrimSpace(c.FormValue("shift_name_" + n))
		start, end := strings.TrimSpace(c.FormValue("shift_start_"+n)), strings.TrimSpace(c.FormValue("shift_end_"+n))
		staff := append(formList(c, "shift_staff_"+n), otherTargets(c.FormValue("shift_other_"+n))...)
		days := formList(c, "shift_days_"+n)
		vals["shift_name_"+n], vals["shift_start_"+n], vals["shift_end_"+n] = name, start, end
		vals["shift_other_"+n] = c.FormValue("shift_other_" + n)
		for _, v := range formList(c, "shift_staff_"+n) {
			vals["sel:shift_staff_"+n+":"+v] = "1"
		}
		for _, v := range days {
			vals["sel:shift_days_"+n+":"+v] = "1"
		}
		if name == "" && start == "" && end == "" && len(staff) == 0 {
			continue
		}
		st, err1 := alerting.ParseClock(start)
		en, err2 := alerting.ParseClock(end)
		if name == "" || err1 != nil || err2 != nil {
			errs.add("shift"+n, trIn(lang, "rost.err.shift"))
			continue
		}
		if len(staff) == 0 {
			errs.add("shift"+n, trIn(lang, "rost.err.no_staff"))
			continue
		}
		r.Shifts = append(r.Shifts, alerting.Shift{Name: name, Start: st, End: en, Weekdays: days, OnDuty: staff})
		vals["row_of_shift_"+name] = n
		for _, id := range staff {
			if _, ok := vals["row_of_staff_"+id]; !ok {
				vals["row_of_staff_"+id] = n
			}
		}
	}
	if len(r.Shifts) == 0 && len(errs) == 0 {
		errs.add("shifts", trIn(lang, "rost.err.no_shifts"))
	}
	return r, errs, vals
}

// adminPolicyRows handles the structured policy form.
func (s *Server) adminPolicyRows(c *fiber.Ctx, ps PolicyStore) error {
	lang := langOf(c)
	p, errs, vals := parsePolicyRows(c, lang)
	if len(errs) == 0 {
		if err := p.Validate(); err != nil {
			placeSettingErrors(errs, err, vals, "steps")
		}
	}
	if len(errs) == 0 {
		if err := ps.PutPolicy(c.UserContext(), actorOf(c), p); err != nil {
			placeSettingErrors(errs, err, vals, "steps")
		}
	}
	if len(errs) > 0 {
		return s.renderAdmin(c, fiber.StatusBadRequest, adminForms{Form: "policy", Errors: errs, Values: vals})
	}
	s.audit(c, "policy", "policy:"+p.ID, "")
	return c.Redirect("/admin?saved=policy#policies", fiber.StatusSeeOther)
}

// adminRosterRows handles the structured roster form.
func (s *Server) adminRosterRows(c *fiber.Ctx, ps PolicyStore) error {
	lang := langOf(c)
	r, errs, vals := parseRosterRows(c, lang)
	if r.Ward != "" {
		// The ward must be one of the site's rooms' wards (registry).
		d, err := s.directory(c.UserContext())
		if err != nil {
			return err
		}
		if known := siteWards(wardChoices(d), r.Site); !slices.Contains(known, r.Ward) {
			list := strings.Join(known, ", ")
			if list == "" {
				list = trIn(lang, "rost.no_wards")
			}
			errs.add("ward", trf(lang, "rost.err.unknown_ward", "ward", r.Ward, "site", r.Site, "wards", list))
		}
	}
	if len(errs) == 0 {
		if err := r.Validate(); err != nil {
			placeSettingErrors(errs, err, vals, "shifts")
		}
	}
	if len(errs) == 0 {
		if err := ps.PutRoster(c.UserContext(), actorOf(c), r); err != nil {
			placeSettingErrors(errs, err, vals, "shifts")
		}
	}
	if len(errs) > 0 {
		return s.renderAdmin(c, fiber.StatusBadRequest, adminForms{Form: "roster", Errors: errs, Values: vals})
	}
	s.audit(c, "roster", "roster:"+r.Key(), "")
	return c.Redirect("/admin?saved=roster#rosters", fiber.StatusSeeOther)
}

// rowNums are the row indexes of the structured forms, for templates.
func rowNums() []string {
	out := make([]string, formRows)
	for i := range out {
		out[i] = fmt.Sprint(i)
	}
	return out
}
