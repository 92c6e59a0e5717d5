// Stage 4, notify: chat robot bodies (Slack, DingTalk, WeCom) rendered from a notification.

package alerting

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
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
// a webhook template with the zero [Renderer] (ids, UTC, English, no
// links). "" and "eldercare" return body unchanged. It returns an error
// for an unknown template or a body that is not a notice.
func RenderTemplate(template string, body []byte) ([]byte, error) {
	return (*Renderer)(nil).Chat(context.Background(), template, body)
}

// Chat formats a notification body for a webhook template: the text in
// the group's language, naming resident, room and bed, the time in the
// site's zone, mentioning the paged people and giving each their own
// acknowledge link (markdown links in WeCom and DingTalk cards).
func (r *Renderer) Chat(ctx context.Context, template string, body []byte) ([]byte, error) {
	if template == "" || template == TemplateJSON {
		return body, nil
	}
	if !slices.Contains(Templates, template) {
		return nil, fmt.Errorf("unknown template %q (want one of %s)", template, strings.Join(Templates, ", "))
	}
	var n Notice
	if err := json.Unmarshal(body, &n); err != nil {
		return nil, fmt.Errorf("decode notification: %w", err)
	}
	channel, _, _ := strings.Cut(template, "-")
	m, err := r.groupMessage(ctx, n, channel)
	if err != nil {
		return nil, err
	}
	title := m.Subject
	var chatIDs []string
	if n.Escalation != nil {
		for _, c := range n.Escalation.Recipients {
			id := c.wecomID()
			if channel == TemplateDingTalk {
				id = c.dingTalkID()
			}
			if id != "" {
				chatIDs = append(chatIDs, id)
			}
		}
	}
	lines := func(prefix string, md bool) string {
		var b strings.Builder
		for _, l := range m.Lines {
			b.WriteString(prefix + l + "\n")
		}
		for _, l := range m.Links {
			if md {
				b.WriteString(prefix + "[" + l[0] + "](" + l[1] + ")\n")
			} else {
				b.WriteString(prefix + l[0] + ": " + l[1] + "\n")
			}
		}
		b.WriteString(prefix + m.Footer + "\n")
		return b.String()
	}
	var v any
	switch template {
	case TemplateSlack:
		var b strings.Builder
		for _, l := range m.Lines {
			b.WriteString("• " + l + "\n")
		}
		for _, l := range m.Links {
			b.WriteString("• <" + l[1] + "|" + l[0] + ">\n")
		}
		b.WriteString("• " + m.Footer + "\n")
		v = map[string]any{"text": "*" + title + "*\n" + b.String()}
	case TemplateDingTalk:
		text := "### " + title + "\n\n" + lines("- ", true)
		for _, id := range chatIDs {
			text += " @" + id
		}
		v = map[string]any{"msgtype": "markdown", "markdown": map[string]any{"title": title, "text": text},
			"at": map[string]any{"atMobiles": nonNil(chatIDs), "isAtAll": false}}
	case TemplateDingTalkText:
		v = map[string]any{"msgtype": "text", "text": map[string]any{"content": title + "\n" + lines("", false)},
			"at": map[string]any{"atMobiles": nonNil(chatIDs), "isAtAll": false}}
	case TemplateWeCom:
		text := "### " + title + "\n" + lines("> ", true)
		for _, id := range chatIDs {
			text += "<@" + id + ">"
		}
		v = map[string]any{"msgtype": "markdown", "markdown": map[string]any{"content": text}}
	case TemplateWeComText:
		v = map[string]any{"msgtype": "text", "text": map[string]any{"content": title + "\n" + lines("", false),
			"mentioned_list": nonNil(chatIDs)}}
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

// Subject is the one-line summary of a notification in English with ids,
// e.g. "[CRITICAL] Fall (new): res-001 (home)".
func Subject(n Notice) string { return (*Renderer)(nil).message(n, "en").Subject }
