//go:build tools

// Package kube pins the Kubernetes programs that scripts/install-kubernetes.sh
// builds, so that go mod tidy keeps their dependencies in go.sum.
package kube

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
