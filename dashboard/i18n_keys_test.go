package dashboard

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/eldercare-iot/eldercare/alerting"
)

// TestEveryTextTranslated: every {{t "key"}} of the templates and every
// alert type has a text in both languages, so no page ever shows a raw key.
func TestEveryTextTranslated(t *testing.T) {
	files, err := filepath.Glob("web/templates/*.html")
	if err != nil || len(files) == 0 {
		t.Fatalf("templates: %v", err)
	}
	keys := map[string]string{}
	re := regexp.MustCompile(`\{\{-?\s*t\s+"([^"]+)"`)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			keys[m[1]] = f
		}
	}
	for _, typ := range []string{alerting.TypeFall, alerting.TypeSOS, alerting.TypeSpO2Low, alerting.TypeHeartRate,
		alerting.TypeRespiration, alerting.TypeDeviceOffline, alerting.TypeBedExit, alerting.TypeOutOfBedNight,
		alerting.TypeNoActivity, alerting.TypeMealMissed, alerting.TypeLowBattery, alerting.TypeUnprotected, alerting.TypeNEWS2} {
		keys["type."+typ] = "alert type"
	}
	for lang, table := range tables {
		for k, where := range keys {
			if _, ok := table[k]; !ok {
				t.Errorf("%s: no %s text for %q", where, lang, k)
			}
		}
	}
}
