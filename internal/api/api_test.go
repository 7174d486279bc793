package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/internal/build/buildtest"
	"github.com/slipwayhq/slipway/internal/deploy"
	"github.com/slipwayhq/slipway/internal/project"
	"github.com/slipwayhq/slipway/internal/router"
	"github.com/slipwayhq/slipway/internal/runtime/fake"
	"github.com/slipwayhq/slipway/internal/secrets"
	"github.com/slipwayhq/slipway/internal/source"
	"github.com/slipwayhq/slipway/internal/store"
)

const token = "sw_test"

type testServer struct {
	t   *testing.T
	url string
	st  *store.Store
}

func newTestServer(t *testing.T, maxUpload int64) *testServer {
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
	ctl, err := deploy.New(deploy.Config{Store: st, Builder: buildtest.New(), Driver: fake.New(fake.Config{}),
		Routes: &router.Table{}, Registry: "127.0.0.1:7300", DataDir: data, Secrets: box, Log: quiet})
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
	srv := httptest.NewServer(New(Config{Store: st, Deploy: ctl, Projects: rules, RouterPort: 8080, MaxUploadBytes: maxUpload, Log: quiet}).Handler())
	t.Cleanup(srv.Close)
	return &testServer{t: t, url: srv.URL, st: st}
}

func (s *testServer) do(method, path, tok string, body io.Reader) (int, []byte) {
	s.t.Helper()
	req, _ := http.NewRequest(method, s.url+path, body)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func errorCode(b []byte) string {
	var env struct{ Error *Error }
	if json.Unmarshal(b, &env) != nil || env.Error == nil || env.Error.Message == "" {
		return ""
	}
	return env.Error.Code
}

func tarball(t *testing.T) *bytes.Buffer {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\n"), 0o644)
	var buf bytes.Buffer
	if err := source.Pack(dir, &buf); err != nil {
		t.Fatal(err)
	}
	return &buf
}

func TestErrorsUseOneEnvelope(t *testing.T) {
	s := newTestServer(t, 0)
	s.do("POST", "/api/v1/projects", token, strings.NewReader(`{"name":"web"}`))
	huge := bytes.Repeat([]byte{0x1f, 0x8b}, 600)
	tests := []struct {
		name, method, path, token string
		body                      io.Reader
		status                    int
		code                      string
	}{
		{"no token", "GET", "/api/v1/projects", "", nil, 401, CodeUnauthorized},
		{"bad token", "GET", "/api/v1/projects", "sw_wrong", nil, 401, CodeUnauthorized},
		{"unknown project", "GET", "/api/v1/projects/nope", token, nil, 404, CodeNotFound},
		{"unknown deployment", "GET", "/api/v1/deployments/aaaaaaaaaaaa", token, nil, 404, CodeNotFound},
		{"unknown endpoint", "GET", "/api/v1/nothing", token, nil, 404, CodeNotFound},
		{"invalid name", "POST", "/api/v1/projects", token, strings.NewReader(`{"name":"Not_A_Label"}`), 400, CodeBadRequest},
		{"id-shaped name", "POST", "/api/v1/projects", token, strings.NewReader(`{"name":"abcdefghijkl"}`), 400, CodeBadRequest},
		{"unknown field", "POST", "/api/v1/projects", token, strings.NewReader(`{"name":"x","extra":1}`), 400, CodeBadRequest},
		{"malformed JSON", "POST", "/api/v1/projects", token, strings.NewReader(`{"name":`), 400, CodeBadRequest},
		{"duplicate project", "POST", "/api/v1/projects", token, strings.NewReader(`{"name":"web"}`), 409, CodeConflict},
		{"upload to unknown project", "POST", "/api/v1/projects/nope/deployments", token, strings.NewReader("x"), 404, CodeNotFound},
		{"upload not gzip", "POST", "/api/v1/projects/web/deployments", token, strings.NewReader("plain text"), 400, CodeInvalidSource},
		{"upload too large", "POST", "/api/v1/projects/web/deployments", token, bytes.NewReader(huge), 413, CodeTooLarge},
		{"bad status filter", "GET", "/api/v1/projects/web/deployments?status=DONE", token, nil, 400, CodeBadRequest},
		{"bad log direction", "GET", "/api/v1/deployments/aaaaaaaaaaaa/logs?direction=up", token, nil, 404, CodeNotFound},
	}
	s2 := newTestServer(t, 1024) // a tiny upload limit for "upload too large"
	s2.do("POST", "/api/v1/projects", token, strings.NewReader(`{"name":"web"}`))
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := s
			if tc.code == CodeTooLarge {
				srv = s2
			}
			status, b := srv.do(tc.method, tc.path, tc.token, tc.body)
			if status != tc.status || errorCode(b) != tc.code {
				t.Errorf("got %d %s, want %d %s", status, b, tc.status, tc.code)
			}
		})
	}
	if n, _ := s2.st.ListDeployments(context.Background(), store.DeploymentFilter{}); len(n) != 0 {
		t.Errorf("a rejected upload left %d deployments", len(n))
	}
}

func TestDeployAndReadLogs(t *testing.T) {
	s := newTestServer(t, 0)
	if status, b := s.do("POST", "/api/v1/projects", token, strings.NewReader(`{"name":"web"}`)); status != 201 {
		t.Fatalf("create project: %d %s", status, b)
	}
	status, b := s.do("POST", "/api/v1/projects/web/deployments?branch=main&commit=abc123&message=hi%0Athere&author=Ada", token, tarball(t))
	if status != 201 {
		t.Fatalf("create deployment: %d %s", status, b)
	}
	var d Deployment
	json.Unmarshal(b, &d)
	if d.Status != "PENDING" || d.Commit.Message != "hi\nthere" || d.URL != "http://"+d.ID+".slipway.localhost:8080" {
		t.Fatalf("created: %+v", d)
	}

	// Follow the build log live: the stream ends with the final deployment.
	req, _ := http.NewRequest("GET", s.url+"/api/v1/deployments/"+d.ID+"/build-logs?follow=true", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("content type %q", ct)
	}
	var events []string
	var final Deployment
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if ev, ok := strings.CutPrefix(line, "event: "); ok {
			events = append(events, ev)
		}
		if data, ok := strings.CutPrefix(line, "data: "); ok && len(events) > 0 && events[len(events)-1] == "end" {
			json.Unmarshal([]byte(data), &final)
		}
	}
	resp.Body.Close()
	if len(events) == 0 || events[len(events)-1] != "end" || final.Status != "RUNNING" {
		t.Fatalf("events %v, final %+v", events, final)
	}
	if len(final.Phases) != 3 || final.Phases[2].EndedAt == nil || !final.Current || len(final.URLs) != 3 {
		t.Errorf("final deployment: %+v", final)
	}

	// Build log as a page, after the stream.
	var page LogPage
	_, b = s.do("GET", "/api/v1/deployments/"+d.ID+"/build-logs", token, nil)
	json.Unmarshal(b, &page)
	if len(page.Lines) < 5 || page.Lines[0].Time.IsZero() {
		t.Errorf("build log: %s", b)
	}

	// Runtime logs, paged backward by cursor.
	var lines []store.LogLine
	for i := 0; i < 25; i++ {
		lines = append(lines, store.LogLine{DeploymentID: d.ID, Kind: store.LogRuntime, Stream: "stdout", Time: time.Now(), Text: "line"})
	}
	s.st.AppendLogs(context.Background(), lines)
	seen := map[int64]bool{}
	cursor := ""
	for pages := 0; pages < 10; pages++ {
		_, b = s.do("GET", "/api/v1/deployments/"+d.ID+"/logs?limit=10"+cursor, token, nil)
		var p LogPage
		json.Unmarshal(b, &p)
		for i, l := range p.Lines {
			if seen[l.ID] || (i > 0 && l.ID >= p.Lines[i-1].ID) {
				t.Fatalf("page out of order or repeated: %s", b)
			}
			seen[l.ID] = true
		}
		if p.Next == 0 {
			break
		}
		cursor = "&cursor=" + itoa(p.Next)
	}
	if len(seen) < 25 {
		t.Errorf("paged through %d runtime lines, want at least 25", len(seen))
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

// TestAPIDocCoversRoutes keeps docs/API.md true to the routes served.
func TestAPIDocCoversRoutes(t *testing.T) {
	doc, err := os.ReadFile("../../docs/API.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, rt := range (&Server{}).routes() {
		if !bytes.Contains(doc, []byte("`"+rt.pattern+"`")) {
			t.Errorf("docs/API.md does not document %s", rt.pattern)
		}
	}
	for _, code := range []string{CodeBadRequest, CodeUnauthorized, CodeNotFound, CodeConflict, CodeTooLarge, CodeInternal, CodeInvalidSource} {
		if !bytes.Contains(doc, []byte("`"+code+"`")) {
			t.Errorf("docs/API.md does not list error code %s", code)
		}
	}
}

func TestEnvironmentsVariablesDomainsSettings(t *testing.T) {
	s := newTestServer(t, 0)
	s.do("POST", "/api/v1/projects", token, strings.NewReader(`{"name":"web"}`))
	s.do("POST", "/api/v1/projects", token, strings.NewReader(`{"name":"api"}`))
	steps := []struct {
		method, path, body string
		status             int
		contains           string
	}{
		{"POST", "/api/v1/projects/web/environments", `{"name":"staging","branches":["develop"]}`, 201, `"url": "http://web-staging.slipway.localhost:8080"`},
		{"POST", "/api/v1/projects/web/environments", `{"name":"staging"}`, 409, CodeConflict},
		{"PATCH", "/api/v1/projects/web/environments/staging", `{"branches":["develop","next"]}`, 200, `"next"`},
		// A branch deploys to one environment: through the API as through the dashboard.
		{"POST", "/api/v1/projects/web/environments", `{"name":"preview","branches":["next"]}`, 409, CodeConflict},
		{"PATCH", "/api/v1/projects/web/environments/staging", `{"branches":["develop","main"]}`, 409, CodeConflict},
		{"GET", "/api/v1/projects/web/environments", ``, 200, `"develop",
      "next"`},
		{"GET", "/api/v1/projects/web/environments", ``, 200, `"main"`},
		{"PUT", "/api/v1/projects/web/environments/staging/variables/API_KEY", `{"value":"sk_live_abcdefghijkl","secret":true}`, 200, `"value": "••••••jkl"`},
		{"PUT", "/api/v1/projects/web/environments/staging/variables/LOG_LEVEL", `{"value":"debug"}`, 200, `"value": "debug"`},
		{"PUT", "/api/v1/projects/web/environments/staging/variables/PORT", `{"value":"1"}`, 400, CodeBadRequest},
		{"PUT", "/api/v1/projects/web/environments/staging/variables/1BAD", `{"value":"1"}`, 400, CodeBadRequest},
		{"DELETE", "/api/v1/projects/web/environments/staging/variables/LOG_LEVEL", ``, 204, ``},
		{"DELETE", "/api/v1/projects/web/environments/staging/variables/LOG_LEVEL", ``, 404, CodeNotFound},
		{"POST", "/api/v1/projects/web/environments/staging/domains", `{"name":"staging.example.com"}`, 201, `"staging.example.com"`},
		{"POST", "/api/v1/projects/api/environments/production/domains", `{"name":"staging.example.com"}`, 409, CodeConflict},
		{"POST", "/api/v1/projects/web/environments/staging/domains", `{"name":"Not A Host"}`, 400, CodeBadRequest},
		{"DELETE", "/api/v1/projects/api/environments/production/domains/staging.example.com", ``, 404, CodeNotFound},
		{"DELETE", "/api/v1/projects/web/environments/staging/domains/staging.example.com", ``, 204, ``},
		{"PUT", "/api/v1/projects/web/start-command", `{"command":"./server --port $PORT"}`, 200, `"startCommand": "./server --port $PORT"`},
		{"PATCH", "/api/v1/projects/web/settings", `{"idleTimeout":"0","healthPath":"/healthz"}`, 200, `"healthPath": "/healthz"`},
		{"GET", "/api/v1/projects/web/settings", ``, 200, `"startCommand": "./server --port $PORT"`},
		{"PATCH", "/api/v1/projects/web/settings", `{"deployWindow":"soon"}`, 400, CodeBadRequest},
		// The API refuses what the dashboard refuses (one project.ValidateSettings).
		{"PATCH", "/api/v1/projects/web/settings", `{"healthFailures":101}`, 400, `failure threshold`},
		{"PATCH", "/api/v1/projects/web/settings", `{"healthPath":"/a b"}`, 400, `health check path`},
		{"PATCH", "/api/v1/projects/web/settings", `{"startCommand":"` + strings.Repeat("x", 4097) + `"}`, 400, `longer than 4096`},
		{"PUT", "/api/v1/projects/web/start-command", `{"command":"` + strings.Repeat("x", 4097) + `"}`, 400, `longer than 4096`},
		{"GET", "/api/v1/projects/web/settings", ``, 200, `"healthPath": "/healthz"`},
		{"DELETE", "/api/v1/projects/web/start-command", ``, 200, `"idleTimeout": "0"`},
		{"GET", "/api/v1/projects/web/egress", ``, 200, `"allow": []`},
		{"POST", "/api/v1/projects/web/egress/allow", `{"rule":"10.77.0.5:5432"}`, 200, `"10.77.0.5/32:5432"`},
		{"POST", "/api/v1/projects/web/egress/allow", `{"rule":"db.internal"}`, 400, CodeBadRequest},
		{"PATCH", "/api/v1/projects/web/egress", `{"none":true}`, 200, `"none": true`},
		{"POST", "/api/v1/projects/web/egress/deny", `{"rule":"10.77.0.5/32:5432"}`, 200, `"allow": []`},
		{"POST", "/api/v1/projects/web/egress/deny", `{"rule":"10.77.0.5/32:5432"}`, 404, CodeNotFound},
		{"GET", "/api/v1/projects/web/egress", ``, 200, `"none": true`},
		{"DELETE", "/api/v1/projects/web/environments/production", ``, 400, CodeBadRequest},
		{"DELETE", "/api/v1/projects/web/environments/staging", ``, 204, ``},
		{"GET", "/api/v1/projects/web/environments/staging/variables", ``, 404, CodeNotFound},
	}
	for _, st := range steps {
		var body io.Reader
		if st.body != "" {
			body = strings.NewReader(st.body)
		}
		status, b := s.do(st.method, st.path, token, body)
		if status != st.status || !bytes.Contains(b, []byte(st.contains)) {
			t.Errorf("%s %s: %d %s; want %d containing %q", st.method, st.path, status, b, st.status, st.contains)
		}
	}
	// The secret never comes back in full.
	_, b := s.do("GET", "/api/v1/projects/web/environments/production/variables", token, nil)
	if bytes.Contains(b, []byte("sk_live")) {
		t.Errorf("secret leaked: %s", b)
	}
}
