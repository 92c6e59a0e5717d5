package dashboard

import (
	"bufio"
	"context"
	"time"

	"github.com/gofiber/fiber/v2"
)

// events streams the live feed as text/event-stream: "device" and "alert"
// events whose data is a Change in JSON, and a ": heartbeat" comment every
// Config.SSEHeartbeat. The stream ends when the client leaves (noticed at
// the next write), the server shuts down, the feed stops, or its session
// ends: at once when this replica ends it (logout, password change,
// disable, end sessions), within Config.SessionCheck when another replica
// does or the session expires. Re-reading the session also marks it used,
// so an open board is not logged out by the idle timeout.
func (s *Server) events(c *fiber.Ctx) error {
	s.audit(c, AuditViewBoard, "", "live feed")
	c.Set("Content-Type", "text/event-stream")
	c.Set("Cache-Control", "no-store")
	c.Set("X-Accel-Buffering", "no")
	u, _ := userFrom(c)
	keep := frameFilter(u) // scope.go (D1): staff get the frames of their sites only
	sub := s.deps.Live.Subscribe()
	every := s.cfg.SSEHeartbeat
	done := s.done
	sessID, _ := c.Locals("sessionID").(string)
	var uid int64
	if u != nil {
		uid = u.ID
	}
	ended, stopWatch := s.sessions.watch(sessID, uid)
	check := s.cfg.SessionCheck
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		defer sub.Close()
		defer stopWatch()
		recheck := time.NewTicker(check)
		defer recheck.Stop()
		if _, err := w.WriteString("retry: 3000\n: connected\n\n"); err != nil {
			return
		}
		if err := w.Flush(); err != nil {
			return
		}
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case frame, ok := <-sub.C():
				if !ok {
					return
				}
				if keep != nil && !keep(frame) {
					continue
				}
				if _, err := w.Write(frame); err != nil {
					return
				}
			case <-tick.C:
				if _, err := w.WriteString(": heartbeat\n\n"); err != nil {
					return
				}
			case <-done:
				return
			case <-ended:
				return
			case <-recheck.C:
				ctx, cancel := context.WithTimeout(context.Background(), check)
				_, ok, err := s.sessions.get(ctx, sessID)
				cancel()
				if err == nil && !ok {
					return
				}
				continue
			}
			if err := w.Flush(); err != nil {
				return
			}
		}
	})
	return nil
}
