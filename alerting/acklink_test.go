package alerting

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/internal/sqldb/sqldbtest"
)

func TestAckLink(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, dsn string) {
		t.Parallel()
		ctx := context.Background()
		m := openTestManager(t, dsn)
		clk := &fakeClock{t: time.Date(2026, 12, 7, 2, 0, 0, 0, time.UTC)}
		m.now = clk.Now
		a := openAt(t, m, "res-002", TypeSOS, SeverityCritical)
		b := openAt(t, m, "res-003", TypeFall, SeverityCritical)
		tok, err := m.AckToken(ctx, a.ID, "carer", "wecom")
		if err != nil {
			t.Fatal(err)
		}
		// Tampered: another alert id under the same signature.
		other, _ := m.AckToken(ctx, b.ID, "carer", "wecom")
		forged := other[:len(other)-43] + tok[len(tok)-43:]
		if _, _, err := m.AcknowledgeLink(ctx, forged); !errors.Is(err, ErrLinkInvalid) {
			t.Fatalf("tampered link: %v, want ErrLinkInvalid", err)
		}
		// One character of the signature changed (not the last, whose low
		// bits are padding base64 may ignore, and never to itself).
		i := len(tok) - 10
		flip := byte('A')
		if tok[i] == 'A' {
			flip = 'B'
		}
		if _, _, err := m.AcknowledgeLink(ctx, tok[:i]+string(flip)+tok[i+1:]); !errors.Is(err, ErrLinkInvalid) {
			t.Fatalf("bad signature: %v, want ErrLinkInvalid", err)
		}
		got, l, err := m.AcknowledgeLink(ctx, tok)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != StatusAcknowledged || got.AcknowledgedBy != "carer" || l.Channel != "wecom" {
			t.Fatalf("acknowledged %+v by %+v, want carer through wecom", got, l)
		}
		h, err := m.History(ctx, a.ID)
		if err != nil {
			t.Fatal(err)
		}
		last := h[len(h)-1]
		if last.Action != ActionAcknowledged || last.Actor != "carer" || last.Channel != "wecom link" {
			t.Fatalf("history %+v, want acknowledged by carer through the wecom link", last)
		}
		if _, _, err := m.AcknowledgeLink(ctx, tok); !errors.Is(err, ErrLinkUsed) {
			t.Fatalf("second use: %v, want ErrLinkUsed", err)
		}
		// Expired: b's link past its 24 h.
		clk.Set(clk.Now().Add(AckLinkTTL + time.Second))
		if _, _, err := m.AcknowledgeLink(ctx, other); !errors.Is(err, ErrLinkExpired) {
			t.Fatalf("expired link: %v, want ErrLinkExpired", err)
		}
		if cur, _ := m.Get(ctx, b.ID); cur.Status != StatusOpen {
			t.Fatalf("alert %d is %s after refused links", b.ID, cur.Status)
		}
	})
}
