package device

import (
	"strings"
	"testing"
	"time"
)

func TestDecodeHeartbeat(t *testing.T) {
	ok := `{"v":1,"device":"gw-7","ts":1764400000000,"state":"online","reason":"heartbeat","kind":"gateway",
	 "devices":["env-7","fr-7"],"heartbeat_ms":30000,
	 "report":[{"device":"env-7","state":"online","last_seen":1764399990000,"via":"readings"},
	           {"device":"fr-7","state":"offline","via":"availability"}]}`
	st, err := DecodeStatus([]byte(ok), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if st.HeartbeatMS != 30000 || len(st.Report) != 2 || st.Report[0].LastSeen != 1764399990000 || st.Report[1].Via != ViaAvailability {
		t.Errorf("decoded %+v", st)
	}
	for _, c := range []struct{ payload, want string }{
		{`{"v":1,"device":"gw-7","ts":1,"state":"online","heartbeat_ms":-1}`, "heartbeat_ms: range"},
		{`{"v":1,"device":"gw-7","ts":1,"state":"online","report":[{"device":"a b","state":"online"}]}`, "report[0].device: charset"},
		{`{"v":1,"device":"gw-7","ts":1,"state":"online","report":[{"device":"a","state":"unknown"}]}`, "report[0].state: one_of"},
		{`{"v":1,"device":"gw-7","ts":1,"state":"online","report":[{"device":"a","state":"online","via":"magic"}]}`, "report[0].via: one_of"},
		{`{"v":1,"device":"gw-7","ts":1,"state":"online","report":[{"device":"a","state":"online","last_seen":-5}]}`, "report[0].last_seen: range"},
	} {
		if _, err := DecodeStatus([]byte(c.payload), Limits{}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.payload, err, c.want)
		}
	}
}

func TestDefaultInterval(t *testing.T) {
	for _, c := range []struct {
		k    Kind
		p    Power
		want time.Duration
	}{
		{VitalsMonitor, "", 10 * time.Second},
		{Gateway, "", 90 * time.Second},
		{SOSButton, "", 25 * time.Hour},
		{SOSButton, PowerMains, 10 * time.Minute},
		{FallDetector, PowerBattery, 25 * time.Hour},
		{EnvSensor, "", 10 * time.Minute},
		{EnvSensor, PowerBattery, 25 * time.Hour},
		{Other, "", 25 * time.Hour},
	} {
		if got := DefaultInterval(c.k, c.p); got != c.want {
			t.Errorf("DefaultInterval(%s, %q) = %s, want %s", c.k, c.p, got, c.want)
		}
	}
}
