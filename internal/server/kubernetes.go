package server

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Runtimes, the values of --runtime: where instances run.
const (
	// RuntimeLocal runs them on this host, in the sandbox of each kind.
	RuntimeLocal = "local"
	// RuntimeKubernetes runs them as pods of a Kubernetes cluster: every
	// sandbox kind is a kubernetes driver whose pods get that kind's
	// isolation (kubeRuntimeClasses).
	RuntimeKubernetes = "kubernetes"
)

// errNoKubernetes: --runtime kubernetes in a binary built without the
// driver (kubernetes_off.go).
var errNoKubernetes = errors.New("--runtime kubernetes: this slipway was built without the kubernetes driver (the nokubernetes build tag, which scripts/run.sh uses for a faster first build); rebuild it with `go build -o bin/slipway ./cmd/slipway`")

// registryURLHost is the host[:port] of --registry-url (a URL or a bare
// host:port).
func registryURLHost(u string) (string, error) {
	if u == "" {
		return "", fmt.Errorf("--runtime kubernetes needs --registry-url: the address at which the cluster's nodes reach Slipway's registry (this server's --listen)")
	}
	if !strings.Contains(u, "://") {
		u = "http://" + u
	}
	p, err := url.Parse(u)
	if err != nil || p.Host == "" {
		return "", fmt.Errorf("--registry-url %q: want a URL such as http://10.0.0.5:7300", u)
	}
	return p.Host, nil
}
