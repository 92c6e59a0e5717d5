package alerting

import (
	"context"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/eldercare-iot/eldercare/internal/sqldb/sqldbtest"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// smtpServer is a real SMTP server (github.com/emersion/go-smtp) on
// loopback that keeps every message it accepts.
type smtpServer struct {
	mu       sync.Mutex
	msgs     []smtpMsg
	tempFail int // answer 451 to the first tempFail RCPT commands
	addr     *net.TCPAddr
}

type smtpMsg struct {
	from string
	to   []string
	data string
}

func newSMTPServer(t *testing.T) *smtpServer {
	s := &smtpServer{}
	srv := smtp.NewServer(s)
	srv.Domain = "localhost"
	srv.AllowInsecureAuth = true
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().(*net.TCPAddr)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return s
}

func (s *smtpServer) NewSession(*smtp.Conn) (smtp.Session, error) { return &smtpSession{srv: s}, nil }

func (s *smtpServer) messages() []smtpMsg {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.msgs)
}

type smtpSession struct {
	srv  *smtpServer
	from string
	to   []string
}

func (x *smtpSession) Reset()        { x.from, x.to = "", nil }
func (x *smtpSession) Logout() error { return nil }
func (x *smtpSession) Mail(from string, _ *smtp.MailOptions) error {
	x.from = from
	return nil
}

func (x *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	x.srv.mu.Lock()
	defer x.srv.mu.Unlock()
	if x.srv.tempFail > 0 {
		x.srv.tempFail--
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
	}
	x.to = append(x.to, to)
	return nil
}

func (x *smtpSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	x.srv.mu.Lock()
	x.srv.msgs = append(x.srv.msgs, smtpMsg{from: x.from, to: x.to, data: string(b)})
	x.srv.mu.Unlock()
	return nil
}

// TestEmailDelivered: a fall pages the caregiver on duty by e-mail through a
// real SMTP server on loopback; the first attempt is refused with 451 and
// retried; the delivery status is recorded per recipient.
func TestEmailDelivered(t *testing.T) {
	t.Parallel()
	mailsrv := newSMTPServer(t)
	mailsrv.tempFail = 1
	e := newEnv(t)
	settings := testSettings(t)
	dsn := sqldbtest.SQLiteDSN(t)
	r := e.startReplica(dsn, "alerting", &settings, func(c *Config, m *Manager) {
		em, err := NewEmail(EmailConfig{Host: "127.0.0.1", Port: mailsrv.addr.Port, From: "Eldercare <alerts@example.org>", TLS: "none",
			Timeout: 5 * time.Second}, m)
		if err != nil {
			t.Fatal(err)
		}
		c.Receivers = append(c.Receivers, em)
	})
	roster, _ := settings.roster("demo", "")
	shift, _ := roster.ShiftAt(time.Now())
	onDuty, _ := settings.recipient(shift.OnDuty[0])

	e.fall("fd-mail", 1)
	testenv.EventuallyTrue(t, 20*time.Second, "e-mail delivered", func() bool { return len(mailsrv.messages()) >= 1 })
	msgs := mailsrv.messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if m.from != "alerts@example.org" || !slices.Equal(m.to, []string{onDuty.Email}) {
		t.Errorf("envelope from %q to %v, want alerts@example.org to %s (shift %s)", m.from, m.to, onDuty.Email, shift.Name)
	}
	alerts := openAlerts(t, r.m, TypeFall)
	if len(alerts) != 1 {
		t.Fatalf("%d fall alerts", len(alerts))
	}
	a := alerts[0]
	wantSubject := "Subject: [CRITICAL] Fall (new): res-fd-mail (home)"
	for _, want := range []string{wantSubject, "To: \"" + onDuty.Name + "\" <" + onDuty.Email + ">", "X-Eldercare-Notification-Id: alert-" + strconv.FormatInt(a.ID, 10) + "-1",
		"fall detected", "Content-Type: text/plain", "Content-Type: text/html"} {
		if !strings.Contains(m.data, want) {
			t.Errorf("message lacks %q:\n%s", want, m.data)
		}
	}
	var ds []Delivery
	testenv.EventuallyTrue(t, 10*time.Second, "delivery recorded", func() bool {
		var err error
		ds, err = r.m.Deliveries(context.Background(), a.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			if d.Receiver == "email" && d.Recipient == "" && d.Status == "sent" {
				return true
			}
		}
		return false
	})
	var per []Delivery
	for _, d := range ds {
		if d.Recipient != "" {
			per = append(per, d)
		}
	}
	if len(per) != 1 || per[0].Recipient != onDuty.ID || per[0].Address != onDuty.Email || per[0].Status != "sent" || per[0].Attempts != 2 {
		t.Errorf("per-recipient deliveries %+v, want %s sent after 2 attempts", per, onDuty.ID)
	}
	// Acknowledging sends no e-mail (nothing to page) and is recorded as
	// skipped for the e-mail receiver.
	if _, err := r.m.Acknowledge(context.Background(), a.ID, onDuty.ID, "dashboard"); err != nil {
		t.Fatal(err)
	}
	testenv.EventuallyTrue(t, 10*time.Second, "acknowledgement skipped by e-mail", func() bool {
		ds, _ := r.m.Deliveries(context.Background(), a.ID)
		for _, d := range ds {
			if d.Event == EventAcknowledged && d.Receiver == "email" && d.Status == "skipped" {
				return true
			}
		}
		return false
	})
	if n := len(mailsrv.messages()); n != 1 {
		t.Errorf("%d messages after the acknowledgement, want 1", n)
	}
}

func TestEmailConfigValidate(t *testing.T) {
	t.Parallel()
	good := EmailConfig{Host: "smtp.example.org", Port: 587, From: "a@example.org"}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]EmailConfig{
		"no host":       {Port: 587, From: "a@example.org"},
		"bad port":      {Host: "h", Port: 0, From: "a@example.org"},
		"bad from":      {Host: "h", Port: 25, From: "nobody"},
		"bad tls":       {Host: "h", Port: 25, From: "a@example.org", TLS: "maybe"},
		"user, no pass": {Host: "h", Port: 25, From: "a@example.org", Username: "u"},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
