// Stage 4, notify: chat robot bodies (Slack, DingTalk, WeCom) rendered from a notification.

package alerting

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Webhook templates (Webhook.Template).
const (
	// TemplateJSON is the notification JSON verbatim (see [Notice]).
	TemplateJSON = "eldercare"
	// TemplateSlack is a Slack-compatible incoming-webhook message
	// {"text": "<mrkdwn>"} (also accepted by Mattermost and Rocket.Chat):
	// https://api.slack.com/messaging/webhooks
	TemplateSlack = "slack"
	// TemplateDingTalk is a DingTalk custom robot markdown message
	// {"msgtype":"markdown","markdown":{"title","text"},"at":{"atMobiles":[...]}}:
	// https://open.dingtalk.com/document/robots/custom-robot-access
	// Recipients' chat ids are taken as the mobile numbers to @mention.
	TemplateDingTalk = "dingtalk"
	// TemplateDingTalkText is the DingTalk text message
	// {"msgtype":"text","text":{"content"},"at":{"atMobiles":[...]}}.
	TemplateDingTalkText = "dingtalk-text"
	// TemplateWeCom is a WeCom (企业微信) group robot markdown message
	// {"msgtype":"markdown","markdown":{"content"}}, mentioning recipients'
	// chat ids (WeCom user ids) as <@userid>:
	// https://developer.work.weixin.qq.com/document/path/91770
	TemplateWeCom = "wecom"
	// TemplateWeComText is the WeCom text message
	// {"msgtype":"text","text":{"content","mentioned_list":[...]}}.
	TemplateWeComText = "wecom-text"
)

// Templates lists the valid Webhook.Template values ("" = TemplateJSON).
var Templates = []string{TemplateJSON, TemplateSlack, TemplateDingTalk, TemplateDingTalkText, TemplateWeCom, TemplateWeComText}

// RenderTemplate formats a notification body (the JSON of a [Notice]) for
// a webhook template. "" and "eldercare" return body unchanged. It returns
// an error for an unknown template or a body that is not a notice.
func RenderTemplate(template string, body []byte) ([]byte, error) {
	if template == "" || template == TemplateJSON {
		return body, nil
	}
	var n Notice
	if err := json.Unmarshal(body, &n); err != nil {
		return nil, fmt.Errorf("decode notification: %w", err)
	}
	title := Subject(n)
	var chatIDs []string
	if n.Escalation != nil {
		for _, c := range n.Escalation.Recipients {
			id := c.wecomID()
			if strings.HasPrefix(template, "dingtalk") {
				id = c.dingTalkID()
			}
			if id != "" {
				chatIDs = append(chatIDs, id)
			}
		}
	}
	var v any
	switch template {
	case TemplateSlack:
		v = map[string]any{"text": "*" + title + "*\n" + textLines(n, "• ")}
	case TemplateDingTalk:
		text := "### " + title + "\n\n" + textLines(n, "- ")
		for _, id := range chatIDs {
			text += " @" + id
		}
		v = map[string]any{"msgtype": "markdown", "markdown": map[string]any{"title": title, "text": text},
			"at": map[string]any{"atMobiles": nonNil(chatIDs), "isAtAll": false}}
	case TemplateDingTalkText:
		v = map[string]any{"msgtype": "text", "text": map[string]any{"content": title + "\n" + textLines(n, "")},
			"at": map[string]any{"atMobiles": nonNil(chatIDs), "isAtAll": false}}
	case TemplateWeCom:
		text := "### " + title + "\n" + textLines(n, "> ")
		for _, id := range chatIDs {
			text += "<@" + id + ">"
		}
		v = map[string]any{"msgtype": "markdown", "markdown": map[string]any{"content": text}}
	case TemplateWeComText:
		v = map[string]any{"msgtype": "text", "text": map[string]any{"content": title + "\n" + textLines(n, ""),
			"mentioned_list": nonNil(chatIDs)}}
	default:
		return nil, fmt.Errorf("unknown template %q (want one of %s)", template, strings.Join(Templates, ", "))
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // keep <@userid> and > readable
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// Subject is the one-line summary of a notification used as e-mail subject
// and chat title, e.g.
// "[CRITICAL] fall opened: resident res-001 at demo (alert 7)".
func Subject(n Notice) string {
	a := n.Alert
	who := "unassigned device " + a.Device
	if a.Resident != nil {
		who = "resident " + *a.Resident
	}
	ev := n.Event
	if n.Escalation != nil && n.Escalation.Reminder {
		ev = "reminder, not acknowledged"
	}
	return fmt.Sprintf("[%s] %s %s: %s at %s (alert %d)", strings.ToUpper(a.Severity), a.Type, ev, who, a.Site, a.ID)
}

// textLines is the message body, one fact a line, each line prefixed.
func textLines(n Notice, prefix string) string {
	a := n.Alert
	var b strings.Builder
	line := func(format string, args ...any) { b.WriteString(prefix + fmt.Sprintf(format, args...) + "\n") }
	if a.Detail != "" {
		line("%s", a.Detail)
	}
	line("status: %s, device %s", a.Status, a.Device)
	line("opened: %s", a.OpenedAt.UTC().Format(time.RFC3339))
	if a.AcknowledgedAt != nil {
		line("acknowledged by %s at %s", a.AcknowledgedBy, a.AcknowledgedAt.UTC().Format(time.RFC3339))
	}
	if a.ResolvedAt != nil {
		line("resolved by %s: %s %s", a.ResolvedBy, a.Outcome, a.Note)
	}
	if e := n.Escalation; e != nil {
		var names []string
		for _, c := range e.Recipients {
			names = append(names, c.Name+" ("+c.Role+")")
		}
		line("escalation %s step %d%s: %s", e.Policy, e.Step, map[bool]string{true: " (reminder)"}[e.Reminder], strings.Join(names, ", "))
		if e.Shift != "" {
			line("shift: %s", e.Shift)
		}
	}
	line("notification %s", n.ID)
	return b.String()
}
