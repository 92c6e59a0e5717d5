package dashboard

import (
	"context"
	"net/url"
	"strings"
	"testing"
)

// TestOnboardMessagesInChinese: the registry's refusals on the onboarding
// page are said in Chinese on a Chinese page (they were English), in
// English as the registry gives them on an English one.
func TestOnboardMessagesInChinese(t *testing.T) {
	t.Parallel()
	ts, _ := advOnboardServer(t)
	cookie, csrf := ts.loginAs(t, "admin")
	post := func(lang, kind string, v url.Values) (int, string) {
		t.Helper()
		if err := ts.acc.SetLang(context.Background(), "admin", lang); err != nil {
			t.Fatal(err)
		}
		v.Set("_csrf", csrf)
		resp, page := ts.postForm(t, cookie, "/admin/onboard/"+kind, v)
		return resp.StatusCode, body(page)
	}
	for _, c := range []struct {
		kind   string
		v      url.Values
		zh, en string
	}{
		{"site", url.Values{"id": {"s2"}, "name": {strings.Repeat("长", 101)}, "timezone": {"Mars/Olympus"}}, "不能超过 100 个字符。", "longer than 100 characters"},
		{"site", url.Values{"id": {"s2"}, "name": {"S"}, "timezone": {"Mars/Olympus"}}, "未知时区 Mars/Olympus", `unknown IANA zone &#34;Mars/Olympus&#34;`},
		{"site", url.Values{"id": {"s 2"}, "name": {"S"}, "timezone": {"UTC"}}, "编号 s 2 无效", "invalid id"},
		{"room", url.Values{"id": {"r2"}, "site": {"nosuch"}, "name": {"R"}}, "没有站点 nosuch。", `unknown site &#34;nosuch&#34;`},
		{"site", url.Values{"id": {"s2"}, "name": {"a\u202eb"}, "timezone": {"UTC"}}, "不能包含改变文字方向或换行的不可见字符（U&#43;202E）", "invisible direction"},
		{"retire", url.Values{"kind": {"room"}, "id": {"r101"}}, "房间 r101 仍在使用：还有 1 个床位。", "still in use"},
		{"retire", url.Values{"kind": {"device"}, "id": {"nosuch"}}, "找不到设备 nosuch。", "not found"},
	} {
		code, page := post("zh-CN", c.kind, c.v)
		if code != 400 || !strings.Contains(page, c.zh) {
			i := strings.Index(page, "field-error")
			t.Errorf("zh-CN %s %v: %d, lacks %q: %.300s", c.kind, c.v, code, c.zh, page[max(i, 0):])
		}
		code, page = post("en", c.kind, c.v)
		if code != 400 || !strings.Contains(page, c.en) {
			t.Errorf("en %s %v: %d, lacks %q", c.kind, c.v, code, c.en)
		}
	}
}
