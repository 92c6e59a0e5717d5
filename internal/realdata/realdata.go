// Package realdata locates the directory of real device recordings (../shared/data next to the repository) that
// firmware-sim replays and tests read. It imports only the standard library, so the product binary can use it for
// its --recordings default and the test harness (internal/testenv) can share the same lookup.
package realdata

import (
	"os"
	"path/filepath"
)

// Env names the environment variable that overrides the recordings directory.
const Env = "ELDERCARE_REALDATA"

// Find returns the recordings directory and whether it exists as a directory. The lookup is:
//
//  1. $ELDERCARE_REALDATA if set (returned even when it does not exist, with ok false, so callers can name it);
//  2. ../shared/data next to the repository root, the nearest directory holding go.mod found by walking up from the
//     working directory;
//  3. the same, walking up from the directory of the running executable (symlinks resolved).
//
// It returns ("", false) when none is found.
func Find() (dir string, ok bool) {
	if p := os.Getenv(Env); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			abs = p
		}
		return abs, isDir(abs)
	}
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if exe, err := os.Executable(); err == nil {
		if resolved, err := filepath.EvalSymlinks(exe); err == nil {
			exe = resolved
		}
		starts = append(starts, filepath.Dir(exe))
	}
	for _, start := range starts {
		if root, found := moduleRoot(start); found {
			if d := filepath.Join(filepath.Dir(root), "shared", "data"); isDir(d) {
				return d, true
			}
		}
	}
	return "", false
}

// moduleRoot walks up from dir to the nearest directory holding a go.mod file.
func moduleRoot(dir string) (string, bool) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", false
	}
	for {
		if fi, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil && fi.Mode().IsRegular() {
			return dir, true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}
