package registry

import (
	"context"
	"fmt"
	"os"
)

// LoadFile parses and validates the registry YAML file at path ([ParseYAML])
// and imports it into store ([Store.Import]). Errors name the file.
func LoadFile(ctx context.Context, store *Store, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("load registry: %w", err)
	}
	defer f.Close()
	doc, err := ParseYAML(f)
	if err != nil {
		return fmt.Errorf("load registry %s: %w", path, err)
	}
	if err := store.Import(ctx, doc); err != nil {
		return fmt.Errorf("load registry %s: %w", path, err)
	}
	return nil
}
