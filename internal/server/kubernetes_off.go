//go:build nokubernetes

package server

import "github.com/slipwayhq/slipway/internal/runtime"

// Built with the nokubernetes tag (scripts/run.sh's lean first build), the
// binary leaves out the kubernetes driver and its client, about a hundred
// packages to compile: --runtime kubernetes is refused when the server
// starts (Config.validate), so the functions below are never reached.
const kubernetesBuilt = false

// kubeClient stands in for the cluster's client config.
type kubeClient = *struct{}

func (s *server) kubeSandbox(string) func(sandboxEnv) (runtime.Driver, error) {
	return func(sandboxEnv) (runtime.Driver, error) {
		return nil, errNoKubernetes
	}
}
