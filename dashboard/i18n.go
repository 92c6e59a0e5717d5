package dashboard

import (
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/nicksnyder/go-i18n/v2/i18n"
	"golang.org/x/text/language"

	"github.com/eldercare-iot/eldercare/alerting"
)

// Languages of the dashboard.
const (
	LangEN = "en"
	LangZH = "zh-CN"
)

// Langs lists the supported languages, the default first.
var Langs = []string{LangEN, LangZH}

// langCookie remembers a language chosen with ?lang= when the logged-in
// user has none (before accounts carry a language, and on the login page).
const langCookie = "eldercare_lang"

//go:embed locales/*.json
var localeFS embed.FS

// catalogue is the message bundle of go-i18n (CLDR plural rules from
// golang.org/x/text): every file of a language in locales/ — en.json and
// zh-CN.json, plus one pair per screen area (history.en.json,
// history.zh-CN.json, ...) — one message per stable key; a message with
// plural forms is an object with "one" and "other" (English) or "other"
// (Chinese). Message texts are Go templates ({{.n}}). A key may appear in
// one file of a language only. TestCatalogues checks both languages have
// the same keys.
var catalogue = sync.OnceValues(func() (*i18n.Bundle, error) {
	b := i18n.NewBundle(language.English)
	b.RegisterUnmarshalFunc("json", json.Unmarshal)
	for _, l := range Langs {
		files, err := catalogueFiles(l)
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			if _, err := b.LoadMessageFileFS(localeFS, f); err != nil {
				return nil, fmt.Errorf("i18n catalogue %s: %w", f, err)
			}
		}
	}
	return b, nil
})

// catalogueFiles lists the files of lang in locales/: lang.json and
// every area.lang.json, sorted.
func catalogueFiles(lang string) ([]string, error) {
	entries, err := localeFS.ReadDir("locales")
	if err != nil {
		return nil, err
	}
	var files []string
	for _, e := range entries {
		n := e.Name()
		if n == lang+".json" || strings.HasSuffix(n, "."+lang+".json") {
			files = append(files, "locales/"+n)
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("i18n catalogue %s: no file locales/%s.json", lang, lang)
	}
	sort.Strings(files)
	return files, nil
}

// localizers caches one localizer per language (English is the fallback).
var localizers = sync.OnceValue(func() map[string]*i18n.Localizer {
	b, err := catalogue()
	if err != nil {
		panic(err) // the catalogues are embedded: TestCatalogues catches this
	}
	m := map[string]*i18n.Localizer{}
	for _, l := range Langs {
		m[l] = i18n.NewLocalizer(b, l, LangEN)
	}
	return m
})

func localizer(lang string) *i18n.Localizer {
	if l, ok := localizers()[lang]; ok {
		return l
	}
	return localizers()[LangEN]
}

// catalogueKeys lists the message ids of lang's files; a key defined in
// two files of one language is an error.
// enKeys is catalogueKeys(LangEN), read once: the catalogues are embedded,
// and every page render asked for them (13-16 % of the dashboard tests'
// CPU went to parsing the same JSON). Callers must not modify the slice.
var enKeys = sync.OnceValues(func() ([]string, error) { return catalogueKeys(LangEN) })

func catalogueKeys(lang string) ([]string, error) {
	files, err := catalogueFiles(lang)
	if err != nil {
		return nil, err
	}
	seen := map[string]string{}
	var keys []string
	for _, f := range files {
		b, err := localeFS.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("catalogue %s: %w", f, err)
		}
		for k := range m {
			if prev, dup := seen[k]; dup {
				return nil, fmt.Errorf("catalogue key %q is in both %s and %s", k, prev, f)
			}
			seen[k] = f
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys, nil
}

// tr returns the English text of key, or the key itself when it has none.
func tr(key string) string { return trIn(LangEN, key) }

// trIn returns the text of key in lang, falling back to English and then
// to the key itself.
func trIn(lang, key string) string {
	return localize(lang, &i18n.LocalizeConfig{MessageID: key})
}

// trf is trIn with template data given as name, value pairs: the message
// "{{.n}} min" with trf(lang, key, "n", "5").
func trf(lang, key string, args ...string) string {
	data := make(map[string]any, len(args)/2)
	for i := 0; i+1 < len(args); i += 2 {
		data[args[i]] = args[i+1]
	}
	return localize(lang, &i18n.LocalizeConfig{MessageID: key, TemplateData: data})
}

// trn is the plural form of key for count n in lang (CLDR rules): the
// message {"one": "{{.Count}} minute", "other": "{{.Count}} minutes"}.
// args are further name, value pairs of template data.
func trn(lang, key string, n int, args ...string) string {
	data := map[string]any{"Count": n}
	for i := 0; i+1 < len(args); i += 2 {
		data[args[i]] = args[i+1]
	}
	return localize(lang, &i18n.LocalizeConfig{MessageID: key, PluralCount: n, TemplateData: data})
}

func localize(lang string, cfg *i18n.LocalizeConfig) string {
	s, err := localizer(lang).Localize(cfg)
	if err != nil && s == "" {
		return cfg.MessageID
	}
	return s
}

// validLang reports whether l is one of Langs.
func validLang(l string) bool { return l == LangEN || l == LangZH }

// langOf is the language of the request: c.Locals("lang") (set by the
// account middleware from the user's language), else ?lang= (remembered in
// a cookie), else that cookie, else the browser's Accept-Language (zh* =
// zh-CN), else English.
func langOf(c *fiber.Ctx) string {
	if l, ok := c.Locals("lang").(string); ok && validLang(l) {
		return l
	}
	if l := c.Query("lang"); validLang(l) {
		c.Cookie(&fiber.Cookie{Name: langCookie, Value: l, Path: "/", HTTPOnly: true, SameSite: fiber.CookieSameSiteLaxMode, MaxAge: 365 * 24 * 3600})
		return l
	}
	if l := c.Cookies(langCookie); validLang(l) {
		return l
	}
	for _, part := range strings.Split(c.Get(fiber.HeaderAcceptLanguage), ",") {
		tag := strings.ToLower(strings.TrimSpace(strings.SplitN(part, ";", 2)[0]))
		switch {
		case strings.HasPrefix(tag, "zh"):
			return LangZH
		case strings.HasPrefix(tag, "en"):
			return LangEN
		}
	}
	return LangEN
}

// langFuncs are the template functions bound to a language: t (text of a
// key), tt (text of prefix+key), tf (text with {name} placeholders), lang
// (the language tag) and i18n (the whole table, for the page script).
func langFuncs(lang string) template.FuncMap {
	return template.FuncMap{
		"t":    func(key string) string { return trIn(lang, key) },
		"tt":   func(prefix, key string) string { return trIn(lang, prefix+key) },
		"tf":   func(key string, args ...string) string { return trf(lang, key, args...) },
		"tn":   func(key string, n int, args ...string) string { return trn(lang, key, n, args...) },
		"lang": func() string { return lang },
		"i18n": func() map[string]string { return scriptTexts(lang) },
		// alarmSeverities are the severities a device may ring for
		// (web/src/alarm.js), most severe first.
		"alarmSeverities": func() []string { return []string{"critical", "high", "warning"} },
		// dur renders a duration pointer in words ("6 min", "6 分钟"), "–"
		// for nil.
		"dur": func(d *time.Duration) string {
			if d == nil {
				return "–"
			}
			return durText(lang, *d)
		},
		"place": func(kind, name string) string { return placeName(lang, kind, name) },
		// what says what happened in an alert, in words (alertWhat).
		"what": func(a alerting.Alert) string { return alertWhat(lang, a) },
		// chan names where a change came from or a notification went:
		// rule, dashboard, api, mqtt, a receiver's own name as configured.
		"chan": func(ch string) string {
			if s := trIn(lang, "channel."+ch); s != "channel."+ch {
				return s
			}
			return ch
		},
		"devname": func(kind, name, id string) string { return deviceName(lang, kind, name, id) },
		"otherLang": func() string {
			if lang == LangZH {
				return LangEN
			}
			return LangZH
		},
	}
}

// scriptPrefixes are the catalogue keys the page script (web/src) uses.
var scriptPrefixes = []string{"age.", "live.", "state.", "occ.", "type.", "vital.", "unit.", "alerts.", "chart.", "sev.", "js."}

// scriptTexts are the texts of the page script in lang, placeholders left
// as {n} for the script to fill.
func scriptTexts(lang string) map[string]string {
	keys, err := enKeys()
	if err != nil {
		return nil
	}
	out := map[string]string{}
	for _, k := range keys {
		for _, p := range scriptPrefixes {
			if strings.HasPrefix(k, p) {
				out[k] = trf(lang, k, "n", "{n}")
				break
			}
		}
	}
	return out
}

// durText renders d in words, rounded: "45 s", "6 min", "2 h 5 min",
// "3 days" (and their Chinese forms), with the catalogue's plural rules.
func durText(lang string, d time.Duration) string {
	if d < 0 {
		d = -d
	}
	switch {
	case d < time.Minute:
		return trn(lang, "dur.s", int(d.Round(time.Second)/time.Second))
	case d < time.Hour:
		return trn(lang, "dur.min", int(d.Round(time.Minute)/time.Minute))
	case d < 24*time.Hour:
		d = d.Round(time.Minute)
		h, m := int(d/time.Hour), int(d%time.Hour/time.Minute)
		if m == 0 {
			return trn(lang, "dur.h", h)
		}
		return trn(lang, "dur.h", h) + " " + trn(lang, "dur.min", m)
	}
	return trn(lang, "dur.day", int(d.Round(24*time.Hour)/(24*time.Hour)))
}

// agoText is "6 min ago" / "6 分钟前".
func agoText(lang string, d time.Duration) string {
	if d < 30*time.Second {
		return trIn(lang, "ago.now")
	}
	return trf(lang, "ago.text", "d", durText(lang, d))
}

// langTemplates are the page templates, parsed once per language with
// langFuncs bound.
var langTemplates struct {
	once sync.Once
	m    map[string]*template.Template
	err  error
}

// templatesIn returns the templates of lang (English for an unknown one).
func templatesIn(lang string) (*template.Template, error) {
	langTemplates.once.Do(func() {
		langTemplates.m = map[string]*template.Template{}
		for _, l := range Langs {
			t, err := parseTemplates()
			if err != nil {
				langTemplates.err = err
				return
			}
			langTemplates.m[l] = t.Funcs(langFuncs(l))
		}
	})
	if langTemplates.err != nil {
		return nil, fmt.Errorf("templates of %s: %w", lang, langTemplates.err)
	}
	if t, ok := langTemplates.m[lang]; ok {
		return t, nil
	}
	return langTemplates.m[LangEN], nil
}

// templatesFor returns the templates in the request's language.
func (s *Server) templatesFor(c *fiber.Ctx) *template.Template {
	t, err := templatesIn(langOf(c))
	if err != nil {
		s.log.Error("dashboard templates", "err", err)
		return s.tmpl
	}
	return t
}

// placePattern matches registry room and bed names written the English
// way ("Room 101", "Bed 1"): the registry has one name per room and bed,
// so the dashboard renders such names in the page's language.
var placePattern = regexp.MustCompile(`^(?i:room|bed) +(\S+)$`)

// placeName renders a room or bed name (kind "room" or "bed") in lang:
// "Room 101" is "101 房" in Chinese; other names are shown as registered.
func placeName(lang, kind, name string) string {
	if m := placePattern.FindStringSubmatch(name); m != nil {
		return trf(lang, "place."+kind, "n", m[1])
	}
	return name
}

// isASCII reports whether s is all ASCII: a device name with other letters
// ("床旁监护仪", a display name of [registry.Names]) is already written in a
// language and is shown as registered.
func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// deviceSuffix is the numbering at the end of a device name ("101-1").
var deviceSuffix = regexp.MustCompile(`(\d[\d-]*)$`)

// deviceName renders a device in lang: the registry's name in English; in
// other languages the kind's word with the name's numbering ("生命体征监测仪
// 101-1"), or with the device id when the name has none; a name that is
// not all ASCII (a display name in the page's language) as registered.
func deviceName(lang, kind, name, id string) string {
	if lang == LangEN || kind == "" || !isASCII(name) {
		if name == "" {
			return id
		}
		return name
	}
	word := trIn(lang, "kind."+kind)
	if m := deviceSuffix.FindStringSubmatch(name); m != nil {
		return word + " " + m[1]
	}
	return word + " " + id
}
