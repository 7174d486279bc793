package project

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/slipwayhq/slipway/internal/store"
)

// Environments: every project has production, mapped to main and master
// when it is created; others are added with the branches whose pushes they
// deploy. A branch deploys to one environment of a project at most: the
// store checks it in the transaction that writes the mapping, so no door
// (API, dashboard, two requests at once) can map a branch twice. Production
// also follows the default branch of the linked repository (whatever its
// name) unless that branch is mapped to an environment explicitly.

// ParseBranches splits a list typed by a user ("main, release  next") into
// branch names.
func ParseBranches(s string) []string {
	return strings.FieldsFunc(s, func(c rune) bool { return c == ',' || unicode.IsSpace(c) })
}

// validBranches checks branch names and drops repeats.
func validBranches(branches []string) ([]string, error) {
	out := []string{}
	seen := map[string]bool{}
	for _, b := range branches {
		switch {
		case b == "" || len(b) > 255:
			return nil, fmt.Errorf("invalid branch name %q: use 1-255 characters: %w", b, ErrInvalid)
		case strings.IndexFunc(b, func(c rune) bool { return unicode.IsSpace(c) || unicode.IsControl(c) }) >= 0,
			strings.HasPrefix(b, "-"), strings.HasPrefix(b, "refs/"), strings.Contains(b, ".."):
			return nil, fmt.Errorf("invalid branch name %q: give the branch's short name, without spaces: %w", b, ErrInvalid)
		}
		if !seen[b] {
			seen[b] = true
			out = append(out, b)
		}
	}
	return out, nil
}

// CreateEnvironment adds an environment to p with the branches whose
// pushes deploy to it.
func (s *Service) CreateEnvironment(ctx context.Context, p store.Project, name string, branches []string) (store.Environment, error) {
	name = strings.TrimSpace(name)
	if err := ValidateName("environment", name); err != nil {
		return store.Environment{}, err
	}
	branches, err := validBranches(branches)
	if err != nil {
		return store.Environment{}, err
	}
	if err := s.hostnameFree(ctx, p.Name+"-"+name); err != nil {
		return store.Environment{}, err
	}
	return s.store.CreateEnvironment(ctx, p.ID, name, branches)
}

// SetBranches replaces the branches mapped to env.
func (s *Service) SetBranches(ctx context.Context, env store.Environment, branches []string) (store.Environment, error) {
	branches, err := validBranches(branches)
	if err != nil {
		return env, err
	}
	if err := s.store.SetEnvironmentBranches(ctx, env.ID, branches); err != nil {
		return env, err
	}
	env.Branches = branches
	return env, nil
}

// Target is where a push of branch to the named project deploys: the
// project and the environment the branch is mapped to, else production
// for the default branch of the linked repository. ErrNotFound (from the
// store) when the project does not exist or the branch is not mapped.
func (s *Service) Target(ctx context.Context, project, branch string) (store.Project, store.Environment, error) {
	p, err := s.store.GetProject(ctx, project)
	if err != nil {
		return p, store.Environment{}, err
	}
	env, err := s.store.EnvironmentForBranch(ctx, p.ID, branch)
	if errors.Is(err, store.ErrNotFound) && branch != "" && branch == p.RepoDefaultBranch {
		env, err = s.store.GetEnvironment(ctx, p.ID, store.ProductionEnvironment)
	}
	return p, env, err
}

// DeleteEnvironment stops env's deployments, stops routing its hostnames
// and deletes it with its deployments, domains and variables, and has the
// lifecycle discard their files when it can (Discarder). The production
// environment cannot be deleted.
func (s *Service) DeleteEnvironment(ctx context.Context, p store.Project, env store.Environment) error {
	if env.Name == store.ProductionEnvironment {
		return fmt.Errorf("the production environment cannot be deleted: %w", ErrInvalid)
	}
	domains, err := s.store.ListDomains(ctx, env.ID)
	if err != nil {
		return err
	}
	gone := s.hosts.Following(p.Name, env, domains)
	var before time.Time
	var deleted []store.Deployment
	for {
		ds, err := s.store.ListDeployments(ctx, store.DeploymentFilter{EnvironmentID: env.ID, Before: before, Limit: 500})
		if err != nil {
			return err
		}
		for _, d := range ds {
			stopped, err := s.life.Stop(ctx, d.ID)
			if err != nil {
				return err
			}
			deleted = append(deleted, stopped)
			gone = append(gone, s.hosts.Preview(d.ID))
		}
		if len(ds) < 500 {
			break
		}
		before = ds[len(ds)-1].CreatedAt
	}
	if err := s.store.DeleteEnvironment(ctx, env.ID); err != nil {
		return err
	}
	env.CurrentDeploymentID = "" // nothing is left to route
	s.life.Reroute(ctx, env, gone)
	if d, ok := s.life.(Discarder); ok {
		d.Discard(ctx, deleted)
	}
	return nil
}

// Discarder is what a Lifecycle may also do: remove at once what
// retention would later remove of deployments deleted with their
// environment (sources, log files, images), which retention, reading
// the deployments kept, would never find.
type Discarder interface {
	Discard(ctx context.Context, ds []store.Deployment)
}
