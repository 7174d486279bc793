package server

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/slipwayhq/slipway/internal/api"
	"github.com/slipwayhq/slipway/internal/runtime/drivertest"
)

// standInRegistry serves an in-memory registry on loopback that wants
// user:password (HTTP basic) for everything, as a private registry does.
func standInRegistry(t *testing.T, user, password string) string {
	t.Helper()
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != password {
			w.Header().Set("WWW-Authenticate", `Basic realm="stand-in"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// pushTag pushes img to ref with auth and returns its digest.
func pushTag(t *testing.T, ref string, img v1.Image, auth authn.Authenticator) string {
	t.Helper()
	tag, err := name.NewTag(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, img, remote.WithAuth(auth)); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

func (h *harness) deployImage(project, ref string) api.Deployment {
	h.t.Helper()
	var d api.Deployment
	if code := h.call("POST", "/api/v1/projects/"+project+"/deployments", api.CreateImageDeploymentRequest{Image: ref}, &d); code != http.StatusCreated {
		h.t.Fatalf("deploying image %s: %d", ref, code)
	}
	if d.Trigger != "image" || d.Source == nil || d.Source.Image != ref {
		h.t.Errorf("new image deployment: trigger %q, source %+v; want image, %s", d.Trigger, d.Source, ref)
	}
	return h.wait(d.ID)
}

// TestDeployImage deploys prebuilt images by reference: from another
// registry (with the project's credential for it), then from Slipway's own
// registry where a user pushed it, and checks the failures a user meets.
func TestDeployImage(t *testing.T) {
	h := startServer(t)
	bin := drivertest.BuildApp(t)
	files := drivertest.Layer(t, drivertest.AppFiles(t, bin)...)
	cfg := drivertest.AppConfig()
	cfg.Env = append(cfg.Env, "IMAGE_VERSION=v1")
	imgV1 := drivertest.Image(t, cfg, files)
	cfg2 := drivertest.AppConfig()
	cfg2.Env = append(cfg2.Env, "IMAGE_VERSION=v2")
	imgV2 := drivertest.Image(t, cfg2, files)

	remoteHost := standInRegistry(t, "robot", "s3cret")
	ref := remoteHost + "/team/app:v1"
	digestV1 := pushTag(t, ref, imgV1, &authn.Basic{Username: "robot", Password: "s3cret"})

	h.call("POST", "/api/v1/projects", api.CreateProjectRequest{Name: "imaged"}, nil)

	// Without a credential the stand-in refuses: FAILED, saying so.
	d := h.deployImage("imaged", ref)
	if d.Status != "FAILED" || !strings.Contains(d.FailureReason, ref) || !strings.Contains(d.FailureReason, "denied") {
		t.Fatalf("deploying %s without credentials: %s %q; want FAILED, denied, naming the reference", ref, d.Status, d.FailureReason)
	}

	var creds []api.RegistryCredential
	if code := h.call("PUT", "/api/v1/projects/imaged/registry-credentials/"+remoteHost,
		api.RegistryCredentialRequest{Username: "robot", Password: "s3cret"}, &creds); code != http.StatusOK {
		t.Fatalf("setting the registry credential: %d", code)
	}
	code, b := h.do("GET", "/api/v1/projects/imaged/registry-credentials", nil, "")
	if code != http.StatusOK || strings.Contains(string(b), "s3cret") || !strings.Contains(string(b), `"robot"`) {
		t.Errorf("GET registry-credentials = %d %s; want the user name and never the password", code, b)
	}

	d = h.deployImage("imaged", ref)
	if d.Status != "RUNNING" {
		for _, l := range h.buildLog(d.ID) {
			t.Log(l.Text)
		}
		t.Fatalf("deploying %s: %s %s", ref, d.Status, d.FailureReason)
	}
	if d.Source == nil || d.Source.Digest != digestV1 || d.ImageDigest != digestV1 {
		t.Errorf("source %+v, image digest %s; want %s", d.Source, d.ImageDigest, digestV1)
	}
	if !strings.Contains(d.Image, "/imaged@"+digestV1) || strings.Contains(d.Image, remoteHost) {
		t.Errorf("image %s: want the copy in Slipway's registry (…/imaged@%s)", d.Image, digestV1)
	}
	if d.Builder != "image" || d.StartCommand != "" || d.DetectedStartCommand != "/app" {
		t.Errorf("builder %q, start command %q, detected %q; want image, the image's own (/app)", d.Builder, d.StartCommand, d.DetectedStartCommand)
	}
	if code, body, err := h.body("imaged.slipway.localhost", "/env?name=IMAGE_VERSION"); err != nil || code != 200 || body != "v1" {
		t.Fatalf("GET imaged.slipway.localhost/env = %d %q %v; want v1", code, body, err)
	}
	if code, body := h.get(d.ID + ".slipway.localhost"); code != 200 || !strings.Contains(body, "hello from") {
		t.Errorf("preview URL: %d %q", code, body)
	}
	first := d

	// The tag moves; a redeploy of the first deployment still runs what it
	// ran, from Slipway's registry.
	pushTag(t, ref, imgV2, &authn.Basic{Username: "robot", Password: "s3cret"})
	var re api.Deployment
	if code := h.call("POST", "/api/v1/deployments/"+first.ID+"/redeploy", nil, &re); code >= 300 {
		t.Fatalf("redeploying %s: %d", first.ID, code)
	}
	re = h.wait(re.ID)
	if re.Status != "RUNNING" || re.ImageDigest != digestV1 || re.Source == nil || re.Source.Image != ref {
		t.Fatalf("redeploy: %s %q digest %s source %+v; want RUNNING on %s", re.Status, re.FailureReason, re.ImageDigest, re.Source, digestV1)
	}

	// A missing tag fails, naming the reference; the last good
	// deployment keeps serving.
	missing := remoteHost + "/team/app:nope"
	d = h.deployImage("imaged", missing)
	if d.Status != "FAILED" || !strings.Contains(d.FailureReason, missing) || !strings.Contains(d.FailureReason, "not found") {
		t.Errorf("deploying %s: %s %q; want FAILED, not found, naming the reference", missing, d.Status, d.FailureReason)
	}
	if code, body, err := h.body("imaged.slipway.localhost", "/env?name=IMAGE_VERSION"); err != nil || code != 200 || body != "v1" {
		t.Errorf("after a failed image deploy, GET imaged.slipway.localhost/env = %d %q %v; want v1", code, body, err)
	}

	// Slipway's own registry: a user pushes with an API token, and
	// deploys PROJECT/NAME:TAG.
	apiHost := strings.TrimPrefix(h.api, "http://")
	digestV2 := pushTag(t, apiHost+"/imaged/web:v2", imgV2, &authn.Basic{Username: "me", Password: testToken})
	d = h.deployImage("imaged", "imaged/web:v2")
	if d.Status != "RUNNING" || d.ImageDigest != digestV2 {
		t.Fatalf("deploying imaged/web:v2 from Slipway's registry: %s %q digest %s; want RUNNING on %s", d.Status, d.FailureReason, d.ImageDigest, digestV2)
	}
	if code, body, err := h.body("imaged.slipway.localhost", "/env?name=IMAGE_VERSION"); err != nil || code != 200 || body != "v2" {
		t.Errorf("GET imaged.slipway.localhost/env = %d %q %v; want v2", code, body, err)
	}

	// Another project's repository is not this project's to deploy.
	h.call("POST", "/api/v1/projects", api.CreateProjectRequest{Name: "intruder"}, nil)
	d = h.deployImage("intruder", "imaged/web:v2")
	if d.Status != "FAILED" || !strings.Contains(d.FailureReason, "imaged/web:v2") || !strings.Contains(d.FailureReason, "own repositories") {
		t.Errorf("deploying another project's image: %s %q; want FAILED", d.Status, d.FailureReason)
	}
}
