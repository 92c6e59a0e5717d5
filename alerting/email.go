// Stage 4, notify: the e-mail receiver (SMTP) that mails the recipients an escalation step pages.

package alerting

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/textproto"
	"strings"
	"time"

	"github.com/wneessen/go-mail"
)

// EmailConfig configures the e-mail receiver (SMTP, through
// github.com/wneessen/go-mail).
type EmailConfig struct {
	// Host and Port of the SMTP server, e.g. smtp.example.org and 587.
	Host string
	Port int
	// Username and Password for SMTP AUTH (PLAIN/LOGIN, auto-discovered);
	// both empty: no authentication.
	Username string
	Password Secret
	// From is the sender address, e.g. "Eldercare <alerts@example.org>".
	From string
	// TLS is "starttls" (required; the default), "tls" (implicit TLS,
	// e.g. port 465) or "none" (plain text: loopback or a trusted relay
	// only).
	TLS string
	// Timeout bounds one SMTP conversation; default 15 s.
	Timeout time.Duration
}

// Validate reports every problem of c.
func (c EmailConfig) Validate() error {
	var errs []error
	if c.Host == "" {
		errs = append(errs, errors.New("smtp host is required"))
	}
	if c.Port <= 0 || c.Port > 65535 {
		errs = append(errs, fmt.Errorf("smtp port %d: want 1-65535", c.Port))
	}
	if !strings.Contains(c.From, "@") {
		errs = append(errs, fmt.Errorf("smtp from %q: want an address", c.From))
	}
	switch c.TLS {
	case "", "starttls", "tls", "none":
	default:
		errs = append(errs, fmt.Errorf("smtp tls %q: want starttls, tls or none", c.TLS))
	}
	if (c.Username == "") != (c.Password == "") {
		errs = append(errs, errors.New("smtp username and password go together"))
	}
	return errors.Join(errs...)
}

// Email is the e-mail receiver ("email"). It sends one plain-text message
// per paged recipient with an address (the notification's escalation
// member; other notifications are skipped), subject as [Subject], with
// headers Message-Id <notification-id.recipient@eldercare> and
// X-Eldercare-Notification-Id. Each recipient's delivery is recorded in
// alert_recipient_deliveries (see [Manager.Deliveries]); a retry sends only
// to the recipients not yet sent. SMTP 5xx answers are permanent, other
// failures are retried by the dispatcher.
type Email struct {
	cfg EmailConfig
	m   *Manager
	// Renderer writes each person's message in their language, with the
	// place, local time and their acknowledge link (nil: the zero
	// Renderer).
	Renderer *Renderer
}

// NewEmail checks cfg and returns the receiver; m records per-recipient
// delivery status.
func NewEmail(cfg EmailConfig, m *Manager) (*Email, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("e-mail receiver: %w", err)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 15 * time.Second
	}
	return &Email{cfg: cfg, m: m}, nil
}

// Name implements Receiver.
func (e *Email) Name() string { return "email" }

func (e *Email) client() (*mail.Client, error) {
	opts := []mail.Option{mail.WithTimeout(e.cfg.Timeout)}
	switch e.cfg.TLS {
	case "none":
		opts = append(opts, mail.WithTLSPolicy(mail.NoTLS))
	case "tls":
		opts = append(opts, mail.WithSSL())
	default:
		opts = append(opts, mail.WithTLSPolicy(mail.TLSMandatory))
	}
	opts = append(opts, mail.WithPort(e.cfg.Port)) // after the TLS options, which set a default port
	if e.cfg.Username != "" {
		opts = append(opts, mail.WithSMTPAuth(mail.SMTPAuthAutoDiscover), mail.WithUsername(e.cfg.Username), mail.WithPassword(string(e.cfg.Password)))
	}
	return mail.NewClient(e.cfg.Host, opts...)
}

// Send implements Receiver.
func (e *Email) Send(ctx context.Context, n Notification) error {
	var nt Notice
	if err := json.Unmarshal(n.Body, &nt); err != nil {
		return Permanent(fmt.Errorf("decode notification: %w", err))
	}
	if nt.Escalation == nil {
		return ErrSkipped
	}
	var todo []Contact
	for _, c := range nt.Escalation.Recipients {
		if c.Email == "" {
			continue
		}
		done, err := e.m.recipientDone(ctx, n.ID, e.Name(), c.ID)
		if err != nil {
			return err
		}
		if !done {
			todo = append(todo, c)
		}
	}
	if len(todo) == 0 {
		return ErrSkipped
	}
	client, err := e.client()
	if err != nil {
		return Permanent(fmt.Errorf("smtp client: %w", err))
	}
	var retry, permanent []error
	for _, c := range todo {
		body, err := e.Renderer.ForContact(ctx, nt, c, e.Name())
		if err != nil {
			retry = append(retry, err)
			continue
		}
		msg := mail.NewMsg()
		err = msg.From(e.cfg.From)
		if err == nil {
			err = msg.AddToFormat(c.Name, c.Email)
		}
		if err != nil {
			permanent = append(permanent, fmt.Errorf("%s <%s>: %w", c.ID, c.Email, err))
			e.m.recordRecipient(ctx, n.ID, e.Name(), c, deliveryFailed, err)
			continue
		}
		msg.Subject(body.Subject)
		msg.SetMessageIDWithValue(n.ID + "." + c.ID + "@eldercare")
		msg.SetGenHeader(mail.Header(HeaderNotificationID), n.ID)
		msg.SetBodyString(mail.TypeTextPlain, body.Text())
		msg.AddAlternativeString(mail.TypeTextHTML, body.HTML(c.Lang))
		err = client.DialAndSendWithContext(ctx, msg)
		var reply *textproto.Error
		switch {
		case err == nil:
			e.m.recordRecipient(ctx, n.ID, e.Name(), c, deliverySent, nil)
		case errors.As(err, &reply) && reply.Code >= 500: // the server refused for good
			permanent = append(permanent, fmt.Errorf("%s <%s>: %w", c.ID, c.Email, err))
			e.m.recordRecipient(ctx, n.ID, e.Name(), c, deliveryFailed, err)
		default:
			retry = append(retry, fmt.Errorf("%s <%s>: %w", c.ID, c.Email, err))
			e.m.recordRecipient(ctx, n.ID, e.Name(), c, deliveryRetrying, err)
		}
	}
	switch {
	case len(retry) > 0:
		return fmt.Errorf("e-mail: %w", errors.Join(append(retry, permanent...)...))
	case len(permanent) > 0:
		return Permanent(fmt.Errorf("e-mail: %w", errors.Join(permanent...)))
	}
	return nil
}

// recipientDone reports whether receiver is done (sent or failed) with
// recipient for notification id.
func (m *Manager) recipientDone(ctx context.Context, id, receiver, recipient string) (bool, error) {
	var status string
	err := m.db.QueryRowContext(ctx, m.db.Rebind(`SELECT status FROM alert_recipient_deliveries WHERE notification_id = ? AND receiver = ? AND recipient_id = ?`),
		id, receiver, recipient).Scan(&status)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read recipient delivery: %w", err)
	}
	return status == deliverySent || status == deliveryFailed, nil
}

// recordRecipient records one recipient's delivery attempt. A failure to
// record is logged: the receiver-level status still tells the truth.
func (m *Manager) recordRecipient(ctx context.Context, id, receiver string, c Contact, status string, sendErr error) {
	var text string
	if sendErr != nil {
		text = sendErr.Error()
	}
	defer m.lockWrites()()
	_, err := m.db.ExecContext(ctx, m.db.Rebind(`INSERT INTO alert_recipient_deliveries (notification_id, receiver, recipient_id, address, status, attempts, last_error, updated_ms)
		VALUES (?, ?, ?, ?, ?, 1, ?, ?)
		ON CONFLICT (notification_id, receiver, recipient_id) DO UPDATE SET status = excluded.status,
			attempts = alert_recipient_deliveries.attempts + 1, last_error = excluded.last_error, updated_ms = excluded.updated_ms`),
		id, receiver, c.ID, c.Email, status, text, m.now().UnixMilli())
	if err != nil {
		m.log.Error("alerting: record recipient delivery", "id", id, "recipient", c.ID, "err", err)
	}
}
