package dashboard

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
)

// Browser authentication.
//
// A user logs in with username and password (argon2id, see HashPassword)
// at POST /login. The server then creates a NEW random session id (256
// bits) and deletes any session the browser presented, so an id planted
// before login is worthless (session fixation). The session cookie is
// HttpOnly, SameSite=Lax (a link in a notification e-mail opens the
// dashboard logged in; every state change is a POST that needs the CSRF
// token) and Secure when Config.SecureCookies is set or the request came
// over HTTPS. Every POST carries the session's CSRF token in the form field
// "_csrf" (or the header X-CSRF-Token); the login form itself uses a
// double-submit token in the short-lived cookie eldercare_login.
//
// Failed logins are limited per username and client address with growing
// delays (loginlimit.go). Sessions live in the store (sessions.go): a
// restart logs nobody out and replicas share them.
//
// The API token (Config.APIToken) is only for machine clients under
// /api/v1 ("Authorization: Bearer <token>"); browsers cannot log in with it.

const (
	loginCookie = "eldercare_login"
	// csrfField is the form field of the CSRF token.
	csrfField = "_csrf"
)

// randomToken returns 32 random bytes, base64url without padding.
func randomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand: " + err.Error()) // never fails on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// equalSecret compares in constant time (for equal lengths; the length of
// the configured token is not secret enough to matter).
func equalSecret(got, want string) bool {
	return want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// authTextIn are the texts of the login and account pages in lang: the
// catalogue's "auth.*" messages by their short name ({{.Data.T.title}}).
func authTextIn(lang string) map[string]string {
	keys, _ := enKeys()
	m := map[string]string{}
	for _, k := range keys {
		if short, ok := strings.CutPrefix(k, "auth."); ok {
			m[short] = trf(lang, k, "min", "{min}")
		}
	}
	return m
}

// loginToken returns the double-submit token of the login form, setting
// its cookie (10 minutes) when the browser has none.
func (s *Server) loginToken(c *fiber.Ctx) string {
	if tok := c.Cookies(loginCookie); len(tok) == 43 {
		return tok
	}
	tok := randomToken()
	c.Cookie(&fiber.Cookie{Name: loginCookie, Value: tok, Path: "/login", MaxAge: 600,
		HTTPOnly: true, SameSite: fiber.CookieSameSiteStrictMode, Secure: s.secure(c)})
	return tok
}

func (s *Server) secure(c *fiber.Ctx) bool { return s.cfg.SecureCookies || c.Protocol() == "https" }

func (s *Server) renderLogin(c *fiber.Ctx, msg, username string) error {
	T := authTextIn(langOf(c))
	return s.render(c, "login", page{Title: T["title"], Data: map[string]any{
		"T": T, "Error": msg, "Username": username, "LoginCSRF": s.loginToken(c)}})
}

func (s *Server) getLogin(c *fiber.Ctx) error {
	if sess, ok, _ := s.sessions.get(c.UserContext(), c.Cookies(sessionCookie)); ok {
		if u, err := s.deps.Accounts.Get(c.UserContext(), sess.userID); err == nil {
			return c.Redirect(roleHome(&u), fiber.StatusSeeOther)
		}
	}
	return s.renderLogin(c, "", "")
}

func (s *Server) postLogin(c *fiber.Ctx) error {
	T := authTextIn(langOf(c))
	if tok := c.Cookies(loginCookie); tok == "" || !equalSecret(c.FormValue(csrfField), tok) {
		c.Status(fiber.StatusForbidden)
		return s.renderLogin(c, T["nocookie"], "")
	}
	username := strings.ToLower(strings.TrimSpace(c.FormValue("username")))
	password := c.FormValue("password")
	if len(username) > MaxUsernameLen || len(password) > MaxPasswordLen {
		c.Status(fiber.StatusBadRequest)
		return s.renderLogin(c, T["wrong"], "")
	}
	wait, byIP, err := s.limiter.attempt(c.UserContext(), username, c.IP())
	if err != nil {
		return err
	}
	if wait > 0 {
		msg := T["limited_user"]
		if byIP {
			msg = T["limited_ip"]
		}
		s.log.Warn("dashboard login held back", "ip", c.IP(), "username", username, "wait", wait)
		c.Set(fiber.HeaderRetryAfter, fmt.Sprint(int(wait.Seconds())+1))
		c.Status(fiber.StatusTooManyRequests)
		return s.renderLogin(c, strings.ReplaceAll(msg, "{min}", humanWait(wait)), username)
	}
	u, err := s.deps.Accounts.Authenticate(c.UserContext(), username, password)
	if errors.Is(err, ErrBadLogin) {
		// Already counted by attempt.
		s.log.Warn("dashboard login refused", "ip", c.IP(), "username", username)
		c.Locals("user", &User{Username: username})
		s.audit(c, AuditLoginFailed, "user:"+username, "")
		c.Status(fiber.StatusUnauthorized)
		return s.renderLogin(c, T["wrong"], username)
	}
	if err != nil {
		return err
	}
	if err := s.limiter.succeeded(c.UserContext(), username, c.IP()); err != nil {
		return err
	}
	// A new session id, whatever the browser sent: session fixation proof.
	if old := c.Cookies(sessionCookie); old != "" {
		if err := s.sessions.delete(c.UserContext(), old); err != nil {
			return err
		}
	}
	id, sess, err := s.sessions.create(c.UserContext(), &u)
	if err != nil {
		return err
	}
	c.Cookie(&fiber.Cookie{
		Name: sessionCookie, Value: id, Path: "/", Expires: sess.expires,
		HTTPOnly: true, SameSite: fiber.CookieSameSiteLaxMode, Secure: s.secure(c),
	})
	c.Cookie(&fiber.Cookie{Name: loginCookie, Value: "", Path: "/login", MaxAge: -1, HTTPOnly: true})
	c.Locals("user", &u)
	s.audit(c, AuditLogin, "user:"+u.Username, "")
	return c.Redirect(roleHome(&u), fiber.StatusSeeOther)
}

// requireSession lets a request with a live session of an existing user
// through (Locals "session", "sessionID", "user" and "lang"); a browser
// without one is sent to /login.
func (s *Server) requireSession(c *fiber.Ctx) error {
	id := c.Cookies(sessionCookie)
	sess, ok, err := s.sessions.get(c.UserContext(), id)
	if err != nil {
		return err
	}
	var u User
	if ok {
		var err error
		u, err = s.deps.Accounts.Get(c.UserContext(), sess.userID)
		if err == nil && u.Disabled {
			err = ErrUserNotFound // a disabled account has no sessions
		}
		if errors.Is(err, ErrUserNotFound) {
			if err := s.sessions.delete(c.UserContext(), id); err != nil {
				return err
			}
			ok = false
		} else if err != nil {
			return err
		}
	}
	if !ok {
		if c.Method() == fiber.MethodGet {
			return c.Redirect("/login", fiber.StatusSeeOther)
		}
		return fiber.NewError(fiber.StatusUnauthorized, "not logged in")
	}
	// The language switch (?lang=) of a logged-in user changes the
	// account's language, so it holds on every page and every device.
	if l := c.Query("lang"); validLang(l) && l != u.Lang && c.Method() == fiber.MethodGet {
		if err := s.deps.Accounts.SetLang(c.UserContext(), u.Username, l); err != nil {
			return err
		}
		u.Lang = l
		c.Cookie(&fiber.Cookie{Name: langCookie, Value: l, Path: "/", HTTPOnly: true, SameSite: fiber.CookieSameSiteLaxMode, MaxAge: 365 * 24 * 3600})
	}
	sess.actor = u.Display()
	c.Locals("session", sess)
	c.Locals("sessionID", id)
	c.Locals("user", &u)
	c.Locals("lang", u.Lang)
	return c.Next()
}

// csrfToken returns the CSRF token of the request's session ("" without
// one), for the hidden form field "_csrf".
func csrfToken(c *fiber.Ctx) string {
	sess, _ := c.Locals("session").(session)
	return sess.csrf
}

// checkCSRF requires the session's CSRF token on every POST: the form field
// "_csrf" (older templates: "csrf") or the header X-CSRF-Token.
func (s *Server) checkCSRF(c *fiber.Ctx) error {
	if c.Method() != fiber.MethodPost {
		return c.Next()
	}
	want := csrfToken(c)
	got := c.Get("X-CSRF-Token")
	if got == "" {
		got = bodyValue(c, csrfField)
	}
	if got == "" {
		got = bodyValue(c, "csrf")
	}
	if !equalSecret(got, want) {
		return fiber.NewError(fiber.StatusForbidden, "missing or wrong CSRF token; reload the page and try again")
	}
	return c.Next()
}

// bodyValue reads a field of a POST body (urlencoded or multipart), never
// of the query string: a token in a URL ends up in logs and history.
func bodyValue(c *fiber.Ctx, name string) string {
	if v := c.Request().PostArgs().Peek(name); len(v) > 0 {
		return string(v)
	}
	if f, err := c.MultipartForm(); err == nil && f != nil && len(f.Value[name]) > 0 {
		return f.Value[name][0]
	}
	return ""
}

func (s *Server) postLogout(c *fiber.Ctx) error {
	id, _ := c.Locals("sessionID").(string)
	if err := s.sessions.delete(c.UserContext(), id); err != nil {
		return err
	}
	s.audit(c, AuditLogout, "", "")
	c.Cookie(&fiber.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HTTPOnly: true, SameSite: fiber.CookieSameSiteLaxMode, Secure: s.secure(c)})
	return c.Redirect("/login", fiber.StatusSeeOther)
}

// accountPage is GET /account: language choice and password change.
func (s *Server) accountPage(c *fiber.Ctx) error {
	return s.renderAccount(c, "", "")
}

func (s *Server) renderAccount(c *fiber.Ctx, msg, errMsg string) error {
	u, _ := userFrom(c)
	T := authTextIn(langOf(c))
	return s.renderPage(c, "account", T["account"], map[string]any{
		"T": T, "User": u, "Langs": Languages, "Msg": msg, "Error": errMsg, "CSRF": csrfToken(c)})
}

// postAccountLang is POST /account/lang (field lang: "en" or "zh-CN").
func (s *Server) postAccountLang(c *fiber.Ctx) error {
	u, _ := userFrom(c)
	lang := c.FormValue("lang")
	if err := s.deps.Accounts.SetLang(c.UserContext(), u.Username, lang); err != nil {
		if errors.Is(err, ErrUserNotFound) {
			return err
		}
		c.Status(fiber.StatusBadRequest)
		return s.renderAccount(c, "", err.Error())
	}
	u.Lang = lang
	c.Locals("lang", lang)
	return s.renderAccount(c, authTextIn(lang)["saved"], "")
}

// postAccountPassword is POST /account/password (fields current, new).
// Other sessions of the user end.
func (s *Server) postAccountPassword(c *fiber.Ctx) error {
	u, _ := userFrom(c)
	T := authTextIn(langOf(c))
	wait, _, err := s.limiter.attempt(c.UserContext(), u.Username, c.IP())
	if err != nil {
		return err
	}
	if wait > 0 {
		c.Set(fiber.HeaderRetryAfter, fmt.Sprint(int(wait.Seconds())+1))
		c.Status(fiber.StatusTooManyRequests)
		return s.renderAccount(c, "", strings.ReplaceAll(T["limited_user"], "{min}", humanWait(wait)))
	}
	if _, err := s.deps.Accounts.Authenticate(c.UserContext(), u.Username, c.FormValue("current")); err != nil {
		if !errors.Is(err, ErrBadLogin) {
			return err
		}
		s.audit(c, AuditPasswordChangeFailed, "user:"+u.Username, "wrong current password")
		c.Status(fiber.StatusForbidden)
		return s.renderAccount(c, "", T["pw_wrong"])
	}
	if err := s.limiter.succeeded(c.UserContext(), u.Username, c.IP()); err != nil {
		return err
	}
	if err := s.deps.Accounts.SetPassword(c.UserContext(), u.Username, c.FormValue("new")); err != nil {
		if errors.Is(err, ErrUserNotFound) {
			return err
		}
		c.Status(fiber.StatusBadRequest)
		return s.renderAccount(c, "", err.Error())
	}
	id, _ := c.Locals("sessionID").(string)
	if err := s.sessions.deleteUser(c.UserContext(), u.ID, id); err != nil {
		return err
	}
	s.audit(c, AuditPasswordChange, "user:"+u.Username, "other sessions ended")
	return s.renderAccount(c, T["pw_changed"], "")
}

// accountRoutes registers the account pages on the session group.
func (s *Server) accountRoutes(web fiber.Router) {
	web.Get("/account", s.accountPage)
	web.Post("/account/lang", s.postAccountLang)
	web.Post("/account/password", s.postAccountPassword)
	web.Get("/manager/audit", requireRole(RoleManager, RoleAdmin), s.auditPage)
}

// humanWait renders a login wait for the limit messages: "12 s", "3 min".
func humanWait(d time.Duration) string {
	if d < time.Minute {
		return fmt.Sprintf("%d s", int(d.Seconds())+1)
	}
	return fmt.Sprintf("%d min", int((d+time.Minute-1)/time.Minute))
}

// proxyHeader is the header naming the client behind a trusted proxy
// (Config.TrustedProxies), "" without one.
func proxyHeader(trusted []string) string {
	if len(trusted) == 0 {
		return ""
	}
	return "X-Real-Ip"
}
