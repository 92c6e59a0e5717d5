package browser_test

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"

	firmwaresim "github.com/eldercare-iot/eldercare/firmware-sim"
)

// TestLongTextOnPhone: hostile or careless text does not widen the new
// pages on a 390 px phone: a handover note of one 300-character word (a
// pasted URL) with a line break, a comment of the same kind and a
// resident name of 100 characters without a space. The note keeps its
// line break (it was shown as one line, without wrapping, 4000 px wide).
func TestLongTextOnPhone(t *testing.T) {
	t.Parallel()
	st := startStack(t)
	root := browser(t)
	dir := artifactsDir(t)
	ctx0 := context.Background()

	long := "https://example.org/" + strings.Repeat("x", 280)
	res, err := st.store.Resident(ctx0, "res-001")
	if err != nil {
		t.Fatal(err)
	}
	res.Name, res.Names = strings.Repeat("W", 100), nil
	if err := st.store.PutResident(ctx0, res); err != nil {
		t.Fatal(err)
	}
	st.publishFall(t)
	a := openAlert(t, st)

	cl, csrf := sessionClient(t, st, "lead")
	resp, err := cl.PostForm(st.base+"/manager/handover/notes", url.Values{"_csrf": {csrf}, "site": {firmwaresim.DemoSite}, "note": {"first line\n" + long}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 303 {
		t.Fatalf("handover note: %d", resp.StatusCode)
	}
	resp, err = cl.PostForm(fmt.Sprintf("%s/alerts/%d/comments", st.base, a.ID), url.Values{"_csrf": {csrf}, "text": {long}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 303 {
		t.Fatalf("comment: %d", resp.StatusCode)
	}

	ctx := userContext(t, root, 390, 844)
	login(t, ctx, st, "lead")
	for _, p := range []string{"/manager/handover?lang=en", fmt.Sprintf("/alerts/%d", a.ID), "/alerts/history", "/board", "/alerts"} {
		if code := open(t, ctx, st, p); code != 200 {
			t.Fatalf("%s: HTTP %d", p, code)
		}
		shot(t, ctx, dir, "adv-long-text-"+strings.NewReplacer("/", "_", "?", "_", "=", "_").Replace(p))
		if w, _ := eval[int64](ctx, `document.documentElement.scrollWidth`); w > 391 {
			t.Errorf("%s at 390 px is %d px wide", p, w)
			wide, _ := eval[[]string](ctx, `[...document.querySelectorAll('main *')].filter(e => e.getBoundingClientRect().right > 400 && !(e.parentElement && e.parentElement.getBoundingClientRect().right > 400)).slice(0, 8).map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().width) + ' ' + (e.textContent||'').slice(0, 30))`)
			t.Logf("wide: %q", wide)
		}
	}
	open(t, ctx, st, "/manager/handover")
	if got, _ := eval[string](ctx, `document.querySelector('.handover-notes .note-body').innerText`); !strings.HasPrefix(got, "first line\n") {
		t.Errorf("the note's line break is lost: %.40q", got)
	}
}
