// Alert history: comments people write on an alert (dashboard page or
// API), stored in alert_comments (migration 00050) and shown in the
// alert's timeline. System notes (escalation reached nobody, a command's
// result) stay history entries with action "comment" (store.go).

package alerting

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// MaxCommentLen is the longest comment, in characters (Unicode code
// points).
const MaxCommentLen = 2000

// ErrInvalidComment is returned, wrapped, by [CheckComment] and
// [Manager.AddComment] for a comment that is empty, too long, not UTF-8
// or has control characters.
var ErrInvalidComment = errors.New("invalid comment")

// Reasons a comment is refused ([CommentError.Reason]).
const (
	CommentEmpty   = "empty"
	CommentTooLong = "too_long"
	CommentControl = "control"
	CommentUTF8    = "utf8"
)

// CommentError says why a comment was refused: Reason is one of
// CommentEmpty, CommentTooLong, CommentControl, CommentUTF8; Len is the
// length in characters (CommentTooLong), Rune the refused character
// (CommentControl). It wraps ErrInvalidComment.
type CommentError struct {
	Reason string
	Len    int
	Rune   rune
}

func (e *CommentError) Error() string {
	switch e.Reason {
	case CommentEmpty:
		return "comment: empty"
	case CommentTooLong:
		return fmt.Sprintf("comment: %d characters, at most %d", e.Len, MaxCommentLen)
	case CommentControl:
		return fmt.Sprintf("comment: control character %U not allowed (line breaks and tabs are)", e.Rune)
	}
	return "comment: not valid UTF-8"
}

func (e *CommentError) Unwrap() error { return ErrInvalidComment }

// CheckComment returns text as it is stored: CRLF and CR made LF, white
// space trimmed at both ends. It refuses (a *CommentError) a text that is
// not UTF-8, empty once trimmed, longer than MaxCommentLen characters, or
// has a control character other than line feed and tab.
func CheckComment(text string) (string, error) {
	if !utf8.ValidString(text) {
		return "", &CommentError{Reason: CommentUTF8}
	}
	text = strings.ReplaceAll(text, "\r\n", "\n")
	text = strings.ReplaceAll(text, "\r", "\n")
	text = strings.TrimSpace(text)
	if text == "" {
		return "", &CommentError{Reason: CommentEmpty}
	}
	if n := utf8.RuneCountInString(text); n > MaxCommentLen {
		return "", &CommentError{Reason: CommentTooLong, Len: n}
	}
	for _, r := range text {
		if r == '\n' || r == '\t' {
			continue
		}
		// Cc (C0, DEL, C1) and the bidirectional overrides, which can
		// make a comment read differently from what it stores.
		if unicode.IsControl(r) || (r >= 0x202A && r <= 0x202E) || (r >= 0x2066 && r <= 0x2069) {
			return "", &CommentError{Reason: CommentControl, Rune: r}
		}
	}
	return text, nil
}

// Comment is one comment on an alert. At is UTC.
type Comment struct {
	ID      int64     `json:"id"`
	AlertID int64     `json:"alert_id"`
	At      time.Time `json:"at"`
	// Author is the staff user name that wrote it.
	Author string `json:"author"`
	// Channel is dashboard, api or api:<client>.
	Channel string `json:"channel"`
	Text    string `json:"text"`
}

// AddComment stores a comment by author through channel on alert id (open
// or resolved) and returns it. Errors: ErrInvalidComment (see
// [CheckComment]; a *CommentError), an empty author or channel,
// ErrNotFound.
func (m *Manager) AddComment(ctx context.Context, id int64, author, channel, text string) (Comment, error) {
	if author == "" || channel == "" {
		return Comment{}, errors.New("comment: author and channel are required")
	}
	body, err := CheckComment(text)
	if err != nil {
		return Comment{}, fmt.Errorf("comment on alert %d: %w", id, err)
	}
	c := Comment{AlertID: id, Author: author, Channel: channel, Text: body}
	err = m.tx(ctx, func(tx *sql.Tx) error {
		if _, err := getAlert(ctx, m.db, tx, id); err != nil {
			return err
		}
		if err := tx.QueryRowContext(ctx, m.db.Rebind(`UPDATE alerting_counters SET value = value + 1 WHERE name = 'comment' RETURNING value`)).Scan(&c.ID); err != nil {
			return fmt.Errorf("allocate comment id: %w", err)
		}
		now := m.now().UnixMilli()
		c.At = time.UnixMilli(now).UTC()
		_, err := tx.ExecContext(ctx, m.db.Rebind(`INSERT INTO alert_comments (id, alert_id, at_ms, author, channel, body) VALUES (?, ?, ?, ?, ?, ?)`),
			c.ID, id, now, author, channel, body)
		if err != nil {
			return fmt.Errorf("insert comment: %w", err)
		}
		return nil
	})
	if err != nil {
		return Comment{}, fmt.Errorf("comment on alert %d: %w", id, err)
	}
	return c, nil
}

// Comments returns the comments of alert id, oldest first, or an error
// wrapping ErrNotFound.
func (m *Manager) Comments(ctx context.Context, id int64) ([]Comment, error) {
	if _, err := m.Get(ctx, id); err != nil {
		return nil, err
	}
	rows, err := m.db.QueryContext(ctx, m.db.Rebind(`SELECT id, alert_id, at_ms, author, channel, body FROM alert_comments WHERE alert_id = ? ORDER BY id`), id)
	if err != nil {
		return nil, fmt.Errorf("comments of alert %d: %w", id, err)
	}
	defer rows.Close()
	out := []Comment{}
	for rows.Next() {
		var c Comment
		var at int64
		if err := rows.Scan(&c.ID, &c.AlertID, &at, &c.Author, &c.Channel, &c.Text); err != nil {
			return nil, fmt.Errorf("comments of alert %d: %w", id, err)
		}
		c.At = time.UnixMilli(at).UTC()
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("comments of alert %d: %w", id, err)
	}
	return out, nil
}
