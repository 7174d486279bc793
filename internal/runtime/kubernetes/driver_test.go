package kubernetes

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/slipwayhq/slipway/internal/netns"
	"github.com/slipwayhq/slipway/internal/runtime"
	"github.com/slipwayhq/slipway/internal/runtime/drivertest"
	"github.com/slipwayhq/slipway/internal/runtime/kubernetes/ktest"
)

// TestDriver runs the conformance suite, and the driver's own checks of
// bad states, against a real node: a kubelet on containerd and runc, that
// pulls the test app from a registry on loopback.
func TestDriver(t *testing.T) {
	c := ktest.Start(t, ktest.Options{Kubelet: true})
	host := drivertest.Registry(t)
	c.AllowHTTPRegistry(t, host)
	bin := drivertest.BuildApp(t)
	img := drivertest.Image(t, drivertest.AppConfig(), drivertest.Layer(t, drivertest.AppFiles(t, bin)...))
	ref := drivertest.Push(t, host, "testapp", img)
	cfg := Config{REST: c.Config, DenyEgress: netns.Reserved(), NodeName: c.Node, SplitLogStreams: true, StopGrace: 2 * time.Second,
		Log: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	newD := func(t *testing.T) runtime.Driver {
		d, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}

	t.Run("Conformance", func(t *testing.T) {
		drivertest.Run(t, drivertest.Harness{
			New:   newD,
			Image: ref,
			CheckFreed: func(t *testing.T, h *runtime.Handle) {
				assertNothingLeft(t, c.Client, "slipway", h.ID)
			},
		})
	})

	// The isolation suite, with what a cluster holds instances to by its
	// nature: processes by the kubelet's podPidsLimit (a pod spec has no
	// process limit), disk by eviction (no quota fails a write), the
	// host's addresses by the driver's NetworkPolicy, which the test
	// cluster's bridge plugin does not enforce (TestObjects checks it).
	t.Run("Isolation", func(t *testing.T) {
		drivertest.RunIsolation(t, drivertest.Harness{
			New:                   newD,
			Image:                 ref,
			NodePidsLimit:         ktest.PodPidsLimit,
			DiskLimitEvicts:       true,
			HostAddressesByPolicy: true,
		})
	})

	// Where a start's time goes (logged, not asserted).
	t.Run("StartTimeline", func(t *testing.T) {
		d := newDriver(t, cfg)
		startTimeline(t, c, d, ref, 5)
	})

	t.Run("ImagePullFails", func(t *testing.T) {
		d := newDriver(t, cfg)
		spec := testSpec(t, drivertest.NewID(t))
		spec.Image = host + "/missing@sha256:" + strings.Repeat("0", 64)
		ctx, cancel := context.WithTimeout(context.Background(), drivertest.Timeout)
		defer cancel()
		_, err := d.Start(ctx, spec)
		if err == nil || !strings.Contains(err.Error(), "could not pull the image") || errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Start of a missing image = %v, want a pull failure at once", err)
		}
		assertNothingLeft(t, c.Client, d.Namespace(spec.Group), spec.ID)
	})

	t.Run("RecoverDoesNotRestart", func(t *testing.T) {
		d1 := newD(t)
		spec := testSpec(t, drivertest.NewID(t))
		spec.Image = ref
		ctx, cancel := context.WithTimeout(context.Background(), drivertest.Timeout)
		defer cancel()
		h, err := d1.Start(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		defer d1.Stop(context.Background(), h)
		drivertest.WaitHTTP(t, d1, h, 3000)
		pod, err := c.Client.CoreV1().Pods(d1.(*Driver).Namespace(spec.Group)).Get(ctx, spec.ID, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		d1.(*Driver).Close()
		d2 := newD(t)
		defer d2.(*Driver).Close()
		if err := d2.Recover(ctx, h); err != nil {
			t.Fatal(err)
		}
		drivertest.WaitHTTP(t, d2, h, 3000)
		after, err := c.Client.CoreV1().Pods(pod.Namespace).Get(ctx, spec.ID, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cs, cs2 := appStatus(pod), appStatus(after)
		if after.UID != pod.UID || cs2.ContainerID != cs.ContainerID || cs2.RestartCount != 0 {
			t.Errorf("after Recover: pod %s container %s, before: pod %s container %s", after.UID, cs2.ContainerID, pod.UID, cs.ContainerID)
		}
	})
}

// testWriter logs what the driver logs with t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}
