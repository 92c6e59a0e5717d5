package registry_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/device/registry"
)

const adminBase = `
sites:
  - id: st
    name: Station
    timezone: Asia/Shanghai
    rooms:
      - id: r1
        name: Room 1
        beds:
          - {id: b1, name: Bed 1, type: ordinary}
residents:
  - {id: res-1, name: Li Hua, site: st, bed: b1}
devices:
  - {id: gw-1, site: st, kind: gateway}
  - {id: fd-1, site: st, kind: fall_detector, gateway: gw-1}
`

// TestAdminWritesShareTheImportValidation: each admin write refuses what
// the YAML import refuses, with the same message.
func TestAdminWritesShareTheImportValidation(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *registry.Store) {
		ctx := context.Background()
		mustImport(t, s, adminBase)
		now := time.Date(2026, 12, 7, 4, 0, 0, 0, time.UTC)
		tests := []struct {
			name, yaml, suffix, field string
			write                     func() error
		}{
			{"site zone", "  - {id: s2, name: Two, timezone: Mars/Base}\n", "sites[1].timezone", "timezone",
				func() error { return s.PutSite(ctx, registry.Site{ID: "s2", Name: "Two", TimeZone: "Mars/Base"}) }},
			{"site name", "  - {id: s2, name: \"\", timezone: UTC}\n", "sites[1].name", "name",
				func() error { return s.PutSite(ctx, registry.Site{ID: "s2", TimeZone: "UTC"}) }},
			{"room ward", "", "", "ward", nil},
			{"bed type", "", "", "type", nil},
			{"resident birth year", "  - {id: res-2, name: X, site: st, birth_year: 1700}\n", "birth_year", "birth_year",
				func() error {
					return s.PutResident(ctx, registry.Resident{ID: "res-2", Name: "X", SiteID: "st", BirthYear: 1700})
				}},
			{"device kind", "  - {id: d9, site: st, kind: toaster}\n", "kind", "kind",
				func() error { return s.PutDevice(ctx, registry.Device{ID: "d9", SiteID: "st", Kind: "toaster"}) }},
			{"card resident", "cards:\n  - {id: C1, resident: nobody}\n", "cards[0].resident", "resident",
				func() error { return s.PutCard(ctx, registry.MealCard{ID: "C1", ResidentID: "nobody"}) }},
		}
		// The nested room and bed cases need the base's structure.
		tests[2].write = func() error {
			return s.PutRoom(ctx, registry.Room{ID: "r2", SiteID: "st", Name: "Room 2", Ward: strings.Repeat("w", 41)})
		}
		tests[3].write = func() error {
			return s.PutBed(ctx, registry.Bed{ID: "b2", RoomID: "r1", Name: "Bed 2", Type: "hammock"}, "ada", "", now)
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				var yamlMsg string
				switch tc.name {
				case "room ward":
					yamlMsg = yamlMessageDoc(t, strings.Replace(adminBase, "        name: Room 1\n", "        name: Room 1\n        ward: "+strings.Repeat("w", 41)+"\n", 1), "ward")
				case "bed type":
					yamlMsg = yamlMessageDoc(t, strings.Replace(adminBase, "type: ordinary", "type: hammock", 1), "type")
				default:
					// Append the row to its list in the base document.
					list := map[string]string{"site zone": "residents:\n", "site name": "residents:\n",
						"resident birth year": "devices:\n", "device kind": ""}[tc.name]
					text := adminBase + "cards:\n" + tc.yaml
					if tc.name == "device kind" {
						text = adminBase + tc.yaml
					} else if list != "" {
						text = strings.Replace(adminBase, list, tc.yaml+list, 1)
					}
					if tc.name == "card resident" {
						text = adminBase + tc.yaml
					}
					yamlMsg = yamlMessageDoc(t, text, tc.suffix)
				}
				err := tc.write()
				if err == nil {
					t.Fatal("the admin write accepted what the YAML import refuses")
				}
				var got []string
				for _, fe := range registry.FieldErrors(err) {
					if fe.Field == tc.field {
						got = append(got, fe.Message)
					}
				}
				if len(got) != 1 || got[0] != yamlMsg {
					t.Errorf("admin write: %q (field %s) from %v; YAML import: %q", got, tc.field, err, yamlMsg)
				}
			})
		}
		if _, err := s.Site(ctx, "s2"); !errors.Is(err, registry.ErrNotFound) {
			t.Errorf("an invalid site was stored: %v", err)
		}
	})
}

// yamlMessageDoc validates a whole document and returns the message at a
// path ending in suffix.
func yamlMessageDoc(t *testing.T, text, suffix string) string {
	t.Helper()
	doc, err := registry.ParseYAML(strings.NewReader(text))
	if err == nil {
		err = doc.Validate()
	}
	for _, fe := range registry.FieldErrors(err) {
		if strings.HasSuffix(fe.Path, suffix) {
			return fe.Message
		}
	}
	t.Fatalf("no problem at *%s in %v", suffix, err)
	return ""
}

// TestAdminLifecycle: a bed type change keeps its history, a gateway's
// password is shown once and stored as argon2id, retiring refuses rows in
// use and keeps a record of what it removed.
func TestAdminLifecycle(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *registry.Store) {
		ctx := context.Background()
		mustImport(t, s, adminBase)
		now := time.Date(2026, 12, 7, 4, 0, 0, 0, time.UTC)
		if err := s.PutRoom(ctx, registry.Room{ID: "r2", SiteID: "st", Name: "Room 2", Ward: "east", Names: registry.Names{"zh-CN": "二号房"}}); err != nil {
			t.Fatal(err)
		}
		if err := s.PutBed(ctx, registry.Bed{ID: "b1", RoomID: "r1", Name: "Bed one", Type: registry.BedNursing}, "", "", now); err == nil {
			t.Error("a type change without who was accepted")
		}
		if err := s.PutBed(ctx, registry.Bed{ID: "b1", RoomID: "r1", Name: "Bed one", Type: registry.BedNursing}, "ada", "converted", now); err != nil {
			t.Fatal(err)
		}
		hist, err := s.BedTypeHistory(ctx, "b1", time.Time{}, time.Time{})
		if err != nil || len(hist) != 1 || hist[0].From != registry.BedOrdinary || hist[0].To != registry.BedNursing || hist[0].By != "ada" {
			t.Errorf("history %+v %v", hist, err)
		}
		beds, _ := s.Beds(ctx, "st")
		if len(beds) != 1 || beds[0].Name != "Bed one" || !beds[0].Nursing {
			t.Errorf("beds %+v", beds)
		}
		pw, err := s.PutGateway(ctx, registry.Device{ID: "gw-2", SiteID: "st", Name: "Home gateway"})
		if err != nil || len(pw) != registry.GatewayPasswordLen {
			t.Fatalf("gateway password %q %v", pw, err)
		}
		acc, err := s.Account(ctx, "gw-2")
		if err != nil || !strings.HasPrefix(acc.PasswordHash, "$argon2id$") || !registry.CheckPassword(acc.PasswordHash, pw) {
			t.Errorf("gateway account %v %v", acc, err)
		}
		if err := s.PutCard(ctx, registry.MealCard{ID: "04A1", ResidentID: "res-1"}); err != nil {
			t.Fatal(err)
		}
		if err := s.Bind(ctx, "fd-1", "res-1", now.Add(-time.Hour)); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct{ kind, id string }{{"site", "st"}, {"room", "r1"}, {"bed", "b1"}, {"device", "gw-1"}} {
			if err := s.Retire(ctx, tc.kind, tc.id, "ada", "", now); !errors.Is(err, registry.ErrInUse) {
				t.Errorf("retire %s %s: %v, want in use", tc.kind, tc.id, err)
			}
		}
		if err := s.Retire(ctx, "room", "nope", "ada", "", now); !errors.Is(err, registry.ErrNotFound) {
			t.Errorf("retire unknown room: %v", err)
		}
		if err := s.Retire(ctx, "resident", "res-1", "ada", "moved away", now); err != nil {
			t.Fatal(err)
		}
		if err := s.Retire(ctx, "device", "fd-1", "ada", "", now); err != nil {
			t.Fatal(err)
		}
		if cards, _ := s.Cards(ctx); len(cards) != 0 {
			t.Errorf("the retired resident's card stayed: %+v", cards)
		}
		rows, err := s.RetiredRows(ctx, 0)
		if err != nil || len(rows) != 2 {
			t.Fatalf("retired %+v %v", rows, err)
		}
		var rec string
		for _, r := range rows {
			if r.Kind == "resident" {
				rec = string(r.Record)
				if r.By != "ada" || r.Reason != "moved away" {
					t.Errorf("record %+v", r)
				}
			}
		}
		if !strings.Contains(rec, `"04A1"`) || !strings.Contains(rec, `"fd-1"`) || !strings.Contains(rec, `"to":"2026-12-07T04:00:00Z"`) {
			t.Errorf("the resident's record lacks its card or closed binding: %s", rec)
		}
		if err := s.Retire(ctx, "bed", "b1", "ada", "", now); err != nil {
			t.Errorf("retire the freed bed: %v", err)
		}
	})
}
