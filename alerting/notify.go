// Stage 4, notify: the receivers (signed webhook, MQTT alert topic) and the Receiver contract the
// outbox (outbox.go) delivers through.

package alerting

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/eldercare-iot/eldercare/internal/secret"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/eldercare-iot/eldercare/internal/mqttconn"
)

// Notification is one outbox row handed to a receiver.
type Notification struct {
	// ID is stable across retries and restarts ("alert-<id>-<seq>").
	ID string
	// Event is opened, acknowledged, resolved or repeated.
	Event string
	Site  string
	// Body is the JSON encoding of the [Change], fixed when the change was
	// written; receivers send it verbatim.
	Body []byte
}

// Receiver delivers notifications somewhere. Send returns nil once the
// receiver has the notification, an error marked with [Permanent] when
// retrying cannot help, or any other error to be retried with backoff.
type Receiver interface {
	Name() string
	Send(ctx context.Context, n Notification) error
}

// permanentError marks an error that retrying cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as not worth retrying.
func Permanent(err error) error { return &permanentError{err} }

// ErrSkipped is returned (wrapped or not) by a receiver that has nothing to
// send for a notification, e.g. e-mail for a change that pages nobody with an
// address. The delivery is recorded as "skipped", which counts as done.
var ErrSkipped = errors.New("nothing to send")

// IsPermanent reports whether err was marked with [Permanent].
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// Webhook headers.
const (
	HeaderSignature      = "X-Eldercare-Signature"
	HeaderNotificationID = "X-Eldercare-Notification-Id"
	HeaderTimestamp      = "X-Eldercare-Timestamp"
)

// Sign returns the X-Eldercare-Signature value for body:
// "sha256=" + hex(HMAC-SHA256(secret, body)).
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// VerifySignature reports whether header is the valid signature of body.
func VerifySignature(secret, body []byte, header string) bool {
	return hmac.Equal([]byte(Sign(secret, body)), []byte(header))
}

// Webhook POSTs each notification's JSON to URL with a signature header.
// A 2xx answer is success, 4xx (other than 408 and 429) is permanent, and
// 5xx, 408, 429 and network errors are retried by the dispatcher.
type Webhook struct {
	URL    string
	Secret Secret
	Client *http.Client // nil: a client with a 10 s timeout
	Now    func() time.Time
	// Template formats the body: "" or "eldercare" (the notification JSON
	// verbatim), or a chat robot format: "slack", "dingtalk", "wecom" (see
	// [RenderTemplate]). The signature header signs the bytes sent.
	Template string
	// ReceiverName names the receiver ("" = "webhook"); each webhook of a
	// service needs its own name.
	ReceiverName string
	// Renderer writes chat templates in the group's language with places,
	// local times and each paged person's acknowledge link (nil: the zero
	// Renderer).
	Renderer *Renderer
}

// Name implements Receiver.
func (w *Webhook) Name() string {
	if w.ReceiverName != "" {
		return w.ReceiverName
	}
	return "webhook"
}

// Send implements Receiver.
func (w *Webhook) Send(ctx context.Context, n Notification) error {
	body, err := w.Renderer.Chat(ctx, w.Template, n.Body)
	if err != nil {
		return Permanent(fmt.Errorf("webhook template %s: %w", w.Template, err))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return Permanent(fmt.Errorf("webhook request: %w", err))
	}
	now := time.Now
	if w.Now != nil {
		now = w.Now
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "eldercare-alerting")
	req.Header.Set(HeaderNotificationID, n.ID)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(now().Unix(), 10))
	if w.Secret != "" {
		req.Header.Set(HeaderSignature, Sign([]byte(w.Secret), body))
	}
	c := w.Client
	if c == nil {
		c = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("webhook POST: %w", err)
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return fmt.Errorf("webhook POST: %s: %s", resp.Status, bytes.TrimSpace(snippet))
	default:
		return Permanent(fmt.Errorf("webhook POST: %s: %s", resp.Status, bytes.TrimSpace(snippet)))
	}
}

// Secret is a string that never prints (see secret.String).
type Secret = secret.String

// mqttReceiver publishes each change on AlertTopic(root, site), QoS 1, not
// retained.
type mqttReceiver struct {
	client paho.Client
	root   string
}

func (r *mqttReceiver) Name() string { return "mqtt" }

func (r *mqttReceiver) Send(ctx context.Context, n Notification) error {
	return mqttconn.Wait(ctx, r.client.Publish(AlertTopic(r.root, n.Site), 1, false, n.Body), 10*time.Second, "publish alert change")
}
