package dashboard

import (
	"embed"
	"errors"
	"strconv"

	"github.com/gofiber/fiber/v2"

	"github.com/eldercare-iot/eldercare/alerting"
)

// The live board as an installable web app that rings (issue 11 item 3).
//
// /assets/pwa/manifest.webmanifest and /assets/pwa/sw.js (the service
// worker; the header Service-Worker-Allowed: / lets it control the whole
// dashboard) come from web/pwa. The
// service worker shows the alarm's system notifications
// (ServiceWorkerRegistration.showNotification, so they stay in the
// notification shade of a phone and a tap opens the board) and caches
// nothing: health data is never stored on the device.
//
// The alarm itself runs in the page (web/src/alarm.js): for a new or
// escalated alert in the user's scope (the live stream carries only
// those) whose severity the device rings for, it sounds a Web Audio alarm
// that repeats until the alert is acknowledged or the user mutes it (5 or
// 15 minutes, then it rings again), vibrates where the device can, shows a
// notification with the resident, room and bed, and puts the count in the
// tab title. Browsers let a page make sound only after a user gesture, as
// real phones do: the board shows an "Enable alarm" button until the user
// pressed it once on that device. Ringing needs the board open (in the
// background is fine); a closed browser gets the e-mail, WeCom or
// DingTalk notifications of the escalation policy instead.

//go:embed web/pwa
var pwaFS embed.FS

// pwaPrefix is the URL path of the web app's files.
const pwaPrefix = AssetsPrefix + "pwa/"

func (s *Server) pwaFile(name, ctype string) fiber.Handler {
	return func(c *fiber.Ctx) error {
		b, err := pwaFS.ReadFile("web/pwa/" + name)
		if err != nil {
			return fiber.ErrNotFound
		}
		c.Set(fiber.HeaderContentType, ctype)
		c.Set(fiber.HeaderCacheControl, "no-cache")
		if name == "sw.js" {
			c.Set("Service-Worker-Allowed", "/")
		}
		return c.Send(b)
	}
}

// pwaRoutes registers the manifest, the service worker and its icon
// (public: they hold no data) on app.
func (s *Server) pwaRoutes(app fiber.Router) {
	app.Get(pwaPrefix+"manifest.webmanifest", s.pwaFile("manifest.webmanifest", "application/manifest+json"))
	app.Get(pwaPrefix+"sw.js", s.pwaFile("sw.js", "text/javascript; charset=utf-8"))
	app.Get(pwaPrefix+"icon.svg", s.pwaFile("icon.svg", "image/svg+xml"))
}

// alarmInfo is GET /alarm/alerts/:id: what the alarm's notification says
// about an alert in the user's scope, in the user's language, as JSON
// {"id", "severity", "status", "title", "resident", "room", "bed", "site",
// "clock"}; 404 for an alert the user may not see.
func (s *Server) alarmInfo(c *fiber.Ctx) error {
	id, err := strconv.ParseInt(c.Params("id"), 10, 64)
	if err != nil || id <= 0 {
		return fiber.NewError(fiber.StatusBadRequest, "alert id: want a positive integer")
	}
	ctx := c.UserContext()
	a, err := s.deps.Alerts.Get(ctx, id)
	if errors.Is(err, alerting.ErrNotFound) {
		return fiber.ErrNotFound
	}
	if err != nil {
		return err
	}
	u, _ := userFrom(c)
	if !s.canSeeAlert(u, a) {
		return fiber.ErrNotFound
	}
	lang := langOf(c)
	d, err := s.directoryIn(ctx, lang)
	if err != nil {
		return err
	}
	r := d.row(a)
	bedID := ""
	if a.Resident != nil {
		bedID = d.resByID[*a.Resident].BedID
	}
	if bedID == "" {
		bedID = d.devByID[a.Device].BedID
	}
	room, bed := d.bedLabel(bedID)
	resident := r.ResidentName
	if resident == "" {
		resident = trIn(lang, "alerts.unassigned") + " · " + a.Device
	}
	if room != "" {
		room = placeName(lang, "room", room)
	}
	if bed != "" {
		bed = placeName(lang, "bed", bed)
	}
	return c.JSON(fiber.Map{
		"id": a.ID, "severity": a.Severity, "status": a.Status,
		"title":    trIn(lang, "sev."+a.Severity) + " · " + alertWhat(lang, r.Alert),
		"resident": resident, "room": room, "bed": bed, "site": r.SiteName, "clock": r.OpenedClock,
	})
}
