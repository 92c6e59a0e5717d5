// Staff contacts: every staff account can be paged. The person (GET/POST /account/contacts) or an admin
// (GET/POST /admin/contacts/:username) sets the account's e-mail, phone, WeCom and DingTalk ids, the
// in-app channel, chosen channels and quiet hours; they are stored as the account's alerting recipient
// (id = username), so policies and rosters name accounts.

package dashboard

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/eldercare-iot/eldercare/alerting"
)

func (s *Server) contactRoutes(web fiber.Router) {
	people := requireRole(append([]string{RoleFamily}, staffRoles...)...)
	web.Get("/account/contacts", people, s.myContacts)
	web.Post("/account/contacts", people, s.postMyContacts)
	admin := requireRole(RoleAdmin)
	web.Get("/admin/contacts/:username", admin, s.adminContacts)
	web.Post("/admin/contacts/:username", admin, s.postAdminContacts)
}

// contactForm is the contacts form as typed.
type contactForm struct {
	Email, Phone, WeCom, DingTalk string
	InApp                         bool
	Channels                      []string
	Quiet                         bool
	Start, End, Zone              string
}

func (f contactForm) Has(ch string) bool {
	return len(f.Channels) == 0 || slices.Contains(f.Channels, ch)
}

func formOf(r alerting.Recipient) contactForm {
	f := contactForm{Email: r.Email, Phone: r.Phone, WeCom: r.WeCom, DingTalk: r.DingTalk, InApp: r.InApp, Channels: r.Channels}
	if f.WeCom == "" {
		f.WeCom = r.ChatID
	}
	if r.Quiet != nil {
		f.Quiet, f.Start, f.End, f.Zone = true, r.Quiet.Start.String(), r.Quiet.End.String(), r.Quiet.Zone
	}
	return f
}

func (s *Server) myContacts(c *fiber.Ctx) error {
	u, ok := userFrom(c)
	if !ok {
		return fiber.NewError(fiber.StatusUnauthorized, "not logged in")
	}
	return s.renderContacts(c, 0, *u, nil, nil, "/account/contacts")
}

func (s *Server) adminContacts(c *fiber.Ctx) error {
	u, err := s.deps.Accounts.ByUsername(c.UserContext(), c.Params("username"))
	if err != nil {
		return fiber.NewError(fiber.StatusNotFound, "no such account")
	}
	return s.renderContacts(c, 0, u, nil, nil, "/admin/contacts/"+u.Username)
}

func (s *Server) renderContacts(c *fiber.Ctx, code int, u User, form *contactForm, errs formErrors, action string) error {
	st := s.settings()
	data := map[string]any{"User": &u, "Action": action, "CSRF": csrfOf(c), "Errors": nonNilErrs(errs), "Available": st != nil,
		"Saved": c.Query("saved") != "", "Channels": alerting.Channels}
	if st != nil && form == nil {
		set, err := st.Settings(c.UserContext())
		if err != nil {
			return fmt.Errorf("read alert settings: %w", err)
		}
		r, _ := recipientOf(set, &u)
		f := formOf(r)
		if f.Zone == "" {
			f.Zone, f.Start, f.End = s.defaultZone(c.UserContext(), &u), "22:00", "07:00"
		}
		form = &f
	}
	if form == nil {
		form = &contactForm{}
	}
	data["Form"] = form
	return s.renderView(c, code, "contacts", "cont.title", data)
}

func (s *Server) postMyContacts(c *fiber.Ctx) error {
	u, ok := userFrom(c)
	if !ok {
		return fiber.NewError(fiber.StatusUnauthorized, "not logged in")
	}
	return s.saveContacts(c, *u, "/account/contacts")
}

func (s *Server) postAdminContacts(c *fiber.Ctx) error {
	u, err := s.deps.Accounts.ByUsername(c.UserContext(), c.Params("username"))
	if err != nil {
		return fiber.NewError(fiber.StatusNotFound, "no such account")
	}
	return s.saveContacts(c, u, "/admin/contacts/"+u.Username)
}

// saveContacts stores the form as u's recipient through
// alerting.Manager.PutRecipient; invalid fields answer 400 with the
// reason beside each.
func (s *Server) saveContacts(c *fiber.Ctx, u User, action string) error {
	lang := langOf(c)
	st := s.settings()
	if st == nil {
		return fiber.NewError(fiber.StatusServiceUnavailable, trIn(lang, "pref.unavailable"))
	}
	f := contactForm{Email: strings.TrimSpace(c.FormValue("email")), Phone: strings.TrimSpace(c.FormValue("phone")),
		WeCom: strings.TrimSpace(c.FormValue("wecom")), DingTalk: strings.TrimSpace(c.FormValue("dingtalk")),
		InApp: c.FormValue("in_app") == "on", Channels: formList(c, "channels"), Quiet: c.FormValue("quiet") == "on",
		Start: strings.TrimSpace(c.FormValue("start")), End: strings.TrimSpace(c.FormValue("end")), Zone: strings.TrimSpace(c.FormValue("zone"))}
	quiet, errs := parsePrefs(lang, prefForm{Email: f.Email, Quiet: f.Quiet, Start: f.Start, End: f.End, Zone: f.Zone})
	ctx := c.UserContext()
	set, err := st.Settings(ctx)
	if err != nil {
		return fmt.Errorf("read alert settings: %w", err)
	}
	r, _ := recipientOf(set, &u)
	r.ID, r.Name, r.Role, r.Lang = u.Username, u.Display(), u.Role, u.Lang
	r.Sites, r.Quiet = slices.Clone(u.Sites), quiet
	if u.Role == RoleFamily {
		r.Residents = slices.Clone(u.Residents)
	}
	r.Email, r.Phone, r.WeCom, r.DingTalk, r.InApp, r.Channels, r.ChatID = f.Email, f.Phone, f.WeCom, f.DingTalk, f.InApp, f.Channels, ""
	if len(f.Channels) == len(alerting.Channels) {
		r.Channels = nil
	}
	if len(errs) == 0 {
		if err := r.Validate(); err != nil {
			addRecipientErrors(errs, err)
		} else if !r.Reachable() {
			errs.add("channels", trIn(lang, "cont.err.unreachable"))
		}
	}
	if len(errs) == 0 {
		if err := st.PutRecipient(ctx, actorOf(c), r); err != nil {
			if !errors.Is(err, alerting.ErrInvalid) {
				return fmt.Errorf("save contacts of %s: %w", u.Username, err)
			}
			errs.add("channels", err.Error())
		}
	}
	if len(errs) > 0 {
		return s.renderContacts(c, fiber.StatusBadRequest, u, &f, errs, action)
	}
	s.audit(c, "contacts", "recipient:"+r.ID, "")
	return c.Redirect(action+"?saved=1", fiber.StatusSeeOther)
}

// addRecipientErrors puts each line of a Recipient.Validate error beside
// its field.
func addRecipientErrors(errs formErrors, err error) {
	for _, line := range strings.Split(err.Error(), "\n") {
		field := "channels"
		for _, k := range []string{"e-mail", "phone", "channel", "language"} {
			if strings.Contains(line, ": "+k) {
				field = map[string]string{"e-mail": "email", "phone": "phone", "channel": "channels", "language": "channels"}[k]
				break
			}
		}
		errs.add(field, line)
	}
}

func nonNilErrs(e formErrors) formErrors {
	if e == nil {
		return formErrors{}
	}
	return e
}
