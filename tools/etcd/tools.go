//go:build tools

// Package etcd pins the etcd server that scripts/install-kubernetes.sh builds,
// so that go mod tidy keeps its dependencies in go.sum.
package etcd

import _ "go.etcd.io/etcd/server/v3"
