package alerting

import (
	"context"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func init() {
	// -update rewrites golden files (shared with any other test file of the
	// package that defines it first).
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite golden files in testdata/")
	}
}

func updateGolden() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

func sampleNotice() Notice {
	opened := time.Date(2026, 1, 15, 2, 0, 0, 0, time.UTC)
	return Notice{
		Change: Change{ID: "alert-7-2", Event: EventEscalated, At: opened.Add(3 * time.Minute),
			Alert: Alert{ID: 7, Site: "demo", Resident: strp("res-001"), Device: "fd-101", Type: TypeFall, Severity: SeverityCritical,
				Status: StatusOpen, OpenedAt: opened, Detail: "fall detected, peak 31.2 m/s^2"}},
		Escalation: &Escalation{Policy: "default", Step: 1, Shift: "night",
			Recipients: []Contact{{ID: "lead", Name: "Lea Nurse", Role: "nurse_lead", Email: "lead@example.org", ChatID: "13800000003"}}},
	}
}

// TestTemplatesGolden renders every chat template of a sample notification
// and compares it with testdata/templates/<name>.json (-update rewrites).
func TestTemplatesGolden(t *testing.T) {
	t.Parallel()
	body, err := json.Marshal(sampleNotice())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range Templates {
		t.Run(name, func(t *testing.T) {
			got, err := RenderTemplate(name, body)
			if err != nil {
				t.Fatal(err)
			}
			if !json.Valid(got) {
				t.Fatalf("not JSON: %s", got)
			}
			path := filepath.Join("testdata", "templates", name+".json")
			if updateGolden() {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if string(got) != string(want) {
				t.Errorf("render %s:\n got %s\nwant %s", name, got, want)
			}
		})
	}
	// Format-specific fields the robots require.
	checks := map[string][]string{
		TemplateSlack:        {`"text":"*[CRITICAL] Fall (escalated, not acknowledged)`},
		TemplateDingTalk:     {`"msgtype":"markdown"`, `"atMobiles":["13800000003"]`, `@13800000003`},
		TemplateDingTalkText: {`"msgtype":"text"`, `"content":"[CRITICAL]`},
		TemplateWeCom:        {`"msgtype":"markdown"`, `<@13800000003>`},
		TemplateWeComText:    {`"mentioned_list":["13800000003"]`},
	}
	for name, subs := range checks {
		got, _ := RenderTemplate(name, body)
		for _, s := range subs {
			if !strings.Contains(string(got), s) {
				t.Errorf("%s: %s lacks %s", name, got, s)
			}
		}
	}
	if _, err := RenderTemplate("teams", body); err == nil {
		t.Error("unknown template: no error")
	}
	if _, err := RenderTemplate(TemplateSlack, []byte("{")); err == nil {
		t.Error("bad body: no error")
	}
	if got, _ := RenderTemplate("", body); string(got) != string(body) {
		t.Error("default template changed the body")
	}
}

func FuzzRenderTemplate(f *testing.F) {
	body, _ := json.Marshal(sampleNotice())
	f.Add(string(body))
	f.Add(`{"id":"x","alert":{"resident":null}}`)
	f.Fuzz(func(t *testing.T, b string) {
		for _, name := range Templates {
			out, err := RenderTemplate(name, []byte(b))
			if err == nil && !json.Valid(out) && name != TemplateJSON {
				t.Fatalf("%s rendered invalid JSON %q", name, out)
			}
		}
	})
}

// TestChatWebhookSend: a chat-robot webhook posts the rendered body and
// signs exactly those bytes.
func TestChatWebhookSend(t *testing.T) {
	t.Parallel()
	body, _ := json.Marshal(sampleNotice())
	want, _ := RenderTemplate(TemplateWeCom, body)
	var got []byte
	var sig string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ = io.ReadAll(r.Body)
		sig = r.Header.Get(HeaderSignature)
	}))
	defer srv.Close()
	w := &Webhook{URL: srv.URL, Secret: "k", Template: TemplateWeCom, ReceiverName: "chat"}
	if w.Name() != "chat" {
		t.Errorf("name %q", w.Name())
	}
	if err := w.Send(context.Background(), Notification{ID: "alert-7-2", Body: body}); err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) || !VerifySignature([]byte("k"), got, sig) {
		t.Errorf("posted %s (signature %s), want %s signed", got, sig, want)
	}
	bad := &Webhook{URL: srv.URL, Template: "teams"}
	if err := bad.Send(context.Background(), Notification{ID: "x", Body: body}); !IsPermanent(err) {
		t.Errorf("unknown template: %v, want a permanent error", err)
	}
}
