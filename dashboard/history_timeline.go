package dashboard

// An alert's full timeline (/alerts/:id and GET /api/v1/alerts/:id) and
// its comments (page form and POST /api/v1/alerts/:id/comments).

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/eldercare-iot/eldercare/alerting"
)

// timelineDelivery is one receiver's (or recipient's) delivery of a
// notification, in words.
type timelineDelivery struct {
	Receiver  string // the receiver's name as configured (rendered with chan)
	Recipient string // the person, for per-recipient receivers (e-mail)
	Status    string // pending, sent, skipped, retrying, failed
	Attempts  int
	Error     string
	At        string
}

// timelineItem is one line of the timeline.
type timelineItem struct {
	at         time.Time
	order      int
	At, ISO    string
	Kind       string // history action, "notification" or "comment"
	Verb       string // what happened, in the page's language
	Who        string // the person or "system" in words
	Channel    string // where it came from (rendered with chan), "" for none
	Text       string // detail in words; a comment's text as written
	Paged      []string
	Deliveries []timelineDelivery
	CommentID  int64
}

// timelineModel is the data of the timeline page.
type timelineModel struct {
	Row        historyRow
	Items      []timelineItem
	Escalation string // the escalation state in words, "" when none
	CSRF       string
	Draft      string // the comment as typed, kept when it was refused
	Error      string // why it was refused
	MaxComment int
	Back       string
}

// timelineItems merges an alert's history, notifications and comments
// into one list, oldest first, times in loc.
func timelineItems(lang string, t alerting.Timeline, loc *time.Location) []timelineItem {
	var out []timelineItem
	add := func(it timelineItem) {
		it.At = it.at.In(loc).Format(timeFormat)
		it.ISO = it.at.UTC().Format(time.RFC3339)
		out = append(out, it)
	}
	who := func(actor string) string {
		if actor == alerting.ActorSystem {
			return trIn(lang, "tl.system")
		}
		return actor
	}
	for i, h := range t.History {
		if h.Action == alerting.ActionNotified {
			continue // shown with its notification and each receiver's result
		}
		it := timelineItem{at: h.At, order: i, Kind: h.Action, Verb: trIn(lang, "tl.action."+h.Action), Who: who(h.Actor), Channel: h.Channel,
			Text: historyWords(lang, t.Alert, h)}
		if h.Action == alerting.ActionResolved && t.Alert.Note != "" {
			it.Text = trf(lang, "history.tl.outcome_note", "outcome", it.Text, "note", t.Alert.Note)
		}
		if h.Action == alerting.ActionComment {
			it.Verb = trIn(lang, "history.tl.note")
			if h.Actor == alerting.ActorSystem {
				it.Text = systemNote(lang, h.Detail)
			}
		}
		add(it)
	}
	for i, n := range t.Notifications {
		it := timelineItem{at: n.At, order: 10000 + i, Kind: "notification", Verb: trf(lang, "history.tl.notification", "event", trIn(lang, "tl.event."+n.Event)),
			Who: trIn(lang, "tl.system")}
		if n.Escalation != nil {
			for _, r := range n.Escalation.Recipients {
				name := r.Name
				if name == "" {
					name = r.ID
				}
				it.Paged = append(it.Paged, name)
			}
			if len(it.Paged) == 0 {
				it.Paged = []string{trIn(lang, "history.tl.nobody")}
			}
		}
		for _, d := range n.Deliveries {
			td := timelineDelivery{Receiver: d.Receiver, Recipient: d.Recipient, Status: d.Status, Attempts: d.Attempts, Error: d.LastError,
				At: d.UpdatedAt.In(loc).Format(timeFormat)}
			it.Deliveries = append(it.Deliveries, td)
		}
		if len(n.Deliveries) == 0 {
			it.Text = trIn(lang, "history.tl.no_receiver")
		}
		add(it)
	}
	for i, c := range t.Comments {
		add(timelineItem{at: c.At, order: 20000 + i, Kind: "comment", Verb: trIn(lang, "tl.action.comment"), Who: c.Author, Channel: c.Channel,
			Text: c.Text, CommentID: c.ID})
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].at.Equal(out[j].at) {
			return out[i].at.Before(out[j].at)
		}
		return out[i].order < out[j].order
	})
	return out
}

// The system notes of alerting (escalation.go, inhibit.go), in words.
var (
	noteUnreached  = regexp.MustCompile(`^operations: escalation policy (\S+) step (\d+) reached nobody on duty; paged the site's fallback receivers: (.*)$`)
	notePolicyGone = regexp.MustCompile(`^escalation stopped: policy (\S+) no longer exists$`)
	noteAlsoFired  = regexp.MustCompile(`^(\w+) also fired \(same resident, one cause: not paged separately\)`)
)

// systemNote renders a system note of an alert's history in lang; a note
// of an unknown form is shown as recorded.
func systemNote(lang, detail string) string {
	if m := noteUnreached.FindStringSubmatch(detail); m != nil {
		step, _ := strconv.Atoi(m[2])
		return trf(lang, "history.note.unreached", "policy", m[1], "step", strconv.Itoa(step+1), "who", m[3])
	}
	if m := notePolicyGone.FindStringSubmatch(detail); m != nil {
		return trf(lang, "history.note.policy_gone", "policy", m[1])
	}
	if m := noteAlsoFired.FindStringSubmatch(detail); m != nil {
		return trf(lang, "history.note.also_fired", "type", trIn(lang, "type."+m[1]))
	}
	return detail
}

// escalationText is the escalation state in words.
func escalationText(lang string, st *alerting.EscalationState, loc *time.Location) string {
	if st == nil {
		return ""
	}
	if st.Due == nil {
		return trf(lang, "history.esc.done", "policy", st.Policy)
	}
	return trf(lang, "history.esc.next", "policy", st.Policy, "step", fmt.Sprint(st.NextStep+1), "at", st.Due.In(loc).Format(timeFormat))
}

// timelineFor reads alert id's timeline when the user sees it (else 404).
func (s *Server) timelineFor(c *fiber.Ctx) (alerting.Timeline, error) {
	h, err := s.history()
	if err != nil {
		return alerting.Timeline{}, err
	}
	id, err := parseID(c)
	if err != nil {
		return alerting.Timeline{}, err
	}
	t, err := h.Timeline(c.UserContext(), id)
	if err != nil {
		return alerting.Timeline{}, alertError(err)
	}
	if u, ok := userFrom(c); ok && !s.canSeeAlert(u, t.Alert) {
		return alerting.Timeline{}, fiber.NewError(fiber.StatusNotFound, fmt.Sprintf("alert %d: not found", id))
	}
	if !clientSees(c, t.Alert.Site) {
		return alerting.Timeline{}, fiber.NewError(fiber.StatusNotFound, fmt.Sprintf("alert %d: not found", id))
	}
	return t, nil
}

// timelinePage is GET /alerts/:id; an :id that is not a number is left to
// the routes registered after it.
func (s *Server) timelinePage(c *fiber.Ctx) error {
	if !numericID(c) {
		return c.Next()
	}
	return s.renderTimeline(c, "", "")
}

// renderTimeline renders the timeline page, with a refused comment's
// draft and reason when given.
func (s *Server) renderTimeline(c *fiber.Ctx, draft, reason string) error {
	t, err := s.timelineFor(c)
	if err != nil {
		return err
	}
	d, err := s.directory(c.UserContext())
	if err != nil {
		return err
	}
	lang := langOf(c)
	loc := d.loc(t.Alert.Site)
	sess, _ := c.Locals("session").(session)
	m := timelineModel{Row: d.historyRow(lang, t.Alert), Items: timelineItems(lang, t, loc), Escalation: escalationText(lang, t.Escalation, loc),
		CSRF: sess.csrf, Draft: draft, Error: reason, MaxComment: alerting.MaxCommentLen, Back: "/alerts/history"}
	s.audit(c, AuditViewAlerts, fmt.Sprintf("alert:%d", t.Alert.ID), "")
	title := trf(lang, "history.tl.title", "id", fmt.Sprint(t.Alert.ID))
	return s.renderPage(c, "alert_timeline", title, m)
}

// scopeAlertComment guards the comment routes: the alert must exist and
// be visible to the user or API client (else 404); a stored comment is
// written to the audit log.
func (s *Server) scopeAlertComment(c *fiber.Ctx) error {
	id, err := parseID(c)
	if err != nil {
		return err
	}
	a, err := s.deps.Alerts.Get(c.UserContext(), id)
	if err != nil {
		return alertError(err)
	}
	if u, ok := userFrom(c); ok && (!slices.Contains(staffRoles, u.Role) || !s.canSeeAlert(u, a)) {
		return fiber.NewError(fiber.StatusNotFound, fmt.Sprintf("alert %d: not found", id))
	}
	if !clientSees(c, a.Site) {
		return fiber.NewError(fiber.StatusNotFound, fmt.Sprintf("alert %d: not found", id))
	}
	err = c.Next()
	if err == nil && c.Response().StatusCode() < 400 {
		s.audit(c, AuditComment, fmt.Sprintf("alert:%d", id), "type:"+a.Type)
	}
	return err
}

// commentReason is why a comment was refused, in lang.
func commentReason(lang string, err error) string {
	var ce *alerting.CommentError
	if !errors.As(err, &ce) {
		return ""
	}
	switch ce.Reason {
	case alerting.CommentEmpty:
		return trIn(lang, "history.err.comment_empty")
	case alerting.CommentTooLong:
		return trf(lang, "history.err.comment_long", "n", fmt.Sprint(ce.Len), "max", fmt.Sprint(alerting.MaxCommentLen))
	case alerting.CommentControl:
		return trf(lang, "history.err.comment_control", "char", fmt.Sprintf("%U", ce.Rune))
	}
	return trIn(lang, "history.err.comment_utf8")
}

// formComment is POST /alerts/:id/comments (field "text"): the comment is
// stored with the user's name and the page shows it; a refused comment
// re-renders the page (400) with the reason and the text kept.
func (s *Server) formComment(c *fiber.Ctx) error {
	h, err := s.history()
	if err != nil {
		return err
	}
	id, err := parseID(c)
	if err != nil {
		return err
	}
	text := c.FormValue("text")
	sess, _ := c.Locals("session").(session)
	cm, err := h.AddComment(c.UserContext(), id, sess.actor, channelDashboard, text)
	if reason := commentReason(langOf(c), err); reason != "" {
		c.Status(fiber.StatusBadRequest)
		draft := text
		if len([]rune(draft)) > 4*alerting.MaxCommentLen {
			draft = string([]rune(draft)[:4*alerting.MaxCommentLen])
		}
		return s.renderTimeline(c, draft, reason)
	}
	if err != nil {
		return alertError(err)
	}
	return c.Redirect(fmt.Sprintf("/alerts/%d#comment-%d", id, cm.ID), fiber.StatusSeeOther)
}

// commentBody is the body of POST /api/v1/alerts/:id/comments.
type commentBody struct {
	Text  string `json:"text"`
	Actor string `json:"actor"`
}

// apiComment is POST /api/v1/alerts/:id/comments with
// {"text": "...", "actor": "<staff user name>"} (actor optional, checked
// as for acknowledge): 201 with the stored comment; 400 with the reason
// for a refused text or an unknown field.
func (s *Server) apiComment(c *fiber.Ctx) error {
	h, err := s.history()
	if err != nil {
		return err
	}
	id, err := parseID(c)
	if err != nil {
		return err
	}
	var body commentBody
	if err := decodeBody(c, &body, `{"text": comment, "actor": staff user name}`); err != nil {
		return err
	}
	actor, err := s.apiActor(c, body.Actor, id)
	if err != nil {
		return err
	}
	cm, err := h.AddComment(c.UserContext(), id, actor, apiChannel(c), body.Text)
	if errors.Is(err, alerting.ErrInvalidComment) {
		return fiber.NewError(fiber.StatusBadRequest, commentReason(LangEN, err))
	}
	if err != nil {
		return alertError(err)
	}
	return c.Status(fiber.StatusCreated).JSON(cm)
}

// apiAlertDetail is the body of GET /api/v1/alerts/:id: the alert
// (alerting.Alert's members, with its repeat count), its history, comments,
// notifications with each receiver's delivery (addresses left out) and
// escalation state (null when no policy covers it).
type apiAlertDetail struct {
	alerting.Alert
	History       []alerting.HistoryEntry       `json:"history"`
	Comments      []alerting.Comment            `json:"comments"`
	Notifications []alerting.NotificationRecord `json:"notifications"`
	Escalation    *alerting.EscalationState     `json:"escalation"`
}

// apiAlertTimeline is GET /api/v1/alerts/:id (the alert and its
// timeline); without Deps.History, the alert alone (apiGetAlert).
func (s *Server) apiAlertTimeline(c *fiber.Ctx) error {
	if !numericID(c) {
		return c.Next() // apiGetAlert: 400
	}
	if s.deps.History == nil {
		return s.apiGetAlert(c)
	}
	s.audit(c, AuditViewAlerts, "alert:"+c.Params("id"), "")
	t, err := s.timelineFor(c)
	if err != nil {
		return err
	}
	for i := range t.Notifications {
		for j := range t.Notifications[i].Deliveries {
			t.Notifications[i].Deliveries[j].Address = ""
		}
		if e := t.Notifications[i].Escalation; e != nil {
			for k := range e.Recipients {
				r := e.Recipients[k]
				e.Recipients[k] = alerting.Contact{ID: r.ID, Name: r.Name, Role: r.Role}
			}
		}
	}
	return c.JSON(apiAlertDetail{Alert: t.Alert, History: t.History, Comments: t.Comments,
		Notifications: t.Notifications, Escalation: t.Escalation})
}
