package secret

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestNeverPrints(t *testing.T) {
	s := String("hunter2-token")
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("x", "secret", s)
	j, _ := json.Marshal(struct{ S String }{s})
	outs := []string{fmt.Sprint(s), fmt.Sprintf("%v %s %q %x %#v %+v", s, s, s, s, s, struct{ S String }{s}), string(j), logged.String()}
	for _, o := range outs {
		if strings.Contains(o, "hunter2") {
			t.Errorf("secret printed: %s", o)
		}
		if !strings.Contains(o, "[redacted]") {
			t.Errorf("no redaction mark in %s", o)
		}
	}
	if String("").String() != "" {
		t.Error("an empty secret prints as redacted")
	}
}
