//go:build !nokubernetes

package server

import (
	"context"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/slipwayhq/slipway/internal/api"
	"github.com/slipwayhq/slipway/internal/runtime/kubernetes"
	"github.com/slipwayhq/slipway/internal/runtime/kubernetes/ktest"
)

// TestKubernetesRuntime runs a server with --runtime kubernetes against a
// real node (ktest: etcd, kube-apiserver, a kubelet on containerd): it
// builds examples/go on the host, runs it as a pod that pulls from the
// server's registry with its pull secret, answers through the router,
// scales to zero (the pod is deleted) and wakes (a new pod), and a
// restarted server re-adopts the running pod without restarting it. It
// logs the wakes' times to the first 200 through the router.
func TestKubernetesRuntime(t *testing.T) {
	baseImages := requireRealParts(t)
	c := ktest.Start(t, ktest.Options{Kubelet: true})
	h := &harness{t: t, data: t.TempDir(), baseImages: baseImages, http: &http.Client{Timeout: time.Minute},
		api: freeAddr(t), router: freeAddr(t), github: newGHStandIn("ghp_unused")}
	c.AllowHTTPRegistry(t, h.api)
	h.edit = func(cfg *Config) {
		cfg.Runtime, cfg.Kubeconfig, cfg.RegistryURL = RuntimeKubernetes, c.Kubeconfig, "http://"+h.api
		cfg.KubeNode, cfg.KubeSplitLogs = c.Node, true
		// Debian's containerd 1.6 has no user namespaces for pods.
		cfg.UserNSRange = "off"
	}
	h.start()
	t.Cleanup(h.shutdown)

	const project = "kube-e2e"
	if code := h.call("POST", "/api/v1/projects", api.CreateProjectRequest{Name: project}, nil); code != http.StatusCreated {
		t.Fatalf("creating project: %d", code)
	}
	if code, b := h.do("PATCH", "/api/v1/projects/"+project+"/settings", strings.NewReader(`{"idleTimeout":"1s"}`), "application/json"); code != 200 {
		t.Fatalf("settings: %d %s", code, b)
	}
	d, took := deployExample(h, project, filepath.Join("..", "..", "examples", "go"))
	t.Logf("upload → RUNNING as a pod: %v", took.Round(100*time.Millisecond))
	host := project + ".slipway.localhost"
	if code, body, err := h.body(host, "/"); err != nil || code != 200 {
		t.Fatalf("GET %s/: %d %q %v\nruntime log:\n%s", host, code, body, err, h.runtimeLog(d.ID))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	pods := func() []string {
		list, err := c.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{LabelSelector: kubernetes.LabelDeployment + "=" + d.ID})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, p := range list.Items {
			if p.DeletionTimestamp == nil {
				names = append(names, p.Namespace+"/"+p.Name+"/"+string(p.UID))
			}
		}
		return names
	}
	if got := pods(); len(got) != 1 {
		t.Fatalf("pods of the deployment: %v, want one", got)
	}

	// Scale to zero deletes the pod; a request wakes a new one.
	var wakes []time.Duration
	for i := range 8 {
		deadline := time.Now().Add(2 * time.Minute)
		for strings.Count(h.runtimeLog(d.ID), "scaled to zero") <= i || len(pods()) != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("wake %d: never scaled to zero (pods %v); runtime log:\n%s", i, pods(), h.runtimeLog(d.ID))
			}
			time.Sleep(50 * time.Millisecond)
		}
		t0 := time.Now()
		code, body, err := h.body(host, "/")
		if err != nil || code != 200 {
			t.Fatalf("wake %d: %d %q %v\nruntime log:\n%s", i, code, body, err, h.runtimeLog(d.ID))
		}
		wakes = append(wakes, time.Since(t0))
	}
	sorted := slices.Clone(wakes)
	slices.Sort(sorted)
	t.Logf("wake → first 200 through the router, %d wakes: p50 %v, max %v (all: %v)", len(sorted),
		sorted[len(sorted)/2].Round(time.Millisecond), sorted[len(sorted)-1].Round(time.Millisecond), wakes)

	// A restarted server re-adopts the running pod: same pod, no restart.
	// (A deployment that never sleeps, so that nothing else moves it.)
	if code, b := h.do("PATCH", "/api/v1/projects/"+project+"/settings", strings.NewReader(`{"idleTimeout":"0"}`), "application/json"); code != 200 {
		t.Fatalf("settings: %d %s", code, b)
	}
	d, _ = deployExample(h, project, filepath.Join("..", "..", "examples", "go"))
	deadline := time.Now().Add(time.Minute)
	for len(pods()) != 1 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	before := pods()
	if len(before) != 1 {
		t.Fatalf("pods of the second deployment: %v, want one", before)
	}
	h.restart()
	if code, body, err := h.body(host, "/"); err != nil || code != 200 {
		t.Fatalf("after a restart: GET %s/: %d %q %v\nruntime log:\n%s", host, code, body, err, h.runtimeLog(d.ID))
	}
	if after := pods(); !slices.Equal(after, before) {
		t.Errorf("pods after a restart of the server: %v, want %v re-adopted", after, before)
	}
	if !strings.Contains(h.runtimeLog(d.ID), "re-attached after a server restart") {
		t.Errorf("runtime log does not say the instance was re-attached:\n%s", h.runtimeLog(d.ID))
	}
}
