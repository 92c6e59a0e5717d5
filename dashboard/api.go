package dashboard

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/eldercare-iot/eldercare/alerting"
	"github.com/eldercare-iot/eldercare/device"
)

// channelAPI is the actor and history channel of changes made through the
// JSON API.
const channelAPI = "api"

// Alert list limits of GET /api/v1/alerts (query parameter limit).
const (
	DefaultAlertLimit = 500
	MaxAlertLimit     = 5000
)

// bearerToken returns the credentials of an "Authorization: Bearer
// <token>" header; the scheme is case-insensitive (RFC 7235).
func bearerToken(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(tok), true
}

// requireBearer checks "Authorization: Bearer <token>": an API client's
// own token (see apitokens.go; the request is then scoped to the client's
// sites and audited as "api:<client>"), or the bootstrap --api-token in
// constant time, accepted only while no client token exists.
func (s *Server) requireBearer(c *fiber.Ctx) error {
	unauthorized := func(msg string) error {
		c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="eldercare"`)
		return fiber.NewError(fiber.StatusUnauthorized, msg)
	}
	tok, ok := bearerToken(c.Get(fiber.HeaderAuthorization))
	if !ok {
		return unauthorized("missing or wrong bearer token (Authorization: Bearer <api token>)")
	}
	cl, found, hasClients, err := s.deps.Accounts.apiClientByToken(c.UserContext(), tok)
	if err != nil {
		return fmt.Errorf("check API token: %w", err)
	}
	switch {
	case found:
		c.Locals("apiClient", &cl)
		// Scope checks and the audit log see the client as a caregiver of
		// its sites (every site: an admin).
		u := &User{Username: "api:" + cl.Name, Name: "API client " + cl.Name, Role: RoleCaregiver, Sites: cl.Sites}
		if len(cl.Sites) == 0 {
			u.Role = RoleAdmin
		}
		c.Locals("user", u)
	case equalSecret(tok, s.cfg.APIToken):
		if hasClients {
			return unauthorized("the bootstrap API token is retired once API clients have their own tokens (admin page: API clients)")
		}
	default:
		return unauthorized("missing or wrong bearer token (Authorization: Bearer <api token>)")
	}
	return c.Next()
}

// apiActor returns who acknowledges, resolves or comments on alert id
// through the API: the staff account named (?actor= or the body's
// "actor"), checked to exist, be active staff and see the alert's site;
// else "api" or "api:<client>". An unknown alert is a 404 (alertError).
func (s *Server) apiActor(c *fiber.Ctx, name string, id int64) (string, error) {
	a, err := s.deps.Alerts.Get(c.UserContext(), id)
	if err != nil {
		return "", alertError(err)
	}
	if name == "" {
		name = c.Query("actor")
	}
	if name == "" {
		if u, ok := userFrom(c); ok {
			return u.Username, nil
		}
		return channelAPI, nil
	}
	u, err := s.deps.Accounts.ByUsername(c.UserContext(), name)
	if err != nil || u.Disabled || !slices.Contains(staffRoles, u.Role) || !s.canSeeAlert(&u, a) {
		return "", fiber.NewError(fiber.StatusBadRequest, fmt.Sprintf("actor %q: not an active staff account of site %s", truncate(name, 32), a.Site))
	}
	return u.Username, nil
}

// decodeBody decodes the JSON body of an API request into v, refusing
// members v does not have; the error is a 400 "body: want JSON <want>:
// <the decoder's reason>".
func decodeBody(c *fiber.Ctx, v any, want string) error {
	dec := json.NewDecoder(bytes.NewReader(c.Body()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fiber.NewError(fiber.StatusBadRequest, fmt.Sprintf("body: want JSON %s: %v", want, err))
	}
	return nil
}

// apiChannel is the history channel of an API change: "api" or
// "api:<client>".
func apiChannel(c *fiber.Ctx) string {
	if cl := apiClientFrom(c); cl != nil {
		return channelAPI + ":" + cl.Name
	}
	return channelAPI
}

// ackBody is the optional body of POST /api/v1/alerts/:id/ack.
type ackBody struct {
	Actor string `json:"actor"`
}

// apiListAlerts serves GET /api/v1/alerts?status=open,acknowledged&site=&resident=&limit=
// as a JSON array of alerting.Alert, sorted by severity then age. limit (1 to
// MaxAlertLimit, default DefaultAlertLimit) is passed to the store, which
// orders by severity before applying it, so a limit never hides a critical
// alert behind less urgent ones.
func (s *Server) apiListAlerts(c *fiber.Ctx) error {
	s.audit(c, AuditViewAlerts, "", "")
	var f alerting.Filter
	if st := c.Query("status"); st != "" {
		for _, x := range strings.Split(st, ",") {
			x = strings.TrimSpace(x)
			if !slices.Contains([]string{alerting.StatusOpen, alerting.StatusAcknowledged, alerting.StatusResolved}, x) {
				return fiber.NewError(fiber.StatusBadRequest, fmt.Sprintf("status: %q is not open, acknowledged or resolved", truncate(x, 32)))
			}
			f.Status = append(f.Status, x)
		}
	}
	if v := c.Query("site"); v != "" {
		if err := device.ValidateID("site", v); err != nil {
			return fiber.NewError(fiber.StatusBadRequest, err.Error())
		}
		f.Site = v
	}
	if v := c.Query("resident"); v != "" {
		if err := device.ValidateID("resident", v); err != nil {
			return fiber.NewError(fiber.StatusBadRequest, err.Error())
		}
		f.Resident = v
	}
	f.Limit = DefaultAlertLimit
	if v := c.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxAlertLimit {
			return fiber.NewError(fiber.StatusBadRequest, fmt.Sprintf("limit: %q is not an integer from 1 to %d (default %d)", truncate(v, 32), MaxAlertLimit, DefaultAlertLimit))
		}
		f.Limit = n
	}
	if f.Site != "" && !clientSees(c, f.Site) {
		return fiber.NewError(fiber.StatusNotFound, fmt.Sprintf("site %s: not found", f.Site))
	}
	if cl := apiClientFrom(c); cl != nil && len(cl.Sites) == 1 {
		f.Site = cl.Sites[0]
	}
	as, err := s.deps.Alerts.List(c.UserContext(), f)
	if err != nil {
		return fmt.Errorf("list alerts: %w", err)
	}
	out := make([]alerting.Alert, 0, len(as))
	for _, a := range as {
		if clientSees(c, a.Site) {
			out = append(out, a)
		}
	}
	sortAlerts(out)
	return c.JSON(out)
}

func (s *Server) apiGetAlert(c *fiber.Ctx) error {
	s.audit(c, AuditViewAlerts, "alert:"+c.Params("id"), "")
	id, err := parseID(c)
	if err != nil {
		return err
	}
	a, err := s.deps.Alerts.Get(c.UserContext(), id)
	if err != nil {
		return alertError(err)
	}
	if !clientSees(c, a.Site) {
		return fiber.NewError(fiber.StatusNotFound, fmt.Sprintf("alert %d: not found", id))
	}
	return c.JSON(a)
}

func (s *Server) apiAck(c *fiber.Ctx) error {
	id, err := parseID(c)
	if err != nil {
		return err
	}
	var body ackBody
	if len(bytes.TrimSpace(c.Body())) > 0 {
		if err := decodeBody(c, &body, `{"actor": staff user name} or none`); err != nil {
			return err
		}
	}
	actor, err := s.apiActor(c, body.Actor, id)
	if err != nil {
		return err
	}
	a, err := s.deps.Alerts.Acknowledge(c.UserContext(), id, actor, apiChannel(c))
	if err != nil {
		return alertError(err)
	}
	s.log.Info("audit: alert acknowledged", "alert", id, "actor", actor, "channel", apiChannel(c))
	s.announce(alerting.EventAcknowledged, a)
	return c.JSON(a)
}

// resolveBody is the body of POST /api/v1/alerts/:id/resolve.
type resolveBody struct {
	Outcome string `json:"outcome"`
	Note    string `json:"note"`
	// Actor is the staff account that resolved it ("" = the API client).
	Actor string `json:"actor"`
}

func (s *Server) apiResolve(c *fiber.Ctx) error {
	id, err := parseID(c)
	if err != nil {
		return err
	}
	var body resolveBody
	if err := decodeBody(c, &body, `{"outcome": one of `+strings.Join(alerting.Outcomes, ", ")+`, "note": text}`); err != nil {
		return err
	}
	body.Note = strings.TrimSpace(body.Note)
	if err := resolveInput(body.Outcome, body.Note); err != nil {
		return fiber.NewError(fiber.StatusBadRequest, err.Error())
	}
	actor, err := s.apiActor(c, body.Actor, id)
	if err != nil {
		return err
	}
	a, err := s.deps.Alerts.Resolve(c.UserContext(), id, actor, apiChannel(c), body.Outcome, body.Note)
	if err != nil {
		return alertError(err)
	}
	s.log.Info("audit: alert resolved", "alert", id, "actor", actor, "channel", apiChannel(c), "outcome", body.Outcome)
	s.announce(alerting.EventResolved, a)
	return c.JSON(a)
}

// apiResident is one item of GET /api/v1/residents.
type apiResident struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Site       string `json:"site"`
	Bed        string `json:"bed"`
	Room       string `json:"room"`
	Vulnerable bool   `json:"vulnerable"`
	// InBed is the occupancy of the resident's bed: true, false or null
	// (unknown).
	InBed *bool `json:"in_bed"`
	// Vitals maps hr_bpm, spo2_pct, resp_per_min, pulse_bpm to the latest
	// value and device time, when known.
	Vitals map[string]Sample `json:"vitals"`
}

func (s *Server) apiResidents(c *fiber.Ctx) error {
	s.audit(c, AuditViewList, "", "")
	ctx := c.UserContext()
	d, err := s.directory(ctx)
	if err != nil {
		return err
	}
	s.log.Info("audit: residents listed", "actor", channelAPI)
	now := s.now()
	out := make([]apiResident, 0, len(d.residents))
	for _, r := range d.residents {
		if !clientSees(c, r.SiteID) {
			continue
		}
		item := apiResident{ID: r.ID, Name: r.Name, Site: r.SiteID, Bed: r.BedID, Vulnerable: r.Vulnerable, Vitals: map[string]Sample{}}
		if b, ok := d.bedByID[r.BedID]; ok {
			item.Room = b.RoomID
		}
		var inBedAt time.Time
		for _, dv := range d.devicesOf(r.BedID, r.ID, now) {
			st, ok := s.deps.Live.Device(dv.ID)
			if !ok {
				continue
			}
			for _, f := range VitalFields {
				if v, ok := st.Latest[f]; ok {
					if old, ok := item.Vitals[f]; !ok || v.At.After(old.At) {
						item.Vitals[f] = v
					}
				}
			}
			if st.InBed != nil && (item.InBed == nil || st.InBedAt.After(inBedAt)) {
				item.InBed, inBedAt = st.InBed, *st.InBedAt
			}
		}
		out = append(out, item)
	}
	return c.JSON(out)
}

// apiVitals serves GET /api/v1/residents/:id/vitals?minutes=15 (1-1440):
// {"resident", "from", "to", "series": {field: [{"t","v"}]}}.
func (s *Server) apiVitals(c *fiber.Ctx) error {
	ctx := c.UserContext()
	id := c.Params("id")
	if err := device.ValidateID("resident", id); err != nil {
		return fiber.NewError(fiber.StatusNotFound, "no such resident")
	}
	minutes := 15
	if v := c.Query("minutes"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1440 {
			return fiber.NewError(fiber.StatusBadRequest, "minutes: want an integer from 1 to 1440")
		}
		minutes = n
	}
	d, err := s.directory(ctx)
	if err != nil {
		return err
	}
	if _, ok := d.resByID[id]; !ok {
		return fiber.NewError(fiber.StatusNotFound, fmt.Sprintf("no resident %q", id))
	}
	s.log.Info("audit: vitals read", "resident", id, "actor", channelAPI)
	to := s.now().UTC()
	from := to.Add(-time.Duration(minutes) * time.Minute)
	series, err := s.deps.Vitals.ResidentVitals(ctx, id, from, to)
	if err != nil {
		// The error names InfluxDB's URL and bucket: log it, do not serve it.
		s.log.Error("api: vitals history unavailable", "resident", id, "err", err)
		return fiber.NewError(fiber.StatusBadGateway, "vitals history unavailable")
	}
	if series == nil {
		series = map[string][]Point{}
	}
	return c.JSON(fiber.Map{"resident": id, "from": from, "to": to, "series": series})
}

// apiNoRoute answers an API request no route took: 405 with Allow when the
// path exists for other methods, else 404.
func (s *Server) apiNoRoute(c *fiber.Ctx) error {
	if allow := allowedMethods(s.app, c.Path()); len(allow) > 0 {
		c.Set(fiber.HeaderAllow, strings.Join(allow, ", "))
		return fiber.NewError(fiber.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed here; allowed: %s", truncate(c.Method(), 16), strings.Join(allow, ", ")))
	}
	return fiber.NewError(fiber.StatusNotFound, "no such API route")
}

// allowedMethods returns the methods of the app's routes (not middleware)
// whose pattern matches path, sorted.
func allowedMethods(app *fiber.App, path string) []string {
	if app == nil {
		return nil
	}
	var out []string
	for _, r := range app.GetRoutes(true) {
		if matchRoute(r.Path, path) && !slices.Contains(out, r.Method) {
			out = append(out, r.Method)
		}
	}
	slices.Sort(out)
	return out
}

// matchRoute reports whether path matches a route pattern whose segments
// are literals or ":param" (one non-empty segment).
func matchRoute(pattern, path string) bool {
	ps := strings.Split(strings.Trim(pattern, "/"), "/")
	xs := strings.Split(strings.Trim(path, "/"), "/")
	if len(ps) != len(xs) {
		return false
	}
	for i, p := range ps {
		if strings.HasPrefix(p, ":") {
			if xs[i] == "" {
				return false
			}
			continue
		}
		if p != xs[i] {
			return false
		}
	}
	return true
}
