package registry

import (
	"encoding/json"
	"fmt"
)

// encode is the names' database form: a JSON object, "" when empty.
func (n Names) encode() string {
	if len(n) == 0 {
		return ""
	}
	b, _ := json.Marshal(map[string]string(n)) // a map of strings always encodes
	return string(b)
}

// decodeNames reads the database form written by [Names.encode].
func decodeNames(s string) (Names, error) {
	if s == "" {
		return nil, nil
	}
	var n Names
	if err := json.Unmarshal([]byte(s), &n); err != nil {
		return nil, fmt.Errorf("display names %q: %w", s, err)
	}
	return n, nil
}
