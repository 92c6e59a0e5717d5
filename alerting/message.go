// Stage 4, notify: notification texts for people, rendered in the recipient's language (zh-CN, en) from
// the catalogues in locales/ (go-i18n), naming the resident, room and bed, with the time in the site's
// zone and a one-tap acknowledge link per person.

package alerting

import (
	"context"
	"embed"
	"fmt"
	"html"
	"strings"
	"sync"
	"time"

	"github.com/nicksnyder/go-i18n/v2/i18n"
	"golang.org/x/text/language"

	"github.com/eldercare-iot/eldercare/device/registry"
)

//go:embed locales/*.json
var localeFS embed.FS

// Languages of notification texts; "" and anything else read as "en".
var Languages = []string{"en", "zh-CN"}

var localizers = sync.OnceValue(func() map[string]*i18n.Localizer {
	b := i18n.NewBundle(language.English)
	for _, l := range Languages {
		if _, err := b.LoadMessageFileFS(localeFS, "locales/"+l+".json"); err != nil {
			panic(err) // embedded; TestMessageCatalogues catches a bad file
		}
	}
	m := map[string]*i18n.Localizer{}
	for _, l := range Languages {
		m[l] = i18n.NewLocalizer(b, l, "en")
	}
	return m
})

// tr returns the catalogue text key in lang with data; fallback when the
// key is missing.
func tr(lang, key string, data map[string]any, fallback string) string {
	loc, ok := localizers()[lang]
	if !ok {
		loc = localizers()["en"]
	}
	s, err := loc.Localize(&i18n.LocalizeConfig{MessageID: key, TemplateData: data})
	if err != nil || s == "" {
		return fallback
	}
	return s
}

// Place is where an alert happened, for people in one language: the
// resident's display name in that language, room and bed, the site's name
// and IANA time zone.
type Place struct {
	Resident, Room, Bed, Site string
	Zone                      *time.Location
	// RoomNamed: Room is the room's display name ("Room 101", "101 房"),
	// not its id, and is written without the word "room".
	RoomNamed bool
}

// Places finds the place of an alert. Declared here, where notifications
// are rendered; [RegistryPlaces] implements it.
type Places interface {
	// PlaceOf returns the place of a for a reader in lang (BCP 47, e.g.
	// "zh-CN"; "" = the plain names).
	PlaceOf(a Alert, lang string) Place
}

// RegistryPlaces reads places from the current registry snapshot (nil
// snapshot: ids only, UTC).
type RegistryPlaces func() *registry.Snapshot

// PlaceOf implements Places: the resident is named by
// [registry.DisplayName] in lang, else by the plain name, else by id.
func (f RegistryPlaces) PlaceOf(a Alert, lang string) Place {
	p := Place{Site: a.Site, Zone: time.UTC}
	if a.Resident != nil {
		p.Resident = *a.Resident
	}
	sn := f()
	if sn == nil {
		return p
	}
	if s, ok := sn.Site(a.Site); ok && s.Name != "" {
		p.Site = s.Name
	}
	p.Zone = sn.Location(a.Site)
	if a.Resident == nil {
		return p
	}
	if r, ok := sn.Resident(*a.Resident); ok {
		if n := registry.DisplayName(r.Names, lang, r.Name); n != "" {
			p.Resident = n
		}
	}
	if b, ok := sn.BedOf(*a.Resident); ok {
		p.Room, p.Bed = b.RoomID, b.Name
		if rm, ok := sn.Room(b.RoomID); ok {
			if n := registry.DisplayName(rm.Names, lang, rm.Name); n != "" {
				p.Room, p.RoomNamed = n, true
			}
		}
		if p.Bed == "" {
			p.Bed = b.ID
		}
	}
	return p
}

// AckLinker makes the acknowledge link of alert for recipient through
// channel; [Manager.AckLinks] returns one.
type AckLinker func(ctx context.Context, alert int64, recipient, channel string) (string, error)

// AckLinks returns the linker of acknowledge links under the dashboard's
// public base URL, e.g. https://care.example.org ("" = no links).
func (m *Manager) AckLinks(base string) AckLinker {
	if base == "" {
		return nil
	}
	base = strings.TrimRight(base, "/")
	return func(ctx context.Context, alert int64, recipient, channel string) (string, error) {
		tok, err := m.AckToken(ctx, alert, recipient, channel)
		if err != nil {
			return "", err
		}
		return base + AckPath + tok, nil
	}
}

// Renderer renders notifications for people. Its zero value renders ids,
// UTC, no links, in English.
type Renderer struct {
	Places Places    // nil: ids and UTC
	Links  AckLinker // nil: no acknowledge links
	// Lang is the language of group messages (chat robots); "" = the first
	// paged person's language, else en.
	Lang string
}

// Message is one notification text for one reader.
type Message struct {
	Subject string
	// Lines are the facts, one a line, without markup.
	Lines []string
	// Links are the acknowledge links: label and URL.
	Links [][2]string
	// Footer names the notification id.
	Footer string
}

func (r *Renderer) place(a Alert, lang string) Place {
	if r != nil && r.Places != nil {
		p := r.Places.PlaceOf(a, lang)
		if p.Zone == nil {
			p.Zone = time.UTC
		}
		return p
	}
	p := Place{Site: a.Site, Zone: time.UTC}
	if a.Resident != nil {
		p.Resident = *a.Resident
	}
	return p
}

// who names the resident with room and bed, or the unassigned device.
func who(lang string, a Alert, p Place) string {
	switch {
	case a.Type == TypeEscalationUnrouted:
		return tr(lang, "who.unrouted", map[string]any{"Step": a.Device}, a.Device)
	case a.Resident == nil:
		return tr(lang, "who.unassigned", map[string]any{"Device": a.Device}, "unassigned device "+a.Device)
	case p.Bed == "":
		return tr(lang, "who.home", map[string]any{"Name": p.Resident}, p.Resident)
	}
	key := "who.bed"
	if p.RoomNamed {
		key = "who.bed_in_named_room"
	}
	return tr(lang, key, map[string]any{"Name": p.Resident, "Room": p.Room, "Bed": p.Bed}, p.Resident)
}

// message builds the text of n for a reader in lang; links are added by
// the caller.
func (r *Renderer) message(n Notice, lang string) Message {
	a := n.Alert
	p := r.place(a, lang)
	ev := n.Event
	if n.Escalation != nil && n.Escalation.Reminder {
		ev = EventReminder
	}
	local := func(t time.Time) string { return t.In(p.Zone).Format("2006-01-02 15:04") }
	var m Message
	m.Subject = tr(lang, "subject", map[string]any{
		"Severity": tr(lang, "sev."+a.Severity, nil, strings.ToUpper(a.Severity)),
		"Type":     tr(lang, "type."+a.Type, nil, a.Type),
		"Event":    tr(lang, "ev."+ev, nil, ev),
		"Who":      who(lang, a, p),
	}, a.Type)
	if a.Detail != "" {
		m.Lines = append(m.Lines, a.Detail)
	}
	m.Lines = append(m.Lines,
		tr(lang, "line.time", map[string]any{"Time": local(a.OpenedAt), "Zone": p.Zone.String()}, local(a.OpenedAt)),
		tr(lang, "line.site", map[string]any{"Site": p.Site}, p.Site))
	if a.AcknowledgedAt != nil {
		m.Lines = append(m.Lines, tr(lang, "line.acked", map[string]any{"Who": a.AcknowledgedBy, "Time": local(*a.AcknowledgedAt)}, a.AcknowledgedBy))
	}
	if a.ResolvedAt != nil {
		out := tr(lang, "outcome."+a.Outcome, nil, a.Outcome)
		if a.Note != "" {
			out += " · " + a.Note
		}
		m.Lines = append(m.Lines, tr(lang, "line.resolved", map[string]any{"Who": a.ResolvedBy, "Outcome": out}, a.ResolvedBy))
	}
	if e := n.Escalation; e != nil && len(e.Recipients) > 0 {
		var names []string
		for _, c := range e.Recipients {
			names = append(names, c.Name)
		}
		m.Lines = append(m.Lines, tr(lang, "line.paged", map[string]any{"Names": strings.Join(names, ", ")}, ""))
		if e.Fallback {
			m.Lines = append(m.Lines, tr(lang, "line.fallback", nil, ""))
		}
	}
	m.Footer = tr(lang, "footer", map[string]any{"ID": n.ID}, n.ID)
	return m
}

// acknowledgeable reports whether n asks someone to act (the alert is
// open and this is not the acknowledged/resolved notice).
func acknowledgeable(n Notice) bool {
	return n.Alert.Status == StatusOpen && n.Event != EventAcknowledged && n.Event != EventResolved
}

// ForContact renders n for one person: in c's language, with c's own
// acknowledge link through channel when the alert is open.
func (r *Renderer) ForContact(ctx context.Context, n Notice, c Contact, channel string) (Message, error) {
	m := r.message(n, c.Lang)
	if r != nil && r.Links != nil && acknowledgeable(n) {
		u, err := r.Links(ctx, n.Alert.ID, c.ID, channel)
		if err != nil {
			return m, fmt.Errorf("acknowledge link for %s: %w", c.ID, err)
		}
		m.Links = append(m.Links, [2]string{tr(c.Lang, "ack.link", nil, "Acknowledge"), u})
	}
	return m, nil
}

// Text is the plain-text body of m.
func (m Message) Text() string {
	var b strings.Builder
	for _, l := range m.Lines {
		b.WriteString(l + "\n")
	}
	for _, l := range m.Links {
		b.WriteString("\n" + l[0] + ":\n" + l[1] + "\n")
	}
	b.WriteString("\n" + m.Footer + "\n")
	return b.String()
}

// HTML is the HTML body of m (every value escaped).
func (m Message) HTML(lang string) string {
	var b strings.Builder
	if lang == "" {
		lang = "en"
	}
	b.WriteString(`<!doctype html><html lang="` + html.EscapeString(lang) + `"><body>` + "\n")
	b.WriteString("<h1>" + html.EscapeString(m.Subject) + "</h1>\n<ul>\n")
	for _, l := range m.Lines {
		b.WriteString("<li>" + html.EscapeString(l) + "</li>\n")
	}
	b.WriteString("</ul>\n")
	for _, l := range m.Links {
		b.WriteString(`<p><a href="` + html.EscapeString(l[1]) + `" style="display:inline-block;padding:12px 20px;background:#b00020;color:#fff;text-decoration:none;font-size:18px">` +
			html.EscapeString(l[0]) + "</a></p>\n")
	}
	b.WriteString("<p><small>" + html.EscapeString(m.Footer) + "</small></p>\n</body></html>\n")
	return b.String()
}

// groupMessage renders n for a chat group: in r.Lang (else the first paged
// person's language), with one acknowledge link per paged person, each
// labelled with the person's name in their own language.
func (r *Renderer) groupMessage(ctx context.Context, n Notice, channel string) (Message, error) {
	lang := ""
	if r != nil {
		lang = r.Lang
	}
	if lang == "" && n.Escalation != nil && len(n.Escalation.Recipients) > 0 {
		lang = n.Escalation.Recipients[0].Lang
	}
	m := r.message(n, lang)
	if r == nil || r.Links == nil || !acknowledgeable(n) || n.Escalation == nil {
		return m, nil
	}
	for _, c := range n.Escalation.Recipients {
		u, err := r.Links(ctx, n.Alert.ID, c.ID, channel)
		if err != nil {
			return m, fmt.Errorf("acknowledge link for %s: %w", c.ID, err)
		}
		m.Links = append(m.Links, [2]string{tr(c.Lang, "ack.for", map[string]any{"Name": c.Name}, c.Name), u})
	}
	return m, nil
}
