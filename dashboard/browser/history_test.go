package browser_test

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/eldercare-iot/eldercare/alerting"
	firmwaresim "github.com/eldercare-iot/eldercare/firmware-sim"
)

// publishSOS sends an SOS press of the demo wristband fd-001.
func (st *stack) publishSOS(t *testing.T) {
	t.Helper()
	id := st.nextID()
	now := time.Now()
	st.publish(t, "fd-001", "event", fmt.Sprintf(`{"v":1,"device":"fd-001","boot":%d,"id":%d,"seq":%d,"ts":%d,"type":"sos"}`,
		now.Unix(), id, id, now.UnixMilli()))
}

// waitAlert waits for an open alert of type typ and returns it.
func waitAlert(t *testing.T, st *stack, typ string) alerting.Alert {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		as, err := st.mgr.List(context.Background(), alerting.Filter{Status: []string{alerting.StatusOpen}})
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range as {
			if a.Type == typ {
				return a
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no open %s alert after 20 s", typ)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestAlertHistoryBrowser: a fall resolved as an injury, an SOS resolved
// as a false alarm and an open fall come through the real pipeline; as
// a caregiver, at 390x844 and 1280x900, in English and Chinese, the
// history is filtered by type and outcome down to the injury, its
// timeline opens from the list, a comment is added from the page and
// shown, a refused comment keeps its text with the reason, the CSV of the
// filter has that alert's row (times in the site's zone with offset),
// the API shows the comments, and axe-core finds no serious violation on
// either page. Screenshots go to $ELDERCARE_ARTIFACTS.
func TestAlertHistoryBrowser(t *testing.T) {
	t.Parallel()
	st := startStack(t)
	root := browser(t)
	dir := artifactsDir(t)
	axe := axeSource(t)
	ctx0 := context.Background()

	lead := st.accounts["lead"].user.Name
	st.publishFall(t)
	injury := waitAlert(t, st, alerting.TypeFall)
	if _, err := st.mgr.Resolve(ctx0, injury.ID, lead, "dashboard", alerting.OutcomeInjury, "Bruised left hip; GP called"); err != nil {
		t.Fatal(err)
	}
	st.publishSOS(t)
	sos := waitAlert(t, st, alerting.TypeSOS)
	if _, err := st.mgr.Resolve(ctx0, sos.ID, lead, "dashboard", alerting.OutcomeFalseAlarm, "pressed by mistake"); err != nil {
		t.Fatal(err)
	}
	st.publishFall(t)
	openFall := waitAlert(t, st, alerting.TypeFall)
	if openFall.ID == injury.ID {
		t.Fatal("the second fall did not open a new alert")
	}

	var (
		mu       sync.Mutex
		comments []string
	)
	// The phone and the desktop side by side, the languages one after the
	// other (the page's ?lang= sets the account's language).
	for _, lang := range []string{"en", "zh-CN"} {
		t.Run(lang, func(t *testing.T) {
			for _, vp := range []struct {
				name string
				w, h int64
			}{{"phone", 390, 844}, {"desktop", 1280, 900}} {
				t.Run(vp.name, func(t *testing.T) {
					t.Parallel()
					ctx := userContext(t, root, vp.w, vp.h)
					openIn(t, ctx, st, "carer", "/alerts/history", lang)
					rows := func() []string {
						ids, err := eval[[]string](ctx, `[...document.querySelectorAll('tr[data-alert]')].map(r => r.dataset.alert)`)
						if err != nil {
							t.Fatal(err)
						}
						return ids
					}
					if all := rows(); len(all) < 3 || all[0] != fmt.Sprint(openFall.ID) {
						t.Errorf("unfiltered rows %v, want the open fall %d first", all, openFall.ID)
					}
					shot(t, ctx, dir, fmt.Sprintf("history-%s-%s", vp.name, lang))
					if vs := axeRun(t, ctx, axe); len(vs) > 0 {
						t.Errorf("history: axe-core: %s", strings.Join(vs, "; "))
					}
					if w, _ := eval[int64](ctx, `document.documentElement.scrollWidth`); vp.w < 600 && w > vp.w+1 {
						t.Errorf("history at %d px is %d px wide", vp.w, w)
					}

					// Filter by type and outcome: only the injury is left.
					if code := fillAndSubmit(t, ctx, "#history-filters", map[string][]string{"type": {"fall"}, "outcome": {"injury"}}); code != 200 {
						t.Fatalf("filter: HTTP %d", code)
					}
					if got := rows(); !slices.Equal(got, []string{fmt.Sprint(injury.ID)}) {
						t.Fatalf("rows of fall+injury %v, want [%d]", got, injury.ID)
					}
					if got := text(t, ctx, "tbody tr"); !strings.Contains(got, "Bruised left hip") {
						t.Errorf("filtered row %q lacks the note", got)
					}
					// Only unresolved: the open fall.
					if code := fillAndSubmit(t, ctx, "#history-filters", map[string][]string{"type": {""}, "outcome": {"unresolved"}}); code != 200 {
						t.Fatalf("filter: HTTP %d", code)
					}
					if got := rows(); !slices.Equal(got, []string{fmt.Sprint(openFall.ID)}) {
						t.Errorf("rows of unresolved %v, want [%d]", got, openFall.ID)
					}
					if code := fillAndSubmit(t, ctx, "#history-filters", map[string][]string{"type": {"fall"}, "outcome": {"injury"}}); code != 200 {
						t.Fatalf("filter: HTTP %d", code)
					}

					// The CSV of this filter, fetched with the page's session.
					csvText, err := eval[string](ctx, `fetch(document.querySelector('a.csv').href).then(r => r.ok ? r.text() : "HTTP " + r.status)`, chromedp.EvalAwaitPromise)
					if err != nil {
						t.Fatal(err)
					}
					recs, err := csv.NewReader(strings.NewReader(csvText)).ReadAll()
					if err != nil || len(recs) != 2 {
						t.Fatalf("CSV: %v, %d records: %.300s", err, len(recs), csvText)
					}
					row := map[string]string{}
					for i, h := range recs[0] {
						row[h] = recs[1][i]
					}
					loc, _ := time.LoadLocation(firmwaresim.DemoTimeZone)
					wantOpened := injury.OpenedAt.In(loc).Format(time.RFC3339)
					if row["id"] != fmt.Sprint(injury.ID) || row["type"] != "fall" || row["outcome"] != "injury" || row["opened_at"] != wantOpened ||
						!strings.HasSuffix(row["opened_at"], "+08:00") || row["note"] != "Bruised left hip; GP called" || row["resident_id"] != "res-001" {
						t.Errorf("CSV row %v, want alert %d opened %s", row, injury.ID, wantOpened)
					}

					// The timeline, from the list.
					c, cancel := within(ctx, 20*time.Second)
					_, err = chromedp.RunResponse(c, chromedp.Click(`a.timeline-link`, chromedp.NodeVisible))
					cancel()
					if err != nil {
						t.Fatalf("open the timeline: %v", err)
					}
					if p := pathname(t, ctx); p != fmt.Sprintf("/alerts/%d", injury.ID) {
						t.Fatalf("timeline path %s", p)
					}
					tl := text(t, ctx, ".full-timeline")
					wantWords := map[string][]string{"en": {"opened", "resolved", "Injury: Bruised left hip", lead}, "zh-CN": {"发生", "已关闭", "受伤：Bruised left hip", lead}}[lang]
					for _, w := range wantWords {
						if !strings.Contains(tl, w) {
							t.Errorf("timeline lacks %q: %.400s", w, tl)
						}
					}
					// A refused comment keeps its text and says why.
					if code := fillAndSubmit(t, ctx, ".comment-form", map[string][]string{"text": {"   "}}); code != http.StatusBadRequest {
						t.Errorf("empty comment: HTTP %d, want 400", code)
					}
					if e := text(t, ctx, "#comment-error"); e == "" {
						t.Error("no reason shown for the empty comment")
					}
					comment := map[string]string{"en": "Family informed, GP visit booked", "zh-CN": "已通知家属，医生下午来看"}[lang] + " (" + vp.name + ")"
					if code := fillAndSubmit(t, ctx, ".comment-form", map[string][]string{"text": {comment}}); code != 200 {
						t.Fatalf("comment: HTTP %d", code)
					}
					mu.Lock()
					comments = append(comments, comment)
					mu.Unlock()
					if got := text(t, ctx, ".full-timeline"); !strings.Contains(got, comment) {
						t.Errorf("the comment %q is not on the timeline", comment)
					}
					if got, _ := eval[string](ctx, `location.hash`); !strings.HasPrefix(got, "#comment-") {
						t.Errorf("after the comment the page is at %q", got)
					}
					shot(t, ctx, dir, fmt.Sprintf("timeline-%s-%s", vp.name, lang))
					if vs := axeRun(t, ctx, axe); len(vs) > 0 {
						t.Errorf("timeline: axe-core: %s", strings.Join(vs, "; "))
					}
					if w, _ := eval[int64](ctx, `document.documentElement.scrollWidth`); vp.w < 600 && w > vp.w+1 {
						t.Errorf("timeline at %d px is %d px wide", vp.w, w)
					}
				})
			}
		})
	}

	// Every comment made in the browser is in the API's view of the alert.
	req, _ := http.NewRequest("GET", fmt.Sprintf("%s/api/v1/alerts/%d", st.base, injury.ID), nil)
	req.Header.Set("Authorization", "Bearer browser-test-token-0123456789")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var d struct {
		Comments []alerting.Comment `json:"comments"`
	}
	if err := json.Unmarshal(b, &d); resp.StatusCode != 200 || err != nil {
		t.Fatalf("API: %d %v", resp.StatusCode, err)
	}
	// Two pages comment side by side: the API lists them in the order
	// they were stored, which is the order of their times.
	var got []string
	for i, c := range d.Comments {
		got = append(got, c.Text)
		if c.Author != st.accounts["carer"].user.Name || c.Channel != "dashboard" {
			t.Errorf("comment by %q via %q", c.Author, c.Channel)
		}
		if i > 0 && c.At.Before(d.Comments[i-1].At) {
			t.Errorf("API comment %d (%s) is older than the one before it (%s)", i, c.At, d.Comments[i-1].At)
		}
	}
	slices.Sort(comments)
	if sorted := slices.Sorted(slices.Values(got)); !slices.Equal(sorted, comments) {
		t.Errorf("API comments %q, want %q (in any order)", got, comments)
	}
}
