//go:build !unix

package sqldb

import (
	"context"
	"time"
)

// lockFile is a no-op where flock(2) is missing; migrations of processes
// started together may then race.
func lockFile(context.Context, string, time.Duration) (func(), error) { return func() {}, nil }
