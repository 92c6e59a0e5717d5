package realdata

import (
	"os"
	"path/filepath"
	"testing"
)

func TestFind(t *testing.T) {
	base := t.TempDir()
	repo := filepath.Join(base, "main")
	data := filepath.Join(base, "shared", "data")
	deep := filepath.Join(repo, "a", "b")
	for _, d := range []string{data, deep} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(repo, "go.mod"), []byte("module x\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	t.Run("walk up from cwd", func(t *testing.T) {
		t.Setenv(Env, "")
		t.Chdir(deep)
		got, ok := Find()
		if !ok || got != data {
			t.Fatalf("Find() = %q, %v; want %q, true", got, ok, data)
		}
	})
	t.Run("env", func(t *testing.T) {
		t.Setenv(Env, deep)
		got, ok := Find()
		if !ok || got != deep {
			t.Fatalf("Find() = %q, %v; want %q, true", got, ok, deep)
		}
	})
	t.Run("env missing", func(t *testing.T) {
		missing := filepath.Join(base, "missing")
		t.Setenv(Env, missing)
		got, ok := Find()
		if ok || got != missing {
			t.Fatalf("Find() = %q, %v; want %q, false", got, ok, missing)
		}
	})
	t.Run("no repository", func(t *testing.T) {
		t.Setenv(Env, "")
		t.Chdir(t.TempDir())
		// The test binary lives in a build cache directory with no go.mod above it.
		if got, ok := Find(); ok {
			t.Fatalf("Find() = %q, true; want not found", got)
		}
	})
}
