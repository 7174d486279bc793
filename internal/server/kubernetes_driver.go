//go:build !nokubernetes

package server

import (
	"k8s.io/client-go/rest"

	"github.com/slipwayhq/slipway/internal/netns"
	"github.com/slipwayhq/slipway/internal/project"
	"github.com/slipwayhq/slipway/internal/registry"
	"github.com/slipwayhq/slipway/internal/runtime"
	"github.com/slipwayhq/slipway/internal/runtime/kubernetes"
)

// kubernetesBuilt: this binary has the kubernetes driver (built without
// the nokubernetes tag).
const kubernetesBuilt = true

// kubeClient is the cluster's API server and credentials, read once for
// every kind.
type kubeClient = *rest.Config

// kubeRuntimeClasses maps a sandbox kind to the RuntimeClass its pods ask
// for; the cluster defines them (runc needs none: the nodes' default).
var kubeRuntimeClasses = map[string]string{
	project.SandboxGVisor:  "gvisor",
	project.SandboxMicroVM: "kata",
}

// kubeSandbox, with --runtime kubernetes, makes the driver of a sandbox
// kind: pods in the cluster, pulled from the registry at --registry-url
// with a credential of the one repository.
func (s *server) kubeSandbox(kind string) func(sandboxEnv) (runtime.Driver, error) {
	return func(env sandboxEnv) (runtime.Driver, error) {
		if s.kube == nil {
			c, err := kubernetes.NewRESTConfig(s.cfg.Kubeconfig)
			if err != nil {
				return nil, err
			}
			s.kube = c
		}
		host, err := registryURLHost(s.cfg.RegistryURL)
		if err != nil {
			return nil, err
		}
		name := kubernetes.Name
		if kind != project.SandboxRunc {
			name += "-" + kind
		}
		return kubernetes.New(kubernetes.Config{
			Name:            name,
			REST:            s.kube,
			RegistryHost:    host,
			NodeName:        s.cfg.KubeNode,
			RuntimeClass:    kubeRuntimeClasses[kind],
			UserNamespaces:  !env.NoUserNS,
			SplitLogStreams: s.cfg.KubeSplitLogs,
			DenyEgress:      netns.Reserved(),
			PullToken: func(repo string) (string, func(), error) {
				tok, revoke := s.registry.Grant(registry.Grant{Pull: []string{repo}})
				return tok, revoke, nil
			},
		})
	}
}
