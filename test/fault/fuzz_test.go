package fault

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/internal/api"
	"github.com/slipwayhq/slipway/internal/build/buildtest"
	"github.com/slipwayhq/slipway/internal/deploy"
	"github.com/slipwayhq/slipway/internal/project"
	"github.com/slipwayhq/slipway/internal/router"
	"github.com/slipwayhq/slipway/internal/runtime/fake"
	"github.com/slipwayhq/slipway/internal/secrets"
	"github.com/slipwayhq/slipway/internal/source"
	"github.com/slipwayhq/slipway/internal/source/github"
	"github.com/slipwayhq/slipway/internal/store"
)

// The API's fuzz target: any request, authenticated or not, to any
// endpoint docs/API.md documents, with any path values, query and body.
// The API must never panic and never answer 500 (which means a server
// fault, not bad input); every error must come in the one JSON envelope
// with a code and a message, and every JSON answer must be valid JSON.
//
// It runs against the real API handler and deployment controller, with the
// stand-in builder (buildtest) and the fake runtime driver.

const fuzzToken = "sw_fuzz_token"

// apiRoute is an endpoint documented in docs/API.md.
type apiRoute struct{ method, pattern string }

var routeRE = regexp.MustCompile("^### `(GET|POST|PUT|PATCH|DELETE) (/api/v1/[^`]*)`")

func documentedRoutes(tb testing.TB) []apiRoute {
	f, err := os.Open(filepath.Join("..", "..", "docs", "API.md"))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var out []apiRoute
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := routeRE.FindStringSubmatch(sc.Text()); m != nil {
			out = append(out, apiRoute{m[1], m[2]})
		}
	}
	if len(out) < 5 {
		tb.Fatalf("found only %d routes in docs/API.md", len(out))
	}
	return out
}

// fuzzAPI is an API handler over a store in a temporary directory, with a
// project "web" (environments production and staging) and one deployment.
type fuzzAPI struct {
	h      http.Handler
	routes []apiRoute
	depID  string
}

var fuzzSetup struct {
	once sync.Once
	dir  string // removed by TestMain
	api  *fuzzAPI
	err  error
}

func newFuzzAPI(tb testing.TB) *fuzzAPI {
	fuzzSetup.once.Do(func() {
		// On tmpfs when there is one: the store syncs every write.
		tmp := ""
		if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
			tmp = "/dev/shm"
		}
		dir, err := os.MkdirTemp(tmp, "slipway-fuzz-api-")
		if err != nil {
			fuzzSetup.err = err
			return
		}
		// The directory lives as long as the process (fuzz workers run
		// many inputs against one setup); TestMain removes it.
		fuzzSetup.dir = dir
		st, err := store.Open(filepath.Join(dir, "slipway.db"))
		if err != nil {
			fuzzSetup.err = err
			return
		}
		ctx := context.Background()
		st.CreateToken(ctx, "admin", fuzzToken)
		box, err := secrets.Open(filepath.Join(dir, "secret.key"))
		if err != nil {
			fuzzSetup.err = err
			return
		}
		quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
		ctl, err := deploy.New(deploy.Config{Store: st, Builder: buildtest.New(), Driver: fake.New(fake.Config{}),
			Routes: &router.Table{}, Registry: "127.0.0.1:7300", DataDir: dir, Secrets: box, Log: quiet})
		if err != nil {
			fuzzSetup.err = err
			return
		}
		if err := ctl.Start(ctx); err != nil {
			fuzzSetup.err = err
			return
		}
		rules, err := project.New(project.Config{Store: st, Lifecycle: ctl, Secrets: box})
		if err != nil {
			fuzzSetup.err = err
			return
		}
		a := &fuzzAPI{h: api.New(api.Config{Store: st, Deploy: ctl, Projects: rules, Secrets: box, RouterPort: 8080, MaxUploadBytes: 1 << 20, Log: quiet}).Handler()}
		a.routes = documentedRoutes(tb)
		// A project with a deployment, so that valid paths reach deep.
		a.serve(ctx, "POST", "/api/v1/projects", "", []byte(`{"name":"web"}`), true)
		a.serve(ctx, "POST", "/api/v1/projects/web/environments", "", []byte(`{"name":"staging","branches":["dev"]}`), true)
		src := filepath.Join(dir, "src")
		os.MkdirAll(src, 0o755)
		os.WriteFile(filepath.Join(src, "Dockerfile"), []byte("FROM scratch\n"), 0o644)
		var tgz bytes.Buffer
		if err := source.Pack(src, &tgz); err != nil {
			fuzzSetup.err = err
			return
		}
		rec := a.serve(ctx, "POST", "/api/v1/projects/web/deployments", "", tgz.Bytes(), true)
		var d api.Deployment
		if err := json.Unmarshal(rec.Body.Bytes(), &d); err != nil || d.ID == "" {
			fuzzSetup.err = err
			return
		}
		a.depID = d.ID
		fuzzSetup.api = a
	})
	if fuzzSetup.err != nil {
		tb.Fatal(fuzzSetup.err)
	}
	return fuzzSetup.api
}

func (a *fuzzAPI) serve(ctx context.Context, method, path, rawQuery string, body []byte, auth bool) *httptest.ResponseRecorder {
	ctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond) // ends log streams
	defer cancel()
	u := &url.URL{Scheme: "http", Host: "api.invalid", Path: path, RawQuery: rawQuery}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil
	}
	if auth {
		req.Header.Set("Authorization", "Bearer "+fuzzToken)
	}
	if len(body) >= 2 && body[0] == 0x1f && body[1] == 0x8b {
		req.Header.Set("Content-Type", "application/gzip")
	} else {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := httptest.NewRecorder()
	a.h.ServeHTTP(rec, req)
	return rec
}

// path fills the route's {placeholders}: with valid values when valid is
// set, else with arg.
func (a *fuzzAPI) path(r apiRoute, valid bool, arg string) string {
	good := map[string]string{"project": "web", "env": "staging", "id": a.depID, "name": "FUZZ_VAR", "domain": "www.example.com"}
	return regexp.MustCompile(`\{([a-z]+)\}`).ReplaceAllStringFunc(r.pattern, func(m string) string {
		if valid {
			return good[strings.Trim(m, "{}")]
		}
		return arg
	})
}

func FuzzAPIRequest(f *testing.F) {
	a := newFuzzAPI(f)
	// Bodies of every documented shape, and some that are no shape at all;
	// each route gets a few of them.
	bodies := [][]byte{[]byte(`{"name":"x"}`), []byte(`{"value":"v","secret":true}`), []byte(`{"branches":["a","b"]}`),
		[]byte(`{"command":"sleep 1"}`), []byte(`{"idleTimeout":"-1s","memoryBytes":-5,"deployWindow":"forever"}`),
		[]byte(`{"rebuild":true}`), []byte(`{"url":"https://github.com/octo/app","secret":"s"}`), nil, []byte(`null`),
		[]byte(`{"name":1}`), []byte(strings.Repeat("[", 10000)), []byte(`{"name":"` + strings.Repeat("a", 70) + `"}`)}
	for i := range a.routes {
		f.Add(uint8(i), true, true, "", "", bodies[i%len(bodies)])
		f.Add(uint8(i), true, true, "", "", bodies[(i+5)%len(bodies)])
		f.Add(uint8(i), false, true, "..", "limit=0&before=x&status=nope&direction=up&cursor=-1", []byte(`{"name":"../x"}`))
		f.Add(uint8(i), true, false, "", "", []byte(`{}`))
	}
	f.Fuzz(func(t *testing.T, sel uint8, valid, auth bool, arg, query string, body []byte) {
		r := a.routes[int(sel)%len(a.routes)]
		path := a.path(r, valid, arg)
		rec := a.serve(context.Background(), r.method, path, query, body, auth)
		if rec == nil {
			return // not a URL a client could send
		}
		checkAnswer(t, r.method+" "+path+"?"+query, rec)
	})
}

// checkAnswer holds the API to its contract on one answer.
func checkAnswer(t *testing.T, what string, rec *httptest.ResponseRecorder) {
	t.Helper()
	code, b := rec.Code, rec.Body.Bytes()
	if code >= 500 {
		t.Fatalf("%s: %d %s", what, code, b)
	}
	ct := rec.Header().Get("Content-Type")
	if code >= 400 {
		var env struct {
			Error *struct{ Code, Message string }
		}
		if err := json.Unmarshal(b, &env); err != nil || env.Error == nil || env.Error.Code == "" || env.Error.Message == "" {
			t.Fatalf("%s: %d without the error envelope: %q", what, code, b)
		}
		return
	}
	if strings.HasPrefix(ct, "application/json") && len(bytes.TrimSpace(b)) > 0 && !json.Valid(b) {
		t.Fatalf("%s: %d with invalid JSON %q", what, code, b)
	}
}

// The GitHub webhook's fuzz target: any delivery for a linked project,
// signed with the right secret or not. Unsigned or wrongly signed
// deliveries are refused with 401 and queue nothing; nothing panics or
// answers 5xx; every answer is the small JSON object; only a 202 queues an
// event, and a queued event is a branch push of the linked repository.
func FuzzGitHubWebhook(f *testing.F) {
	secret := []byte("fuzz-secret")
	var queued []github.PushEvent
	var mu sync.Mutex
	h, err := github.New(github.Config{
		Lookup: func(ctx context.Context, project string) (github.Link, bool, error) {
			return github.Link{Secret: secret, Repository: "octo/app"}, project == "web", nil
		},
		Enqueue: func(ctx context.Context, ev github.PushEvent) error {
			mu.Lock()
			queued = append(queued, ev)
			mu.Unlock()
			return nil
		},
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		f.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("POST /hooks/github/{project}", h)

	push := `{"ref":"refs/heads/main","before":"0000000000000000000000000000000000000000","after":"1111111111111111111111111111111111111111",` +
		`"repository":{"full_name":"octo/app","clone_url":"https://github.com/octo/app.git"},` +
		`"head_commit":{"message":"hi","author":{"name":"Ada","email":"ada@example.com"}}}`
	for _, seed := range []struct {
		event, body string
		signed      bool
	}{
		{"push", push, true},
		{"push", push, false},
		{"ping", `{"zen":"hi"}`, true},
		{"push", strings.Replace(push, "refs/heads/main", "refs/tags/v1", 1), true},
		{"push", strings.Replace(push, "octo/app", "evil/app", 1), true},
		{"push", `{"ref":`, true},
		{"push", "payload=" + url.QueryEscape(push), true},
		{"issues", `{}`, true},
	} {
		f.Add(seed.event, []byte(seed.body), seed.signed, "delivery-1", strings.HasPrefix(seed.body, "payload="))
	}
	f.Fuzz(func(t *testing.T, event string, body []byte, signed bool, delivery string, form bool) {
		mu.Lock()
		before := len(queued)
		mu.Unlock()
		req := httptest.NewRequest("POST", "/hooks/github/web", bytes.NewReader(body))
		if form {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		} else {
			req.Header.Set("Content-Type", "application/json")
		}
		req.Header.Set("X-GitHub-Event", event)
		req.Header.Set("X-GitHub-Delivery", delivery)
		if signed {
			req.Header.Set("X-Hub-Signature-256", github.Sign(secret, body))
		} else {
			req.Header.Set("X-Hub-Signature-256", github.Sign([]byte("wrong"), body))
		}
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		mu.Lock()
		added := queued[before:]
		mu.Unlock()
		var ans struct{ Status string }
		if err := json.Unmarshal(rec.Body.Bytes(), &ans); err != nil || ans.Status == "" {
			t.Fatalf("answer %d is not the JSON object: %q", rec.Code, rec.Body.Bytes())
		}
		if rec.Code >= 500 {
			t.Fatalf("%d %q", rec.Code, rec.Body.Bytes())
		}
		if !signed && (rec.Code != http.StatusUnauthorized || len(added) > 0) {
			t.Fatalf("a delivery with a wrong signature got %d and queued %d events", rec.Code, len(added))
		}
		if (rec.Code == http.StatusAccepted) != (len(added) == 1) || len(added) > 1 {
			t.Fatalf("%d %q with %d events queued", rec.Code, rec.Body.Bytes(), len(added))
		}
		for _, ev := range added {
			if ev.Branch == "" || ev.Deleted || !github.SameRepository(ev.Repository, "octo/app") || ev.Project != "web" {
				t.Fatalf("queued %+v", ev)
			}
		}
	})
}
