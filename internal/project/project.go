// Package project holds Slipway's project rules in one place: names and
// hostnames, settings and their validation, environments and the branches
// mapped to them, custom domains, environment variables, repository links
// and egress policy. The API, the dashboard and the git and webhook triggers all go
// through a Service, so a rule is written once and every door enforces it.
//
// What changes routing or running deployments (a domain added, an
// environment deleted) is handed to the deployment lifecycle through the
// small Lifecycle interface; this package never imports it.
package project

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/slipwayhq/slipway/internal/secrets"
	"github.com/slipwayhq/slipway/internal/store"
)

// ErrInvalid reports input that breaks a rule. Its message, wrapped before
// it, is safe to show to users.
var ErrInvalid = errors.New("invalid input")

// Lifecycle is what the rules need of the deployment lifecycle.
type Lifecycle interface {
	// Stop stops a deployment (see deploy.Controller.Stop).
	Stop(ctx context.Context, id string) (store.Deployment, error)
	// Reroute stops routing the hostnames gone and routes env's current
	// deployment, if any, to env's hostnames as they are now.
	Reroute(ctx context.Context, env store.Environment, gone []string)
}

// Config wires a Service. Store and Lifecycle are required.
type Config struct {
	Store     *store.Store
	Lifecycle Lifecycle
	// Hosts names the generated hostnames. Its zero value uses
	// "slipway.localhost".
	Hosts Hosts
	// Secrets seals environment variables, webhook secrets and clone
	// tokens. If nil, variables cannot be set and repositories cannot be
	// linked.
	Secrets *secrets.Box
	// Firewall applies egress policies at once. If nil, they are only
	// stored (a server without instance networking).
	Firewall Firewall
	// DefaultBranch, if set, asks a repository host for a repository's
	// default branch (token: the clone token, "" for none) when a
	// repository is linked. If nil, the default branch is learned from
	// the first push webhook only.
	DefaultBranch func(ctx context.Context, repoURL, token string) (string, error)
}

// Service applies the project rules and writes what they allow.
type Service struct {
	store    *store.Store
	life     Lifecycle
	hosts    Hosts
	box      *secrets.Box
	firewall Firewall
	branchOf func(ctx context.Context, repoURL, token string) (string, error)
}

// New returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Lifecycle == nil {
		return nil, errors.New("project: Store and Lifecycle are required")
	}
	return &Service{store: cfg.Store, life: cfg.Lifecycle, hosts: cfg.Hosts, box: cfg.Secrets, firewall: cfg.Firewall, branchOf: cfg.DefaultBranch}, nil
}

// Hosts returns the hostname naming the service uses.
func (s *Service) Hosts() Hosts { return s.hosts }

// Hostnames lists the hostnames that route to d (see Hosts.Of).
func (s *Service) Hostnames(ctx context.Context, d store.Deployment) []string {
	return s.hosts.Lookup(ctx, s.store, d)
}

var (
	labelRE        = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	deploymentIDRE = regexp.MustCompile(`^[a-z2-7]{12}$`)
)

// ValidateName checks a project or environment name (kind says which): a
// DNS label that cannot be mistaken for a deployment id.
func ValidateName(kind, name string) error {
	if !labelRE.MatchString(name) {
		return fmt.Errorf("invalid %s name %q: use 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit: %w", kind, name, ErrInvalid)
	}
	if deploymentIDRE.MatchString(name) {
		return fmt.Errorf("invalid %s name %q: 12 characters of a-z and 2-7 are reserved for deployment ids: %w", kind, name, ErrInvalid)
	}
	return nil
}

// Create creates a project, with its production environment mapped to
// the default production branches.
func (s *Service) Create(ctx context.Context, name string) (store.Project, error) {
	name = strings.TrimSpace(name)
	if err := ValidateName("project", name); err != nil {
		return store.Project{}, err
	}
	if err := s.hostnameFree(ctx, name); err != nil {
		return store.Project{}, err
	}
	return s.store.CreateProject(ctx, store.Project{Name: name})
}

// UpdateSettings validates st and makes it the project's settings. They
// apply to deployments started from then on.
func (s *Service) UpdateSettings(ctx context.Context, p store.Project, st store.ProjectSettings) error {
	if err := ValidateSettings(st); err != nil {
		return err
	}
	return s.store.UpdateProjectSettings(ctx, p.ID, st)
}

// SetStartCommand saves the project's custom start command, or clears it
// when cmd is empty; the settings as saved are returned.
func (s *Service) SetStartCommand(ctx context.Context, p store.Project, cmd string) (store.ProjectSettings, error) {
	st := p.Settings
	st.StartCommand = cmd
	if err := s.UpdateSettings(ctx, p, st); err != nil {
		return p.Settings, err
	}
	return st, nil
}

// hostnameFree refuses a project or environment whose generated hostname
// label (<project>, or <project>-<environment>) another project or
// environment already has: project web-production and the production
// environment of web would otherwise share web-production.<base>.
func (s *Service) hostnameFree(ctx context.Context, label string) error {
	ps, err := s.store.ListProjects(ctx)
	if err != nil {
		return err
	}
	envs, err := s.store.ListAllEnvironments(ctx)
	if err != nil {
		return err
	}
	names := map[string]string{} // project id → name
	for _, p := range ps {
		names[p.ID] = p.Name
		if p.Name == label {
			return fmt.Errorf("%s.%s is already project %s's hostname: %w", label, s.hosts.base(), p.Name, store.ErrExists)
		}
	}
	for _, e := range envs {
		if names[e.ProjectID]+"-"+e.Name == label {
			return fmt.Errorf("%s.%s is already the hostname of environment %s of project %s; choose another name: %w",
				label, s.hosts.base(), e.Name, names[e.ProjectID], store.ErrExists)
		}
	}
	return nil
}
