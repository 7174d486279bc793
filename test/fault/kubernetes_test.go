//go:build !nokubernetes

package fault

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/slipwayhq/slipway/internal/runtime/kubernetes"
	"github.com/slipwayhq/slipway/internal/runtime/kubernetes/ktest"
	"github.com/slipwayhq/slipway/test/fault/serverproc"
)

// TestKubernetesCrash kills a server that runs its apps as pods (--runtime
// kubernetes, on a real node: ktest's etcd, kube-apiserver and kubelet on
// containerd) with SIGKILL while a pod serves, and starts it again on the
// same data directory:
//
//   - while the server is down, the app answers at its pod's IP, as the
//     same process, and what it logs meanwhile reaches the runtime log
//     after the restart, once;
//   - after the restart the pod is re-adopted, not restarted: the same
//     pod (UID), its container not restarted (restartCount 0, the same
//     container and start time), and no second pod; the app answers
//     through the router;
//   - stopping the deployment removes its pod and secrets; ktest removes
//     the rest (containers, namespaces, iptables chains, directories).
func TestKubernetesCrash(t *testing.T) {
	requireRealParts(t)
	c := ktest.Start(t, ktest.Options{Kubelet: true})
	root, err := os.MkdirTemp("", "slipway-kube-crash-")
	if err != nil {
		t.Fatal(err)
	}
	// The registry's address must be known before the first start: the
	// node pulls from it (over plain HTTP, on loopback).
	port, err := serverproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	c.AllowHTTPRegistry(t, listen)
	e := startEnv(t, root, func(cfg *serverproc.Config) {
		cfg.Listen = listen
		cfg.IdleTimeout = -1 // never asleep: nothing but the crash moves the pod
		cfg.Args = append(cfg.Args, "--runtime", "kubernetes", "--kubeconfig", c.Kubeconfig,
			"--registry-url", "http://"+listen, "--kube-node", c.Node, "--kube-split-logs=true",
			// Debian's containerd 1.6 has no user namespaces for pods.
			"--userns-range", "off")
	})
	t.Cleanup(e.shutdown) // before ktest's teardown: cleanups run last in, first out
	e.dumpOnFailure(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	ensureProject(t, e.c, "kcrash")
	d := deployRunning(t, e.c, "kcrash", faultApp(t, "kube-crash"), 10*time.Minute)
	host := e.c.Host(d.ID)
	before := info(t, e.c, host)
	pod := deploymentPod(t, ctx, c, d.ID)
	cs := appContainer(t, pod)
	if cs.State.Running == nil || cs.RestartCount != 0 || pod.Status.PodIP == "" {
		t.Fatalf("pod %s/%s before the kill: %+v, IP %q", pod.Namespace, pod.Name, cs.State, pod.Status.PodIP)
	}
	if before.Instance != pod.Name {
		t.Fatalf("the app says it is %+v; its pod is %s", before, pod.Name)
	}
	if code, _, err := e.c.Get(ctx, host, "/log?n=5&tag=before"); err != nil || code != 200 {
		t.Fatalf("asking the app to log: %d %v", code, err)
	}
	waitRuntimeLine(t, ctx, e.c, d.ID, "log before 5")

	if err := e.srv.Kill(); err != nil {
		t.Fatal(err)
	}
	// While down: the app answers at its pod's IP, as the same process,
	// and keeps logging.
	addr := net.JoinHostPort(pod.Status.PodIP, "3000")
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatalf("while the server was down, dialling the pod at %s: %v", addr, err)
	}
	if got, err := askInfo(conn, "pod "+addr); err != nil || got != before {
		t.Errorf("while the server was down, the pod at %s answered %+v %v; before the kill: %+v", addr, got, err, before)
	}
	if conn, err = dialer.DialContext(ctx, "tcp", addr); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "GET /log?n=5&tag=down HTTP/1.1\r\nHost: direct\r\nConnection: close\r\n\r\n")
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	b, _ := io.ReadAll(conn)
	conn.Close()
	if !strings.HasPrefix(string(b), "HTTP/1.1 200") {
		t.Errorf("while the server was down, GET /log at %s: %q", addr, b)
	}

	if err := e.srv.Start(ctx); err != nil {
		t.Fatalf("restarting the server: %v", err)
	}
	waitServed(t, ctx, e.c, host)
	if got := info(t, e.c, host); got != before {
		t.Errorf("after the restart, %s is %+v; before the kill it was %+v", host, got, before)
	}
	after := deploymentPod(t, ctx, c, d.ID)
	acs := appContainer(t, after)
	switch {
	case after.UID != pod.UID:
		t.Errorf("after the restart the deployment's pod is %s (UID %s), before %s (UID %s): it was replaced", after.Name, after.UID, pod.Name, pod.UID)
	case acs.RestartCount != 0 || acs.ContainerID != cs.ContainerID || acs.State.Running == nil ||
		!acs.State.Running.StartedAt.Equal(&cs.State.Running.StartedAt):
		t.Errorf("after the restart the pod's container is %s (restarts %d, state %+v), before %s (started %v): it was restarted",
			acs.ContainerID, acs.RestartCount, acs.State, cs.ContainerID, cs.State.Running.StartedAt)
	}
	waitRuntimeLine(t, ctx, e.c, d.ID, "log down 5")
	lines, err := e.c.RuntimeLogs(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	reattached := false
	for _, l := range lines {
		seen[l.Text]++
		reattached = reattached || strings.Contains(l.Text, "re-attached after a server restart")
	}
	for _, tag := range []string{"before", "down"} {
		for i := 1; i <= 5; i++ {
			if n := seen[fmt.Sprintf("log %s %d", tag, i)]; n != 1 {
				t.Errorf("runtime log holds %q %d times, want once", fmt.Sprintf("log %s %d", tag, i), n)
			}
		}
	}
	if t.Failed() {
		for _, l := range lines {
			t.Logf("runtime log %d %s %s %s: %s", l.ID, l.Time.Format(time.RFC3339Nano), l.Stream, l.Instance, l.Text)
		}
		files, _ := filepath.Glob(filepath.Join(e.srv.DataDir(), "logs", d.ID, "*"))
		for _, f := range files {
			b, _ := os.ReadFile(f)
			t.Logf("%s:\n%s", f, b)
		}
	}
	if !reattached {
		t.Errorf("the runtime log does not say the instance was re-attached")
	}

	// Stopping the deployment removes its pod and secrets.
	if err := e.c.StopDeployment(ctx, d.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.WaitSettled(ctx, d.ID); err != nil {
		t.Fatal(err)
	}
	sel := metav1.ListOptions{LabelSelector: kubernetes.LabelManagedBy + "=slipway"}
	deadline := time.Now().Add(time.Minute)
	for {
		pods, err := c.Client.CoreV1().Pods("").List(ctx, sel)
		if err != nil {
			t.Fatal(err)
		}
		secrets, err := c.Client.CoreV1().Secrets("").List(ctx, sel)
		if err != nil {
			t.Fatal(err)
		}
		if len(pods.Items) == 0 && len(secrets.Items) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the deployment stopped, %d pods and %d secrets of Slipway are left", len(pods.Items), len(secrets.Items))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// deploymentPod returns the one live pod of a deployment.
func deploymentPod(t *testing.T, ctx context.Context, c *ktest.Cluster, deployment string) *corev1.Pod {
	t.Helper()
	list, err := c.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{LabelSelector: kubernetes.LabelDeployment + "=" + deployment})
	if err != nil {
		t.Fatal(err)
	}
	var live []*corev1.Pod
	for i := range list.Items {
		if list.Items[i].DeletionTimestamp == nil {
			live = append(live, &list.Items[i])
		}
	}
	if len(live) != 1 {
		t.Fatalf("deployment %s has %d pods, want one: %v", deployment, len(live), list.Items)
	}
	return live[0]
}

// appContainer is the status of a pod's app container.
func appContainer(t *testing.T, pod *corev1.Pod) corev1.ContainerStatus {
	t.Helper()
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == "app" {
			return cs
		}
	}
	t.Fatalf("pod %s/%s has no app container: %+v", pod.Namespace, pod.Name, pod.Status)
	return corev1.ContainerStatus{}
}
