package project

import (
	"context"
	"strings"

	"github.com/slipwayhq/slipway/internal/store"
)

// Hosts names the hostnames Slipway generates under a base domain:
//
//	<deployment-id>.<base>        a deployment's preview, always that deployment
//	<project>-<environment>.<base> an environment's current deployment
//	<project>.<base>              the production environment's current deployment
//
// Custom domains of an environment follow its current deployment too.
type Hosts struct {
	// Base is the base domain. If empty, "slipway.localhost".
	Base string
}

func (h Hosts) base() string {
	if h.Base == "" {
		return "slipway.localhost"
	}
	return h.Base
}

// Preview is the hostname that always reaches deployment id.
func (h Hosts) Preview(id string) string { return id + "." + h.base() }

// Environment is the hostname that follows an environment's current
// deployment.
func (h Hosts) Environment(project, env string) string {
	return project + "-" + env + "." + h.base()
}

// Project is the project's default hostname: its production environment's
// current deployment.
func (h Hosts) Project(project string) string { return project + "." + h.base() }

// InternalSuffix ends the private names apps use to reach each other:
// <project>.internal, <project>-<env>.internal, <deployment-id>.internal.
const InternalSuffix = ".internal"

// FromInternal maps a private name to the hostname under the base domain
// that it stands for (web.internal → web.<base>). It reports false for
// anything else: private names are one label followed by InternalSuffix.
func (h Hosts) FromInternal(host string) (string, bool) {
	label, ok := strings.CutSuffix(strings.TrimSuffix(strings.ToLower(host), "."), InternalSuffix)
	if !ok || label == "" || strings.Contains(label, ".") {
		return "", false
	}
	return label + "." + h.base(), true
}

// Reserved reports whether name is the base domain or a name under it:
// the generated hostnames live there, so no custom domain may.
func (h Hosts) Reserved(name string) bool {
	return name == h.base() || strings.HasSuffix(name, "."+h.base())
}

// Following lists the hostnames that follow env's current deployment: the
// project's default hostname (production only), the environment's hostname
// and its custom domains.
func (h Hosts) Following(project string, env store.Environment, domains []store.Domain) []string {
	var hosts []string
	if env.Name == store.ProductionEnvironment {
		hosts = append(hosts, h.Project(project))
	}
	hosts = append(hosts, h.Environment(project, env.Name))
	for _, d := range domains {
		hosts = append(hosts, d.Name)
	}
	return hosts
}

// Of lists the hostnames that route to d, given its environment and that
// environment's custom domains: its preview hostname always and, while it
// is the environment's current deployment, the environment's (Following).
func (h Hosts) Of(d store.Deployment, env store.Environment, domains []store.Domain) []string {
	hosts := []string{h.Preview(d.ID)}
	if env.ID != "" && env.CurrentDeploymentID == d.ID {
		hosts = append(hosts, h.Following(d.ProjectName, env, domains)...)
	}
	return hosts
}

// Lookup is Of with d's environment and domains read from st. A read that
// fails leaves those hostnames out (the preview hostname is always there).
func (h Hosts) Lookup(ctx context.Context, st store.Reader, d store.Deployment) []string {
	env, err := st.GetEnvironmentByID(ctx, d.EnvironmentID)
	if err != nil || env.CurrentDeploymentID != d.ID {
		return []string{h.Preview(d.ID)}
	}
	domains, _ := st.ListDomains(ctx, env.ID)
	return h.Of(d, env, domains)
}
