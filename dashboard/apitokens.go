// API clients' own tokens: one bearer token per client, scoped to sites, listed and revoked by an admin
// (/admin/tokens). The global --api-token is only a bootstrap: it works until the first client token
// exists.

package dashboard

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/eldercare-iot/eldercare/device"
)

// APIClient is one API client and its token's scope.
type APIClient struct {
	Name string
	// Sites the client may read and act on; empty: every site.
	Sites     []string
	Created   time.Time
	CreatedBy string
	Revoked   *time.Time
	LastUsed  *time.Time
}

// ErrTokenExists: a client of that name exists.
var ErrTokenExists = errors.New("an API client of this name exists")

func tokenHash(tok string) string {
	h := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(h[:])
}

// AddAPIClient creates client name scoped to sites and returns its token
// ("ec_" + 43 base64url characters, 256 random bits), shown once; only its
// SHA-256 is stored.
func (a *Accounts) AddAPIClient(ctx context.Context, name string, sites []string, by string) (string, error) {
	if err := device.ValidateID("client", name); err != nil {
		return "", err
	}
	for _, s := range sites {
		if err := device.ValidateID("site", s); err != nil {
			return "", err
		}
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	tok := "ec_" + base64.RawURLEncoding.EncodeToString(b)
	var n int
	if err := a.db.QueryRowContext(ctx, a.db.Rebind(`SELECT COUNT(*) FROM api_tokens WHERE name = ?`), name).Scan(&n); err != nil {
		return "", fmt.Errorf("add API client: %w", err)
	}
	if n > 0 {
		return "", ErrTokenExists
	}
	_, err := a.db.ExecContext(ctx, a.db.Rebind(`INSERT INTO api_tokens (name, token_sha256, sites, created_ms, created_by) VALUES (?, ?, ?, ?, ?)`),
		name, tokenHash(tok), strings.Join(sites, " "), a.now().UnixMilli(), by)
	if err != nil {
		return "", fmt.Errorf("add API client: %w", err)
	}
	return tok, nil
}

// RevokeAPIClient revokes client name's token at once.
func (a *Accounts) RevokeAPIClient(ctx context.Context, name string) error {
	res, err := a.db.ExecContext(ctx, a.db.Rebind(`UPDATE api_tokens SET revoked_ms = ? WHERE name = ? AND revoked_ms IS NULL`), a.now().UnixMilli(), name)
	if err != nil {
		return fmt.Errorf("revoke API client: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("revoke API client %s: %w", name, ErrUserNotFound)
	}
	return nil
}

// APIClients lists every client, active and revoked, by name.
func (a *Accounts) APIClients(ctx context.Context) ([]APIClient, error) {
	rows, err := a.db.QueryContext(ctx, `SELECT name, sites, created_ms, created_by, revoked_ms, last_used_ms FROM api_tokens ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list API clients: %w", err)
	}
	defer rows.Close()
	var out []APIClient
	for rows.Next() {
		var c APIClient
		var sites string
		var created int64
		var revoked, used sql.NullInt64
		if err := rows.Scan(&c.Name, &sites, &created, &c.CreatedBy, &revoked, &used); err != nil {
			return nil, fmt.Errorf("list API clients: %w", err)
		}
		c.Sites = strings.Fields(sites)
		c.Created = time.UnixMilli(created).UTC()
		if revoked.Valid {
			t := time.UnixMilli(revoked.Int64).UTC()
			c.Revoked = &t
		}
		if used.Valid {
			t := time.UnixMilli(used.Int64).UTC()
			c.LastUsed = &t
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// apiClientByToken returns the active client of tok; false when none.
// hasClients reports whether any client token exists (the bootstrap token
// is retired then).
func (a *Accounts) apiClientByToken(ctx context.Context, tok string) (c APIClient, found, hasClients bool, err error) {
	var n int
	if err := a.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM api_tokens`).Scan(&n); err != nil {
		return c, false, false, err
	}
	if n == 0 {
		return c, false, false, nil
	}
	var sites string
	err = a.db.QueryRowContext(ctx, a.db.Rebind(`SELECT name, sites FROM api_tokens WHERE token_sha256 = ? AND revoked_ms IS NULL`), tokenHash(tok)).Scan(&c.Name, &sites)
	if errors.Is(err, sql.ErrNoRows) {
		return c, false, true, nil
	}
	if err != nil {
		return c, false, true, err
	}
	c.Sites = strings.Fields(sites)
	_, _ = a.db.ExecContext(ctx, a.db.Rebind(`UPDATE api_tokens SET last_used_ms = ? WHERE name = ?`), a.now().UnixMilli(), c.Name)
	return c, true, true, nil
}

// apiClientFrom returns the API client of the request (nil: the bootstrap
// token, every site).
func apiClientFrom(c *fiber.Ctx) *APIClient {
	cl, _ := c.Locals("apiClient").(*APIClient)
	return cl
}

// clientSees reports whether the request's API client may see site.
func clientSees(c *fiber.Ctx, site string) bool {
	cl := apiClientFrom(c)
	if cl == nil || len(cl.Sites) == 0 {
		return true
	}
	for _, s := range cl.Sites {
		if s == site {
			return true
		}
	}
	return false
}

func (s *Server) tokenRoutes(web fiber.Router) {
	admin := requireRole(RoleAdmin)
	web.Get("/admin/tokens", admin, s.tokensPage)
	web.Post("/admin/tokens", admin, s.addToken)
	web.Post("/admin/tokens/:name/revoke", admin, s.revokeToken)
}

func (s *Server) tokensPage(c *fiber.Ctx) error { return s.renderTokens(c, 0, "", nil, nil) }

func (s *Server) renderTokens(c *fiber.Ctx, code int, newToken string, errs formErrors, vals map[string]string) error {
	list, err := s.deps.Accounts.APIClients(c.UserContext())
	if err != nil {
		return err
	}
	d, err := s.directory(c.UserContext())
	if err != nil {
		return err
	}
	return s.renderView(c, code, "tokens", "tok.title", map[string]any{"Clients": list, "New": newToken, "Errors": nonNilErrs(errs),
		"Values": vals, "CSRF": csrfOf(c), "Sites": d.sites})
}

func (s *Server) addToken(c *fiber.Ctx) error {
	lang := langOf(c)
	name := strings.TrimSpace(c.FormValue("name"))
	sites := formList(c, "sites")
	errs := formErrors{}
	tok, err := s.deps.Accounts.AddAPIClient(c.UserContext(), name, sites, actorOf(c))
	switch {
	case errors.Is(err, ErrTokenExists):
		errs.add("name", trIn(lang, "tok.err.exists"))
	case err != nil && strings.HasPrefix(err.Error(), "client"):
		errs.add("name", trIn(lang, "form.err.1_64_letters_digits_or"))
	case err != nil && strings.HasPrefix(err.Error(), "site"):
		errs.add("sites", err.Error())
	case err != nil:
		return err
	}
	if len(errs) > 0 {
		return s.renderTokens(c, fiber.StatusBadRequest, "", errs, map[string]string{"name": name})
	}
	s.audit(c, "add_api_client", "api:"+name, strings.Join(sites, " "))
	return s.renderTokens(c, 0, tok, nil, map[string]string{"created": name})
}

func (s *Server) revokeToken(c *fiber.Ctx) error {
	name := c.Params("name")
	if err := s.deps.Accounts.RevokeAPIClient(c.UserContext(), name); err != nil {
		if errors.Is(err, ErrUserNotFound) {
			return fiber.NewError(fiber.StatusNotFound, trIn(langOf(c), "err.not_found"))
		}
		return err
	}
	s.audit(c, "revoke_api_client", "api:"+name, "")
	return c.Redirect("/admin/tokens", fiber.StatusSeeOther)
}
