package api

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipwayhq/slipway/internal/build/buildtest"
	"github.com/slipwayhq/slipway/internal/deploy"
	"github.com/slipwayhq/slipway/internal/drain"
	"github.com/slipwayhq/slipway/internal/notify"
	"github.com/slipwayhq/slipway/internal/project"
	"github.com/slipwayhq/slipway/internal/router"
	"github.com/slipwayhq/slipway/internal/runtime/fake"
	"github.com/slipwayhq/slipway/internal/secrets"
	"github.com/slipwayhq/slipway/internal/store"
)

// newNotifyServer is an API with notifications and log drains.
func newNotifyServer(t *testing.T) *testServer {
	t.Helper()
	data := t.TempDir()
	st, err := store.Open(filepath.Join(data, "slipway.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	st.CreateToken(context.Background(), "admin", token)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	box, err := secrets.Open(filepath.Join(data, "secret.key"))
	if err != nil {
		t.Fatal(err)
	}
	n, err := notify.New(notify.Config{Store: st, Secrets: box, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	n.Start()
	t.Cleanup(n.Close)
	dr, err := drain.New(drain.Config{Store: st, Secrets: box, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	dr.Start(context.Background())
	t.Cleanup(dr.Close)
	ctl, err := deploy.New(deploy.Config{Store: st, Builder: buildtest.New(), Driver: fake.New(fake.Config{}),
		Routes: &router.Table{}, Registry: "127.0.0.1:7300", DataDir: data, Secrets: box, Log: quiet, Observer: n, LogTap: dr})
	if err != nil {
		t.Fatal(err)
	}
	if err := ctl.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctl.Close() })
	rules, err := project.New(project.Config{Store: st, Lifecycle: ctl, Secrets: box})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(New(Config{Store: st, Deploy: ctl, Projects: rules, RouterPort: 8080, Log: quiet,
		Notify: n, Drains: dr}).Handler())
	t.Cleanup(srv.Close)
	return &testServer{t: t, url: srv.URL, st: st}
}

func TestNotificationsAPI(t *testing.T) {
	s := newNotifyServer(t)
	var got []*http.Request
	var bodies [][]byte
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got, bodies = append(got, r), append(bodies, b)
	}))
	defer recv.Close()
	s.do("POST", "/api/v1/projects", token, strings.NewReader(`{"name":"web"}`))
	s.do("POST", "/api/v1/projects", token, strings.NewReader(`{"name":"api"}`))

	code, body := s.do("POST", "/api/v1/projects/web/notifications", token,
		strings.NewReader(`{"url":"`+recv.URL+`/hook/abcd1234secret","format":"slack","events":["deployment.failed"]}`))
	var h Webhook
	if code != 201 || json.Unmarshal(body, &h) != nil || len(h.Secret) < 32 || h.Format != "slack" ||
		h.URL != recv.URL+"/…cret" || strings.Join(h.Events, ",") != "deployment.failed" {
		t.Fatalf("create: %d %s", code, body)
	}
	code, body = s.do("GET", "/api/v1/projects/web/notifications", token, nil)
	if code != 200 || strings.Contains(string(body), h.Secret) || strings.Contains(string(body), "abcd1234") || !strings.Contains(string(body), h.ID) {
		t.Errorf("list: %d %s", code, body)
	}
	if code, body := s.do("GET", "/api/v1/projects/api/notifications", token, nil); code != 200 || strings.TrimSpace(string(body)) != "[]" {
		t.Errorf("another project's list: %d %s", code, body)
	}

	code, body = s.do("POST", "/api/v1/projects/web/notifications/"+h.ID+"/test", token, nil)
	var d WebhookDelivery
	if code != 200 || json.Unmarshal(body, &d) != nil || d.State != "delivered" || d.LastStatus != 200 || d.Event != "test" || d.Webhook != h.ID {
		t.Fatalf("test: %d %s", code, body)
	}
	if len(got) != 1 || !notify.Verify([]byte(h.Secret), bodies[0], got[0].Header.Get(notify.SignatureHeader)) ||
		!strings.Contains(string(bodies[0]), `"text":":wave: web: a test notification from Slipway"`) {
		t.Errorf("received %d requests: %s", len(got), bodies)
	}
	code, body = s.do("GET", "/api/v1/projects/web/notifications/"+h.ID+"/deliveries", token, nil)
	var ds []WebhookDelivery
	if code != 200 || json.Unmarshal(body, &ds) != nil || len(ds) != 1 || ds[0].ID != d.ID {
		t.Errorf("deliveries: %d %s", code, body)
	}

	for _, c := range []struct {
		method, path, body string
		status             int
	}{
		{"POST", "/api/v1/projects/web/notifications", `{"url":"ftp://x"}`, 400},
		{"POST", "/api/v1/projects/web/notifications", `{"url":"https://x.example","events":["nope"]}`, 400},
		{"POST", "/api/v1/projects/api/notifications/" + h.ID + "/test", ``, 404},
		{"GET", "/api/v1/projects/api/notifications/" + h.ID + "/deliveries", ``, 404},
		{"DELETE", "/api/v1/projects/api/notifications/" + h.ID, ``, 404},
		{"DELETE", "/api/v1/projects/web/notifications/" + h.ID, ``, 204},
		{"DELETE", "/api/v1/projects/web/notifications/" + h.ID, ``, 404},
		{"GET", "/api/v1/projects/nope/notifications", ``, 404},
	} {
		if code, body := s.do(c.method, c.path, token, strings.NewReader(c.body)); code != c.status {
			t.Errorf("%s %s: %d %s", c.method, c.path, code, body)
		}
	}
}

func TestLogDrainsAPI(t *testing.T) {
	s := newNotifyServer(t)
	s.do("POST", "/api/v1/projects", token, strings.NewReader(`{"name":"web"}`))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, bad := range []string{`{"url":"syslog://127.0.0.1"}`, `{"url":"tcp://127.0.0.1:514"}`, `{"url":"https://x.example","ca":"nope"}`} {
		if code, body := s.do("POST", "/api/v1/projects/web/drains", token, strings.NewReader(bad)); code != 400 || errorCode(body) != CodeBadRequest {
			t.Errorf("%s: %d %s", bad, code, body)
		}
	}
	code, body := s.do("POST", "/api/v1/projects/web/drains", token, strings.NewReader(`{"url":"syslog://`+ln.Addr().String()+`"}`))
	var d LogDrain
	if code != 201 || json.Unmarshal(body, &d) != nil || d.Kind != "syslog" || d.TLS || d.URL != "syslog://"+ln.Addr().String() {
		t.Fatalf("create: %d %s", code, body)
	}
	code, body = s.do("GET", "/api/v1/projects/web/drains", token, nil)
	var ds []LogDrain
	if code != 200 || json.Unmarshal(body, &ds) != nil || len(ds) != 1 || ds[0].ID != d.ID || !strings.Contains(string(body), `"dropped": 0`) {
		t.Errorf("list: %d %s", code, body)
	}
	if code, body := s.do("DELETE", "/api/v1/projects/web/drains/"+d.ID, token, nil); code != 204 {
		t.Errorf("delete: %d %s", code, body)
	}
	if code, body := s.do("GET", "/api/v1/projects/web/drains", token, nil); code != 200 || strings.TrimSpace(string(body)) != "[]" {
		t.Errorf("after delete: %d %s", code, body)
	}
}
