// One-tap acknowledge links: GET /ack/:token shows the alert and one button (a GET never acknowledges,
// so mail scanners that fetch links cannot); POST /ack/:token acknowledges it as the link's recipient
// through alerting.Manager.AcknowledgeLink. No session is needed: the signed, single-use token is the
// credential.

package dashboard

import (
	"context"
	"errors"
	"strconv"

	"github.com/gofiber/fiber/v2"

	"github.com/eldercare-iot/eldercare/alerting"
)

// AckLinker is the part of *alerting.Manager the acknowledge links use.
type AckLinker interface {
	CheckAckToken(ctx context.Context, token string) (alerting.AckLink, error)
	AcknowledgeLink(ctx context.Context, token string) (alerting.Alert, alerting.AckLink, error)
}

func (s *Server) ackLinkRoutes(app fiber.Router) {
	app.Get(alerting.AckPath+":token", s.getAckLink)
	app.Post(alerting.AckPath+":token", s.postAckLink)
}

func (s *Server) linker() AckLinker {
	return s.deps.AckLinks
}

// ackLinkError maps a link error to its status and catalogue key.
func ackLinkError(err error) (int, string) {
	switch {
	case errors.Is(err, alerting.ErrLinkExpired):
		return fiber.StatusGone, "ack.expired"
	case errors.Is(err, alerting.ErrLinkUsed):
		return fiber.StatusConflict, "ack.used"
	case errors.Is(err, alerting.ErrConflict):
		return fiber.StatusConflict, "ack.settled"
	}
	return fiber.StatusNotFound, "ack.invalid" // invalid, tampered or unknown: nothing to find here
}

func (s *Server) getAckLink(c *fiber.Ctx) error {
	l := s.linker()
	if l == nil {
		return fiber.NewError(fiber.StatusServiceUnavailable, trIn(langOf(c), "pref.unavailable"))
	}
	token := c.Params("token")
	link, err := l.CheckAckToken(c.UserContext(), token)
	data := map[string]any{"Token": token, "Link": link}
	if err != nil {
		code, key := ackLinkError(err)
		data["Error"] = key
		return s.renderView(c, code, "acklink", "ack.title", data)
	}
	a, err := s.deps.Alerts.Get(c.UserContext(), link.Alert)
	if err != nil {
		code, key := ackLinkError(err)
		data["Error"] = key
		return s.renderView(c, code, "acklink", "ack.title", data)
	}
	data["Alert"] = a
	return s.renderView(c, 0, "acklink", "ack.title", data)
}

func (s *Server) postAckLink(c *fiber.Ctx) error {
	l := s.linker()
	if l == nil {
		return fiber.NewError(fiber.StatusServiceUnavailable, trIn(langOf(c), "pref.unavailable"))
	}
	a, link, err := l.AcknowledgeLink(c.UserContext(), c.Params("token"))
	data := map[string]any{"Link": link}
	if err != nil {
		code, key := ackLinkError(err)
		data["Error"] = key
		s.audit(c, "ack_link_refused", "recipient:"+link.Recipient, "")
		return s.renderView(c, code, "acklink", "ack.title", data)
	}
	s.audit(c, AuditAcknowledge, "alert:"+strconv.FormatInt(a.ID, 10), "link:"+link.Recipient+":"+link.Channel)
	data["Alert"], data["Done"] = a, true
	return s.renderView(c, 0, "acklink", "ack.title", data)
}
