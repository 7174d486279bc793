package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/slipwayhq/slipway/internal/runtime"
)

// apiPatience bounds how long one call retries while the API server
// cannot be reached, whatever the caller's context allows.
const apiPatience = 30 * time.Second

// transient reports whether err may pass if the call is tried again: the
// API server unreachable, overloaded or restarting.
func transient(err error) bool {
	return utilnet.IsConnectionRefused(err) || utilnet.IsConnectionReset(err) || utilnet.IsProbableEOF(err) ||
		apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) || apierrors.IsTooManyRequests(err) ||
		apierrors.IsServiceUnavailable(err) || apierrors.IsInternalError(err) ||
		strings.Contains(err.Error(), "no route to host") || strings.Contains(err.Error(), "i/o timeout")
}

// retry calls f until it succeeds, fails for good, ctx ends or
// apiPatience passes, backing off between tries.
func retry(ctx context.Context, f func() error) error {
	delay := 50 * time.Millisecond
	giveUp := time.Now().Add(apiPatience)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
		}
		if !transient(err) || time.Now().After(giveUp) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
		case <-time.After(delay):
		}
		delay = min(delay*2, 2*time.Second)
	}
}

// unreachable says so when err is the API server's absence.
func unreachable(err error) error {
	if err != nil && transient(err) {
		return fmt.Errorf("the Kubernetes API server is unreachable: %w", err)
	}
	return err
}

// refused explains why the cluster did not take an object.
func refused(ns, what string, err error) error {
	switch {
	case apierrors.IsForbidden(err) && strings.Contains(err.Error(), "exceeded quota"):
		return fmt.Errorf("the cluster refused the %s: namespace %s is over its resource quota: %w", what, ns, err)
	case apierrors.IsForbidden(err) && strings.Contains(err.Error(), " cannot "):
		return fmt.Errorf("the cluster refused the %s in namespace %s (does the server's account have the rights README's RBAC manifest grants?): %w", what, ns, err)
	case apierrors.IsForbidden(err):
		return fmt.Errorf("the cluster refused the %s in namespace %s: %w", what, ns, err)
	case apierrors.IsInvalid(err):
		return fmt.Errorf("the cluster refused the %s as invalid: %w", what, err)
	}
	return fmt.Errorf("creating the %s in namespace %s: %w", what, ns, unreachable(err))
}

// watchPod calls fn with the instance's pod now and at each change (with
// deleted set, and pod nil if it was already gone) until fn returns true
// or ctx ends. It survives watches that the API server closes.
func (d *Driver) watchPod(ctx context.Context, id string, st state, fn func(pod *corev1.Pod, deleted bool) bool) error {
	for {
		pod, err := d.getPod(ctx, id, st)
		if errors.Is(err, runtime.ErrNotFound) {
			if fn(nil, true) {
				return nil
			}
			return err
		}
		if err != nil {
			return err
		}
		if fn(pod, false) {
			return nil
		}
		w, err := d.c.Pods(st.Namespace).Watch(ctx, metav1.ListOptions{
			FieldSelector: "metadata.name=" + st.Pod, ResourceVersion: pod.ResourceVersion})
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		done, err := func() (bool, error) {
			defer w.Stop()
			for {
				select {
				case <-ctx.Done():
					return false, ctx.Err()
				case ev, ok := <-w.ResultChan():
					if !ok {
						return false, nil // closed: read again and watch anew
					}
					p, isPod := ev.Object.(*corev1.Pod)
					switch {
					case ev.Type == watch.Error || !isPod:
						return false, nil
					case st.UID != "" && p.UID != st.UID:
						if fn(nil, true) {
							return true, nil
						}
						return false, fmt.Errorf("instance %s: %w", id, runtime.ErrNotFound)
					case ev.Type == watch.Deleted:
						if fn(p, true) {
							return true, nil
						}
						return false, fmt.Errorf("instance %s: %w", id, runtime.ErrNotFound)
					default:
						if fn(p, false) {
							return true, nil
						}
					}
				}
			}
		}()
		if done || err != nil {
			return err
		}
	}
}

// startFailures are the reasons a container waits for that do not pass
// on their own.
var startFailures = map[string]string{
	"ErrImagePull":               "the node could not pull the image",
	"ImagePullBackOff":           "the node could not pull the image",
	"InvalidImageName":           "the image's name is invalid",
	"ErrImageNeverPull":          "the image is not on the node",
	"CreateContainerConfigError": "the container's configuration is wrong",
	"CreateContainerError":       "the container could not be created",
	"RunContainerError":          "the container could not be started",
	"CrashLoopBackOff":           "the app keeps crashing",
}

// waitStarted waits until the app's container runs or has run, and says
// why when it never will.
func (d *Driver) waitStarted(ctx context.Context, st state) (*corev1.Pod, error) {
	var last *corev1.Pod
	var failed error
	err := d.watchPod(ctx, st.Pod, st, func(pod *corev1.Pod, deleted bool) bool {
		if pod != nil {
			last = pod
		}
		if deleted {
			failed = fmt.Errorf("pod %s/%s was deleted while starting", st.Namespace, st.Pod)
			return true
		}
		failed = startFailure(pod)
		if failed != nil {
			return true
		}
		cs := appStatus(pod)
		return cs != nil && (cs.State.Running != nil || cs.State.Terminated != nil)
	})
	if failed != nil {
		return nil, failed
	}
	if err != nil {
		return nil, fmt.Errorf("pod %s/%s did not start: %s: %w", st.Namespace, st.Pod, pending(last), err)
	}
	return last, nil
}

// startFailure is why pod will never start, or nil.
func startFailure(pod *corev1.Pod) error {
	name := pod.Namespace + "/" + pod.Name
	if cs := appStatus(pod); cs != nil && cs.State.Waiting != nil {
		w := cs.State.Waiting
		if why, ok := startFailures[w.Reason]; ok {
			return fmt.Errorf("pod %s: %s (%s): %s", name, why, w.Reason, w.Message)
		}
	}
	if pod.Status.Phase == corev1.PodFailed && appStatus(pod) == nil {
		return fmt.Errorf("pod %s failed before its app started (%s): %s", name, pod.Status.Reason, pod.Status.Message)
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			return fmt.Errorf("pod %s: no node can run it: %s", name, c.Message)
		}
	}
	return nil
}

// pending describes where a pod that has not started is stuck.
func pending(pod *corev1.Pod) string {
	if pod == nil {
		return "never seen"
	}
	if pod.Spec.NodeName == "" {
		return "still pending, not placed on any node (is a scheduler running, with capacity?)"
	}
	if cs := appStatus(pod); cs != nil && cs.State.Waiting != nil {
		return fmt.Sprintf("still pending on node %s: %s %s", pod.Spec.NodeName, cs.State.Waiting.Reason, cs.State.Waiting.Message)
	}
	return fmt.Sprintf("still pending on node %s (phase %s)", pod.Spec.NodeName, pod.Status.Phase)
}

// Wait implements runtime.Driver: it watches the pod until its app's
// container has terminated.
func (d *Driver) Wait(ctx context.Context, h *runtime.Handle) (runtime.Status, error) {
	_, st, err := d.lookup(h)
	if err != nil {
		return runtime.Status{}, err
	}
	var final runtime.Status
	err = d.watchPod(ctx, h.ID, st, func(pod *corev1.Pod, deleted bool) bool {
		if pod == nil {
			return false
		}
		s := status(pod)
		if cs := appStatus(pod); cs != nil && cs.State.Terminated != nil {
			final = s
			return true
		}
		if pod.Status.Phase == corev1.PodFailed || pod.Status.Phase == corev1.PodSucceeded {
			final = runtime.Status{ExitCode: -1, PID: s.PID, StartedAt: s.StartedAt}
			return true
		}
		return false
	})
	if err != nil {
		return runtime.Status{}, err
	}
	return final, nil
}
