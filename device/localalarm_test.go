package device

import (
	"strings"
	"testing"
)

// A gateway status whose report names a local alarm that is not a fall or
// SOS, or a negative since, is refused naming the field; a valid one
// decodes with both.
func TestStatusReportLocalAlarm(t *testing.T) {
	base := `{"v":1,"device":"gw-1","ts":1764400000000,"state":"online","reason":"heartbeat","devices":["sos-1"],"report":[{"device":"sos-1","state":"online",%s}]}`
	for _, c := range []struct{ report, err string }{
		{`"local_alarm":"burglar"`, "report[0].local_alarm"},
		{`"local_alarm":"sos","local_alarm_since":-5`, "report[0].local_alarm_since"},
	} {
		_, err := DecodeStatus([]byte(strings.Replace(base, "%s", c.report, 1)), Limits{})
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%s: %v, want an error naming %s", c.report, err, c.err)
		}
	}
	st, err := DecodeStatus([]byte(strings.Replace(base, "%s", `"local_alarm":"fall","local_alarm_since":1764399990000`, 1)), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if r := st.Report[0]; r.LocalAlarm != EventFall || r.LocalAlarmSince != 1764399990000 {
		t.Fatalf("report %+v", r)
	}
}
