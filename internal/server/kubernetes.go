package server

import (
	"fmt"
	"net/url"
	"strings"

	"k8s.io/client-go/rest"

	"github.com/slipwayhq/slipway/internal/project"
	"github.com/slipwayhq/slipway/internal/registry"
	"github.com/slipwayhq/slipway/internal/runtime"
	"github.com/slipwayhq/slipway/internal/runtime/kubernetes"
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
			PullToken: func(repo string) (string, func(), error) {
				tok, revoke := s.registry.Grant(registry.Grant{Pull: []string{repo}})
				return tok, revoke, nil
			},
		})
	}
}

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
