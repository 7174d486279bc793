package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/slipwayhq/slipway/internal/project"
	"github.com/slipwayhq/slipway/internal/store"
)

// A deployment never changes under its user (DESIGN.md, "What a
// deployment is made of"): when it is created it captures its project's
// settings (resource limits, health check, idle timeout, deployment window
// and the build settings its plan is detected with) and its environment's
// variables, sealed as they are stored. Every instance start — the first,
// a restart, a wake — and every health check reads the capture, never the
// project. Changes apply to deployments created afterwards (a redeploy).
// Egress policy and domains are not captured: they apply at once.
//
// A deployment created before Slipway captured settings has no capture and
// follows its project's current settings and variables, as it always did.

// capture returns what a deployment of p on env takes with it.
func (c *Controller) capture(ctx context.Context, p store.Project, env store.Environment) (*store.Captured, error) {
	vars, err := c.store.ListEnvVars(ctx, env.ID)
	if err != nil {
		return nil, fmt.Errorf("reading variables: %w", err)
	}
	if vars == nil {
		vars = []store.EnvVar{}
	}
	return &store.Captured{Settings: p.Settings, Vars: vars}, nil
}

// settingsOf returns the settings d runs with: its capture, or its
// project's current settings when it has none.
func (c *Controller) settingsOf(ctx context.Context, d store.Deployment) (store.ProjectSettings, error) {
	if d.Captured != nil {
		return d.Captured.Settings, nil
	}
	p, err := c.store.GetProjectByID(ctx, d.ProjectID)
	if err != nil {
		return store.ProjectSettings{}, fmt.Errorf("loading project: %w", err)
	}
	return p.Settings, nil
}

// varsOf decrypts the variables d runs with: its capture, or its
// environment's current variables when it has none.
func (c *Controller) varsOf(ctx context.Context, d store.Deployment) ([]project.Var, error) {
	if d.Captured != nil {
		return project.Unseal(c.cfg.Secrets, d.Captured.Vars)
	}
	stored, err := c.store.ListEnvVars(ctx, d.EnvironmentID)
	if err != nil {
		return nil, err
	}
	return project.Unseal(c.cfg.Secrets, stored)
}

// healthOf applies the defaults to settings.
func (c *Controller) healthOf(st store.ProjectSettings) project.Health {
	return project.HealthOf(st, c.cfg.DeployWindow, c.cfg.IdleTimeout)
}

// VariablesChanged names a change of the environment's variables in what
// Changes returns.
const VariablesChanged = "variables"

// Changes lists what differs between what d captured when it was created
// and its project and environment now: the names of the settings that
// differ (as the API spells them, e.g. "memoryBytes") and
// VariablesChanged. A redeploy applies them. It is empty for a deployment
// that captured nothing (it follows its project).
func (c *Controller) Changes(ctx context.Context, d store.Deployment) ([]string, error) {
	if d.Captured == nil {
		return nil, nil
	}
	p, err := c.store.GetProjectByID(ctx, d.ProjectID)
	if err != nil {
		return nil, err
	}
	out, err := settingsDiff(d.Captured.Settings, p.Settings)
	if err != nil {
		return nil, err
	}
	vars, err := c.store.ListEnvVars(ctx, d.EnvironmentID)
	if err != nil {
		return nil, err
	}
	if !c.sameVars(d.Captured.Vars, vars) {
		out = append(out, VariablesChanged)
	}
	return out, nil
}

// settingsDiff returns the JSON names of the settings that differ, sorted.
func settingsDiff(was, now store.ProjectSettings) ([]string, error) {
	fields := func(st store.ProjectSettings) (map[string]json.RawMessage, error) {
		b, err := json.Marshal(st)
		if err != nil {
			return nil, err
		}
		m := map[string]json.RawMessage{}
		return m, json.Unmarshal(b, &m)
	}
	a, err := fields(was)
	if err != nil {
		return nil, err
	}
	b, err := fields(now)
	if err != nil {
		return nil, err
	}
	var out []string
	for k, v := range a {
		if !bytes.Equal(v, b[k]) {
			out = append(out, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out, nil
}

// sameVars reports whether two sets of sealed variables hold the same
// names, values and secrecy. Values sealed twice differ as bytes, so they
// are compared unsealed.
func (c *Controller) sameVars(was, now []store.EnvVar) bool {
	if len(was) != len(now) {
		return false
	}
	byName := make(map[string]store.EnvVar, len(was))
	for _, v := range was {
		byName[v.Name] = v
	}
	for _, v := range now {
		w, ok := byName[v.Name]
		if !ok || w.Secret != v.Secret {
			return false
		}
		if bytes.Equal(w.Value, v.Value) {
			continue
		}
		if c.cfg.Secrets == nil {
			return false
		}
		a, err1 := c.cfg.Secrets.Unseal(w.Value)
		b, err2 := c.cfg.Secrets.Unseal(v.Value)
		if err1 != nil || err2 != nil || !bytes.Equal(a, b) {
			return false
		}
	}
	return true
}
