package dashboard

import (
	"bufio"
	"time"

	"github.com/gofiber/fiber/v2"
)

// events streams the live feed as text/event-stream: "device" and "alert"
// events whose data is a Change in JSON, and a ": heartbeat" comment every
// Config.SSEHeartbeat. The stream ends when the client leaves (noticed at
// the next write), the server shuts down or the feed stops.
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
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		defer sub.Close()
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
			}
			if err := w.Flush(); err != nil {
				return
			}
		}
	})
	return nil
}
