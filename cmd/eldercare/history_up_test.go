package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/device/registry"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// TestUpAlertHistory: in "eldercare up", a fall sent by a gateway is in
// GET /api/v1/alerts/history, takes a comment through POST
// /api/v1/alerts/{id}/comments, and GET /api/v1/alerts/{id} shows the
// comment and the alert's history; the history page answers a browser
// without a session with the login page, never 503 (the store is wired).
func TestUpAlertHistory(t *testing.T) {
	t.Parallel()
	influxURL, influxDB := sharedInflux(t)
	dir := t.TempDir()
	ctx := context.Background()
	hash, err := registry.HashPassword("gw-secret")
	if err != nil {
		t.Fatal(err)
	}
	regFile := filepath.Join(dir, "registry.yaml")
	if err := os.WriteFile(regFile, []byte(`sites:
  - id: s1
    name: Site 1
    timezone: Asia/Shanghai
    rooms:
      - id: r1
        name: Room 1
        ward: east
        beds:
          - {id: b1, name: Bed 1}
residents:
  - {id: res-1, name: Resident One, site: s1, bed: b1, names: {zh-CN: 张一}}
devices:
  - {id: gw-1, site: s1, kind: gateway}
  - {id: fd-1, site: s1, kind: fall_detector, gateway: gw-1, bed: b1}
bindings:
  - {device: fd-1, resident: res-1, from: 2020-01-01T00:00:00Z}
credentials:
  - {username: gw-1, password_hash: "`+hash+`"}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	mqttAddr, httpAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
	root := testenv.TopicRoot(t)
	const token = "history-up-token-0123456789abcdef"
	startUp(t, []string{"up", "--data", filepath.Join(dir, "data"), "--http", httpAddr, "--mqtt-listen", mqttAddr,
		"--influx", influxURL, "--influx-db", influxDB, "--registry", regFile, "--root", root, "--api-token", token, "--log-level", "info"})
	base := "http://" + httpAddr

	api := func(method, path, body string) (int, string) {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	testenv.EventuallyTrue(t, 60*time.Second, "eldercare up serves the alert history API", func() bool {
		code, _ := api("GET", "/api/v1/alerts/history", "")
		return code == 200
	})

	var g paho.Client
	testenv.EventuallyTrue(t, 60*time.Second, "eldercare up's broker accepts the gateway", func() bool {
		c, err := mqttconn.Connect(ctx, mqttconn.Options{URL: "tcp://gw-1:gw-secret@" + mqttAddr, ClientID: "gw-1", ConnectTimeout: 2 * time.Second,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			return false
		}
		g = c
		return true
	})
	defer g.Disconnect(0)
	var page struct {
		Alerts []struct {
			ID   int64  `json:"id"`
			Type string `json:"type"`
		} `json:"alerts"`
	}
	n := 0
	testenv.EventuallyTrue(t, 60*time.Second, "the fall is in the history (type=fall, ward east)", func() bool {
		n++
		now := time.Now()
		payload := fmt.Sprintf(`{"v":1,"device":"fd-1","boot":%d,"id":%d,"seq":%d,"ts":%d,"type":"fall","attrs":{"peak_accel_ms2":58.2}}`, now.Unix(), n, n, now.UnixMilli())
		topic := device.Topic{Root: root, Site: "s1", Device: "fd-1", Channel: device.ChanEvent}.String()
		if err := mqttconn.Wait(ctx, g.Publish(topic, 1, false, payload), 10*time.Second, "publish fall"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		code, body := api("GET", "/api/v1/alerts/history?type=fall&ward=east&q="+"%E5%BC%A0", "")
		return code == 200 && json.Unmarshal([]byte(body), &page) == nil && len(page.Alerts) == 1
	})
	id := page.Alerts[0].ID
	if code, body := api("POST", fmt.Sprintf("/api/v1/alerts/%d/comments", id), `{"text":"on my way"}`); code != 201 {
		t.Fatalf("comment: %d %s", code, body)
	}
	code, body := api("GET", fmt.Sprintf("/api/v1/alerts/%d", id), "")
	if code != 200 || !strings.Contains(body, `"text":"on my way"`) || !strings.Contains(body, `"action":"opened"`) {
		t.Errorf("GET alert: %d %.400s", code, body)
	}
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Get(base + "/alerts/history")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login") {
		t.Errorf("history page without a session: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
}
