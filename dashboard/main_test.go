package dashboard

import (
	"os"
	"testing"

	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// The Flux tests share one influxd (testenv.SharedInflux, a database each);
// the accounts tests copy one SQLite template (accountsTemplate).
func TestMain(m *testing.M) {
	code := testenv.Main(m)
	if templateDir != "" {
		os.RemoveAll(templateDir)
	}
	os.Exit(code)
}
