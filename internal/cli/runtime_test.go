package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/slipwayhq/slipway/internal/api"
)

// After a variable or the start command changes, the CLI says the running
// deployment keeps what it was created with and how to apply the change;
// `slipway deployments ID` shows that and its health.
func TestRedeployToApplyAndHealth(t *testing.T) {
	startAPI(t)
	dir := gitRepo(t, map[string]string{"Dockerfile": "FROM scratch\n"})
	if out, _, err := run(t, "deploy", dir, "--project", "web"); err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	out, _, _ := run(t, "deployments", "--project", "web", "--json")
	var ds []api.Deployment
	if err := json.Unmarshal([]byte(out), &ds); err != nil || len(ds) != 1 {
		t.Fatalf("deployments --json: %v %s", err, out)
	}
	id := ds[0].ID
	out, _, err := run(t, "deployments", id)
	if err != nil || !strings.Contains(out, "Health") || !strings.Contains(out, "running, healthy; last check") || strings.Contains(out, "redeploy to apply") {
		t.Errorf("deployments ID, freshly deployed: %v\n%s", err, out)
	}

	out, _, err = run(t, "env", "set", "production", "GREETING=two", "-p", "web")
	want := "Deployment " + id + " (current on production) keeps running as it was created; redeploy to apply: slipway redeploy " + id
	if err != nil || !strings.Contains(out, want) {
		t.Errorf("env set: %v\n%s\nwant %q", err, out, want)
	}
	out, _, err = run(t, "start-command", "set", "./serve", "-p", "web")
	if err != nil || !strings.Contains(out, want) {
		t.Errorf("start-command set: %v\n%s", err, out)
	}
	out, _, err = run(t, "deployments", id)
	if err != nil || !strings.Contains(out, "changed since it was created (startCommand, variables); redeploy to apply: slipway redeploy "+id) {
		t.Errorf("deployments ID after the changes: %v\n%s", err, out)
	}
}
