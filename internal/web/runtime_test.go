package web

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/slipwayhq/slipway/internal/deploy"
	"github.com/slipwayhq/slipway/internal/store"
)

// A deployment's page shows its health and, when the project changed
// since it was created, offers "Redeploy to apply".
func TestDeploymentPageHealthAndRedeployToApply(t *testing.T) {
	e := newTestEnv(t, envOptions{})
	ctx := context.Background()
	c := e.client()
	c.signIn()
	p := e.project("shop")
	d := e.deploy("shop", deploy.CreateRequest{Promote: true})
	e.waitStatus(d.ID, deploy.Running)
	page := c.get("/deployments/" + d.ID)
	mustContain(t, "deployment page", page.body, `id="health"`, "st-running", "healthy", "last check", ": ok")
	if strings.Contains(page.body, "Redeploy to apply") {
		t.Error("a deployment whose project did not change offers to redeploy to apply")
	}

	if err := e.st.UpdateProjectSettings(ctx, p.ID, store.ProjectSettings{MemoryBytes: 128 << 20}); err != nil {
		t.Fatal(err)
	}
	page = c.get("/deployments/" + d.ID)
	mustContain(t, "deployment page after a settings change", page.body, "Settings changed", "(memoryBytes)", "Redeploy to apply",
		`action="/deployments/`+d.ID+`/redeploy"`)
	r := c.post("/deployments/"+d.ID+"/redeploy", nil)
	if r.status != http.StatusSeeOther || !strings.HasPrefix(r.header.Get("Location"), "/deployments/") {
		t.Fatalf("redeploy: %d %q", r.status, r.header.Get("Location"))
	}
	again := e.waitStatus(strings.TrimPrefix(r.header.Get("Location"), "/deployments/"), deploy.Running)
	if again.Captured == nil || again.Captured.Settings.MemoryBytes != 128<<20 {
		t.Errorf("the redeploy did not take the new settings: %+v", again.Captured)
	}
	if page := c.get("/deployments/" + again.ID); strings.Contains(page.body, "Redeploy to apply") {
		t.Error("the redeployed deployment still offers to redeploy to apply")
	}
}
