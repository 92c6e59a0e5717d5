package dashboard

import (
	"errors"
	"slices"
	"strings"

	"github.com/gofiber/fiber/v2"
)

// rolesLeastFirst lists the roles least privileged first: the order of
// the role pickers, whose default is the first.
func rolesLeastFirst() []string {
	r := slices.Clone(Roles)
	slices.Reverse(r)
	return r
}

// adminUserPage is GET /admin/users/:username: the account with forms to
// change its role, name, language, sites and linked residents, disable or
// enable it, reset its password (a new one is shown once) and end its
// sessions.
func (s *Server) adminUserPage(c *fiber.Ctx) error {
	return s.renderAdminUser(c, 0, "", "", nil)
}

func (s *Server) renderAdminUser(c *fiber.Ctx, code int, saved, password string, errs formErrors) error {
	ctx := c.UserContext()
	u, err := s.deps.Accounts.ByUsername(ctx, c.Params("username"))
	if errors.Is(err, ErrUserNotFound) {
		return fiber.NewError(fiber.StatusNotFound, "no such user")
	}
	if err != nil {
		return err
	}
	d, err := s.directory(ctx)
	if err != nil {
		return err
	}
	if errs == nil {
		errs = formErrors{}
	}
	me, _ := userFrom(c)
	nsess, err := s.sessions.countUser(ctx, u.ID)
	if err != nil {
		return err
	}
	fails, until, err := s.limiter.status(ctx, u.Username)
	if err != nil {
		return err
	}
	heldUntil := ""
	if !until.IsZero() {
		heldUntil = humanWait(until.Sub(s.now()))
	}
	return s.renderView(c, code, "admin_user", "adm.user_title", map[string]any{
		"U": u, "Sites": d.sites, "Residents": d.residents, "Roles": rolesLeastFirst(), "CSRF": csrfOf(c),
		"Saved": saved, "Password": password, "Errors": errs, "Self": me != nil && me.ID == u.ID,
		"Sessions": nsess, "FailedLogins": fails, "HeldFor": heldUntil,
	})
}

// postAdminUser is POST /admin/users/:username with action save, disable,
// enable, reset_password, end_sessions or unlock (forget failed logins). Every change is audited; an
// administrator cannot disable or demote their own account.
func (s *Server) postAdminUser(c *fiber.Ctx) error {
	ctx := c.UserContext()
	lang := langOf(c)
	u, err := s.deps.Accounts.ByUsername(ctx, c.Params("username"))
	if errors.Is(err, ErrUserNotFound) {
		return fiber.NewError(fiber.StatusNotFound, "no such user")
	}
	if err != nil {
		return err
	}
	me, _ := userFrom(c)
	self := me != nil && me.ID == u.ID
	target := "user:" + u.Username
	switch action := c.FormValue("action"); action {
	case "save":
		nu := u
		nu.Name = strings.TrimSpace(c.FormValue("name"))
		nu.Role = c.FormValue("role")
		nu.Lang = c.FormValue("lang")
		nu.Sites = formList(c, "sites")
		nu.Residents = strings.Fields(strings.ReplaceAll(c.FormValue("residents"), ",", " "))
		if self && nu.Role != u.Role {
			return s.renderAdminUser(c, fiber.StatusBadRequest, "", "", formErrors{"role": trIn(lang, "adm.err.self_role")})
		}
		if err := s.deps.Accounts.Update(ctx, nu); err != nil {
			if errors.Is(err, ErrUserNotFound) {
				return fiber.NewError(fiber.StatusNotFound, "no such user")
			}
			errs := formErrors{}
			for _, line := range strings.Split(err.Error(), "\n") {
				field := "form"
				for _, k := range []string{"name", "role", "language", "sites", "residents"} {
					if strings.Contains(line, k) {
						field = k
						break
					}
				}
				errs.add(field, trIn(lang, "adm.err."+field))
			}
			return s.renderAdminUser(c, fiber.StatusBadRequest, "", "", errs)
		}
		detail := nu.Role
		if nu.Role != u.Role {
			detail = u.Role + " -> " + nu.Role
		}
		s.audit(c, "update_user", target, detail)
		return s.renderAdminUser(c, 0, "saved", "", nil)
	case "disable", "enable":
		if self {
			return s.renderAdminUser(c, fiber.StatusBadRequest, "", "", formErrors{"form": trIn(lang, "adm.err.self_disable")})
		}
		if err := s.deps.Accounts.SetDisabled(ctx, u.Username, action == "disable"); err != nil {
			return err
		}
		if action == "disable" {
			// Every replica reads sessions from the store, so they end
			// everywhere at once; live streams on other replicas close
			// within Config.SessionCheck.
			if err := s.sessions.deleteUser(ctx, u.ID, ""); err != nil {
				return err
			}
		}
		s.audit(c, action+"_user", target, "")
		return s.renderAdminUser(c, 0, action+"d", "", nil)
	case "reset_password":
		pw := GeneratePassword()
		if err := s.deps.Accounts.SetPassword(ctx, u.Username, pw); err != nil {
			return err
		}
		keep := ""
		if self {
			keep, _ = c.Locals("sessionID").(string)
		}
		if err := s.sessions.deleteUser(ctx, u.ID, keep); err != nil {
			return err
		}
		s.audit(c, "reset_password", target, "")
		return s.renderAdminUser(c, 0, "password", pw, nil)
	case "end_sessions":
		keep := ""
		if self {
			keep, _ = c.Locals("sessionID").(string)
		}
		if err := s.sessions.deleteUser(ctx, u.ID, keep); err != nil {
			return err
		}
		s.audit(c, "end_sessions", target, "")
		return s.renderAdminUser(c, 0, "sessions", "", nil)
	case "unlock":
		// Forget the failed logins of the user from every address.
		if err := s.limiter.unlock(ctx, u.Username); err != nil {
			return err
		}
		s.audit(c, AuditUnlock, target, "")
		return s.renderAdminUser(c, 0, "unlocked", "", nil)
	default:
		return fiber.NewError(fiber.StatusBadRequest, "action: want save, disable, enable, reset_password, end_sessions or unlock")
	}
}

// formList reads a repeated form field (checkboxes) of a urlencoded or
// multipart body.
func formList(c *fiber.Ctx, name string) []string {
	var out []string
	for _, v := range c.Request().PostArgs().PeekMulti(name) {
		if s := strings.TrimSpace(string(v)); s != "" {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		if f, err := c.MultipartForm(); err == nil && f != nil {
			out = append(out, f.Value[name]...)
		}
	}
	return out
}
