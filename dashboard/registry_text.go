package dashboard

import (
	"regexp"
	"strings"
)

// The registry's validation messages are English (the YAML import and
// the API give them as they are). registryText says the common ones in
// the page's language, so a Chinese onboarding page does not answer in
// English; a message it does not know is shown as written.

// registryPattern is one known registry message: re matches it whole and
// key is its catalogue text, given re's named groups as arguments.
type registryPattern struct {
	re  *regexp.Regexp
	key string
}

var registryPatterns = []registryPattern{
	{regexp.MustCompile(`^required(?: \(.*\))?$`), "reg.required"},
	{regexp.MustCompile(`^blank$`), "reg.blank"},
	{regexp.MustCompile(`^longer than (?P<n>\d+) characters$`), "reg.too_long"},
	{regexp.MustCompile(`^contains a control character$`), "reg.control"},
	{regexp.MustCompile(`^contains an invisible direction or line control \((?P<c>U\+[0-9A-F]+)\)$`), "reg.invisible"},
	{regexp.MustCompile(`^invalid id "(?P<id>.*)": no spaces, control characters, '/', '\+' or '#'$`), "reg.bad_id"},
	{regexp.MustCompile(`^unknown site "(?P<id>.*)"$`), "reg.unknown_site"},
	{regexp.MustCompile(`^unknown bed "(?P<id>.*)"$`), "reg.unknown_bed"},
	{regexp.MustCompile(`^unknown room "(?P<id>.*)"$`), "reg.unknown_room"},
	{regexp.MustCompile(`^unknown device "(?P<id>.*)"$`), "reg.unknown_device"},
	{regexp.MustCompile(`^unknown resident "(?P<id>.*)"$`), "reg.unknown_resident"},
	{regexp.MustCompile(`^unknown IANA zone "(?P<id>.*)"$`), "reg.unknown_zone"},
	{regexp.MustCompile(`^unknown bed type "(?P<id>.*)" \(want one of .*\)$`), "reg.unknown_bed_type"},
	{regexp.MustCompile(`^(?:bed|gateway) "(?P<id>.*)" is on site "(?P<a>.*)", not "(?P<b>.*)"$`), "reg.other_site"},
	{regexp.MustCompile(`^device "(?P<id>.*)" is registered already$`), "reg.registered"},
	{regexp.MustCompile(`^device "(?P<id>.*)" is bound to resident "(?P<resident>.*)" of site "(?P<site>.*)"$`), "onb.err.bound_elsewhere"},
	{regexp.MustCompile(`^(?P<v>\S+) is outside \[-90, 90\] degrees$`), "reg.lat"},
	{regexp.MustCompile(`^(?P<v>\S+) is outside \[-180, 180\] degrees$`), "reg.lon"},
	{regexp.MustCompile(`^(?P<n>\d+) vertices; a polygon needs at least 3$`), "reg.polygon"},
	{regexp.MustCompile(`(?:^|: )(?P<kind>site|room|bed|resident|device|card) "?(?P<id>[^":]*)"? has (?P<n>\d+) (?P<what>rooms|beds|residents|devices): still in use$`), "reg.in_use"},
	{regexp.MustCompile(`(?:^|: )(?P<kind>site|room|bed|resident|device|card) "(?P<id>[^"]*)": not found$`), "reg.not_found"},
}

// registryText is msg, a registry validation message, in lang.
func registryText(lang, msg string) string {
	if lang == LangEN {
		return msg
	}
	for _, p := range registryPatterns {
		m := p.re.FindStringSubmatch(msg)
		if m == nil {
			continue
		}
		var args []string
		for i, name := range p.re.SubexpNames() {
			if name == "" {
				continue
			}
			v := m[i]
			switch name {
			case "kind":
				v = trIn(lang, "onb.rk."+v)
			case "what":
				v = trIn(lang, "reg.what."+strings.TrimSuffix(v, "s"))
			}
			args = append(args, name, v)
		}
		return trf(lang, p.key, args...)
	}
	return msg
}
