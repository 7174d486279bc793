package kubernetes

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/slipwayhq/slipway/internal/runtime/drivertest"
	"github.com/slipwayhq/slipway/internal/runtime/kubernetes/ktest"
)

// startTimeline starts the test app n times and logs where each start's
// time went, from Start to the first 200: the pod created (the API
// server's ADDED event), its sandbox run by containerd (pause container,
// network), the app's container created and started, the kubelet's
// status "running" seen by the driver, Start's return and the first 200
// through Dial. containerd's times come from its log. It logs, never
// asserts: timings on a shared machine are no test.
func startTimeline(t *testing.T, c *ktest.Cluster, d *Driver, ref string, n int) {
	var rows []string
	var totals []time.Duration
	for range n {
		spec := testSpec(t, drivertest.NewID(t))
		spec.Image = ref
		ctx, cancel := context.WithTimeout(context.Background(), drivertest.Timeout)
		defer cancel()
		w, err := c.Client.CoreV1().Pods(d.Namespace(spec.Group)).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + spec.ID})
		if err != nil {
			t.Fatal(err)
		}
		var added, running time.Time
		seen := make(chan struct{})
		go func() {
			defer close(seen)
			for ev := range w.ResultChan() {
				p, ok := ev.Object.(*corev1.Pod)
				if !ok {
					continue
				}
				if added.IsZero() {
					added = time.Now()
				}
				if cs := appStatus(p); cs != nil && cs.State.Running != nil && running.IsZero() {
					running = time.Now()
				}
			}
		}()
		t0 := time.Now()
		h, err := d.Start(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		started := time.Now()
		drivertest.WaitHTTP(t, d, h, 3000)
		served := time.Now()
		w.Stop()
		<-seen
		if err := d.Stop(ctx, h); err != nil {
			t.Fatal(err)
		}
		cd := containerdTimes(filepath.Join(c.Dir, "containerd.log"), spec.ID)
		ms := func(at time.Time) string {
			if at.IsZero() {
				return "?"
			}
			return at.Sub(t0).Round(time.Millisecond).String()
		}
		rows = append(rows, strings.Join([]string{ms(added), ms(cd[0]), ms(cd[1]), ms(cd[2]), ms(cd[3]), ms(running), ms(started), ms(served)}, " | "))
		totals = append(totals, served.Sub(t0))
	}
	t.Logf("Start → pod ADDED | sandbox asked | sandbox ready | container start asked | container started | running seen | Start returned | first 200, %d starts:", n)
	for _, r := range rows {
		t.Log("  ", r)
	}
	slices.Sort(totals)
	t.Logf("start → first 200: p50 %v, max %v", totals[len(totals)/2].Round(time.Millisecond), totals[len(totals)-1].Round(time.Millisecond))
}

var containerdLine = regexp.MustCompile(`^time="([^"]+)" level=\w+ msg="(.*)"$`)

// containerdTimes reads from containerd's log when it was asked for the
// sandbox of pod, when the sandbox was ready, and when the app's
// container was asked to start and had started.
func containerdTimes(log, pod string) [4]time.Time {
	var out [4]time.Time
	b, _ := os.ReadFile(log)
	var sandbox, ctr string
	quoted := regexp.MustCompile(`\\"([0-9a-f]{64})\\"`)
	for _, l := range strings.Split(string(b), "\n") {
		m := containerdLine.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, m[1])
		if err != nil {
			continue
		}
		msg := m[2]
		ids := quoted.FindAllStringSubmatch(msg, -1)
		switch {
		case strings.HasPrefix(msg, "RunPodSandbox for &PodSandboxMetadata{Name:"+pod+","):
			if strings.Contains(msg, "returns sandbox id") && len(ids) > 0 {
				out[1], sandbox = at, ids[0][1]
			} else {
				out[0] = at
			}
		case sandbox != "" && strings.HasPrefix(msg, `CreateContainer within sandbox \"`+sandbox) && strings.Contains(msg, "returns container id") && len(ids) > 1:
			ctr = ids[1][1]
		case ctr != "" && strings.HasPrefix(msg, `StartContainer for \"`+ctr+`\"`):
			if strings.Contains(msg, "returns successfully") {
				out[3] = at
			} else {
				out[2] = at
			}
		}
	}
	return out
}
