package dashboard

import (
	"strings"
	"testing"

	"github.com/eldercare-iot/eldercare/alerting"
)

// The escalation_unrouted operations alert has words in both languages on
// the board and the manager's views, naming the step.
func TestUnroutedAlertWords(t *testing.T) {
	t.Parallel()
	a := alerting.Alert{Type: alerting.TypeEscalationUnrouted, Device: "escalation:sos:0"}
	for lang, want := range map[string][]string{
		"en":    {"reached nobody", "escalation:sos:0"},
		"zh-CN": {"无人可呼叫", "escalation:sos:0"},
	} {
		got := alertWhat(lang, a)
		for _, w := range want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: %q lacks %q", lang, got, w)
			}
		}
		if typ := trIn(lang, "type."+alerting.TypeEscalationUnrouted); typ == "" || strings.HasPrefix(typ, "type.") {
			t.Errorf("%s: no word for the type: %q", lang, typ)
		}
	}
}
