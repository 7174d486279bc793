package web

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/slipwayhq/slipway/internal/store"
)

// TestDeployImageForm deploys an image by reference from the project page.
func TestDeployImageForm(t *testing.T) {
	e := newTestEnv(t, envOptions{})
	e.project("api")
	c := e.client()
	c.signIn()
	p := c.get("/projects/api")
	mustContain(t, "project page", p.body, "Deploy an image", `action="/projects/api/deploy-image"`)

	r := c.post("/projects/api/deploy-image", url.Values{"image": {"api:v1"}})
	loc := r.header.Get("Location")
	if r.status != http.StatusSeeOther || !strings.HasPrefix(loc, "/deployments/") {
		t.Fatalf("deploy-image: %d to %q", r.status, loc)
	}
	d, err := e.st.GetDeployment(context.Background(), strings.TrimPrefix(loc, "/deployments/"))
	if err != nil {
		t.Fatal(err)
	}
	if d.SourceImage != "api:v1" || d.Trigger != "image" || !d.Promote || d.EnvironmentName != store.ProductionEnvironment {
		t.Errorf("deployment %+v; want image api:v1 to production", d)
	}

	before, _ := e.st.ListDeployments(context.Background(), store.DeploymentFilter{})
	c.post("/projects/api/deploy-image", url.Values{"image": {"  "}})
	if p := c.get("/projects/api"); !strings.Contains(p.body, "flash-error") {
		t.Error("an empty image reference was not refused")
	}
	if after, _ := e.st.ListDeployments(context.Background(), store.DeploymentFilter{}); len(after) != len(before) {
		t.Errorf("an empty image reference created a deployment")
	}
}
