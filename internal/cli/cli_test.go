package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/slipwayhq/slipway/internal/api"
	"github.com/slipwayhq/slipway/internal/build/buildtest"
	"github.com/slipwayhq/slipway/internal/deploy"
	"github.com/slipwayhq/slipway/internal/project"
	"github.com/slipwayhq/slipway/internal/router"
	"github.com/slipwayhq/slipway/internal/runtime/fake"
	"github.com/slipwayhq/slipway/internal/secrets"
	"github.com/slipwayhq/slipway/internal/store"
)

// startAPI serves the real API over a real store and controller, with the
// test builder and the fake runtime in place of BuildKit and runc.
func startAPI(t *testing.T) {
	t.Helper()
	data := t.TempDir()
	st, err := store.Open(filepath.Join(data, "slipway.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	st.CreateToken(context.Background(), "admin", "sw_cli_test")
	box, _ := secrets.Open(filepath.Join(data, "secret.key"))
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctl, err := deploy.New(deploy.Config{Store: st, Builder: buildtest.New(), Driver: fake.New(fake.Config{}),
		Routes: &router.Table{}, Registry: "127.0.0.1:7300", DataDir: data, Secrets: box, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ctl.Start(context.Background())
	t.Cleanup(func() { ctl.Close() })
	rules, err := project.New(project.Config{Store: st, Lifecycle: ctl, Secrets: box})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.New(api.Config{Store: st, Deploy: ctl, Projects: rules, RouterPort: 8080, Log: quiet}).Handler())
	t.Cleanup(srv.Close)
	t.Setenv("SLIPWAY_URL", srv.URL)
	t.Setenv("SLIPWAY_TOKEN", "sw_cli_test")
	t.Setenv("SLIPWAY_PROJECT", "")
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
}

func run(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root := newRoot()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(args)
	err = root.ExecuteContext(context.Background())
	return out.String(), errb.String(), err
}

func gitRepo(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644)
	}
	if _, err := exec.LookPath("git"); err != nil {
		return dir
	}
	for _, args := range [][]string{
		{"init", "-q", "-b", "main"}, {"add", "."},
		{"-c", "user.name=Ada", "-c", "user.email=ada@example.com", "commit", "-q", "-m", "add the app\n\nwith a body"},
	} {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	return dir
}

func TestDeployPrintsURLsAndRecordsGitMetadata(t *testing.T) {
	startAPI(t)
	dir := gitRepo(t, map[string]string{"Dockerfile": "FROM scratch\n", ".gitignore": "secret.txt\n", "secret.txt": "x"})
	out, _, err := run(t, "deploy", dir, "--project", "web")
	if err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	for _, want := range []string{"Created project web", "status INITIALIZING → BUILDING", "==> RUNNING", "Preview URL: http://", "http://web.slipway.localhost:8080"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	out, _, err = run(t, "deployments", "--project", "web", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var ds []api.Deployment
	if err := json.Unmarshal([]byte(out), &ds); err != nil || len(ds) != 1 {
		t.Fatalf("deployments --json: %v %s", err, out)
	}
	if _, err := exec.LookPath("git"); err == nil {
		c := ds[0].Commit
		if c.Branch != "main" || len(c.SHA) != 40 || c.Author != "Ada <ada@example.com>" || !strings.HasPrefix(c.Message, "add the app") {
			t.Errorf("commit metadata: %+v", c)
		}
	}
	// The list says the status and its summary, the current one starred.
	out, _, err = run(t, "deployments", "--project", "web")
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 2 ||
		!slices.Equal(strings.Fields(lines[0])[:3], []string{"ID", "STATUS", "SUMMARY"}) ||
		!slices.Equal(strings.Fields(lines[1])[:3], []string{ds[0].ID, "RUNNING*", "successful"}) {
		t.Errorf("deployments list:\n%s", out)
	}
	out, _, err = run(t, "logs", "--build", ds[0].ID)
	if err != nil || !strings.Contains(out, "DEPLOYING → RUNNING") {
		t.Errorf("logs --build: %v\n%s", err, out)
	}
}

func TestDeployFailureExitsNonZeroWithReason(t *testing.T) {
	startAPI(t)
	dir := gitRepo(t, map[string]string{"Dockerfile": "FROM scratch\n", "FAIL": ""})
	_, stderr, err := run(t, "deploy", dir, "--project", "web")
	var code exitCode
	if !errors.As(err, &code) || code != 1 {
		t.Fatalf("err = %v, want exit code 1", err)
	}
	if !strings.Contains(stderr, "FAILED") || !strings.Contains(stderr, "exit code: 3") {
		t.Errorf("stderr lacks the reason: %s", stderr)
	}
	if _, _, err := run(t, "deploy", dir, "--project", "other", "--no-create"); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("--no-create: %v", err)
	}
}

func TestProjectName(t *testing.T) {
	for in, want := range map[string]string{"My App": "my-app", "hello": "hello", "__": "app", "Web_Site.v2": "web-site-v2"} {
		if got := projectName(in); got != want {
			t.Errorf("projectName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEgressCommands(t *testing.T) {
	startAPI(t)
	if _, _, err := run(t, "egress", "-p", "web"); err == nil {
		t.Error("egress of a project that does not exist succeeded")
	}
	newClient().call(context.Background(), "POST", "/api/v1/projects", api.CreateProjectRequest{Name: "web"}, nil)
	out, _, err := run(t, "egress", "allow", "10.77.0.5:5432", "-p", "web")
	if err != nil || !strings.Contains(out, "allow 10.77.0.5/32:5432") {
		t.Fatalf("egress allow: %q, %v", out, err)
	}
	if _, _, err := run(t, "egress", "allow", "db.example", "-p", "web"); err == nil {
		t.Error("egress allow of a name succeeded")
	}
	out, _, err = run(t, "egress", "none", "-p", "web")
	if err != nil || !strings.Contains(out, "egress: none") {
		t.Fatalf("egress none: %q, %v", out, err)
	}
	out, _, err = run(t, "egress", "list", "-p", "web", "--json")
	if err != nil || !strings.Contains(out, `"none": true`) || !strings.Contains(out, "10.77.0.5/32:5432") {
		t.Fatalf("egress list --json: %q, %v", out, err)
	}
	if out, _, err = run(t, "egress", "deny", "10.77.0.5:5432", "-p", "web"); err != nil || strings.Contains(out, "allow ") {
		t.Fatalf("egress deny: %q, %v", out, err)
	}
	if out, _, err = run(t, "egress", "open", "-p", "web"); err != nil || !strings.Contains(out, "public internet") {
		t.Fatalf("egress open: %q, %v", out, err)
	}
}
