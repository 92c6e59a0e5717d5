package dashboard

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/alerting"
)

// TestCatalogues: both catalogues load in go-i18n, have the same keys, and
// a plural message has the forms of its language (en: one and other; zh:
// other).
func TestCatalogues(t *testing.T) {
	t.Parallel()
	if _, err := catalogue(); err != nil {
		t.Fatal(err)
	}
	en, err := catalogueKeys(LangEN)
	if err != nil {
		t.Fatal(err)
	}
	zh, err := catalogueKeys(LangZH)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range en {
		if !slices.Contains(zh, k) {
			t.Errorf("key %q is in en.json but not in zh-CN.json", k)
		}
	}
	for _, k := range zh {
		if !slices.Contains(en, k) {
			t.Errorf("key %q is in zh-CN.json but not in en.json", k)
		}
	}
	for lang, want := range map[string][]string{LangEN: {"one", "other"}, LangZH: {"other"}} {
		files, err := catalogueFiles(lang)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]any{}
		for _, f := range files {
			b, err := localeFS.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
		}
		for k, v := range m {
			forms, ok := v.(map[string]any)
			if !ok {
				continue
			}
			for _, f := range want {
				if _, ok := forms[f]; !ok {
					t.Errorf("%s: plural message %q has no %q form", lang, k, f)
				}
			}
		}
	}
}

// TestEveryTextTranslated: every {{t "key"}} (and tn, tf) of the templates,
// every alert type and every alert detail has a text in both catalogues,
// so no page ever shows a raw key.
func TestEveryTextTranslated(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("web/templates/*.html")
	if err != nil || len(files) == 0 {
		t.Fatalf("templates: %v", err)
	}
	keys := map[string]string{}
	re := regexp.MustCompile(`\{\{-?\s*\(?\s*t[nf]?\s+"([^"]+)"`)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			keys[m[1]] = f
		}
	}
	for _, typ := range alertTypes {
		keys["type."+typ] = "alert type"
		keys["what."+typ] = "alert detail"
	}
	for _, o := range alerting.Outcomes {
		keys["outcome."+o] = "outcome"
	}
	for _, r := range Roles {
		keys["role."+r] = "role"
	}
	for _, lang := range Langs {
		have, err := catalogueKeys(lang)
		if err != nil {
			t.Fatal(err)
		}
		for k, where := range keys {
			if !slices.Contains(have, k) {
				t.Errorf("%s: no %s text for %q", where, lang, k)
			}
		}
	}
}

func TestDurText(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		d      time.Duration
		en, zh string
	}{
		{45 * time.Second, "45 s", "45 秒"},
		{6*time.Minute + 13*time.Second, "6 min", "6 分钟"},
		{time.Hour, "1 h", "1 小时"},
		{2*time.Hour + 5*time.Minute, "2 h 5 min", "2 小时 5 分钟"},
		{24 * time.Hour, "1 day", "1 天"},
		{72 * time.Hour, "3 days", "3 天"},
	} {
		if got := durText(LangEN, tc.d); got != tc.en {
			t.Errorf("en %s: %q, want %q", tc.d, got, tc.en)
		}
		if got := durText(LangZH, tc.d); got != tc.zh {
			t.Errorf("zh %s: %q, want %q", tc.d, got, tc.zh)
		}
	}
	if got := agoText(LangZH, 6*time.Minute); got != "6 分钟前" {
		t.Errorf("ago zh: %q", got)
	}
	if strings.Contains(trf(LangEN, "ago.text", "d", "x"), "{{") {
		t.Error("template not executed")
	}
}
