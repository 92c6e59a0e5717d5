// Package secret holds configuration values that must never be printed:
// passwords, tokens, signing keys.
package secret

import "fmt"

// String is a string that never prints: String, GoString, Format (every
// verb), MarshalText (JSON) and slog all render it as "[redacted]", or ""
// when it is empty. Convert it to string explicitly where the value is
// really needed.
type String string

// String implements fmt.Stringer.
func (s String) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// GoString implements fmt.GoStringer, so %#v redacts too.
func (s String) GoString() string { return `"` + s.String() + `"` }

// Format implements fmt.Formatter, so %v, %s, %q and %x all redact.
func (s String) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(s.String())) }

// MarshalText implements encoding.TextMarshaler: JSON and slog redact.
func (s String) MarshalText() ([]byte, error) { return []byte(s.String()), nil }
