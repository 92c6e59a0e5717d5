package dashboard

import (
	"os"
	"testing"

	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// The Flux tests share one influxd (testenv.SharedInflux, a database each).
func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }
