package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
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

// capture returns what a deployment of p on env takes with it; with
// inherit, the variables of that environment of p come too, under env's.
func (c *Controller) capture(ctx context.Context, p store.Project, env store.Environment, inherit string) (*store.Captured, error) {
	vars, err := c.envVars(ctx, p.ID, env.ID, inherit)
	if err != nil {
		return nil, fmt.Errorf("reading variables: %w", err)
	}
	st := p.Settings
	st.Sandbox = project.SandboxOf(st, c.cfg.Sandbox) // the server's default may change; the deployment does not
	return &store.Captured{Settings: st, Vars: vars, Inherit: inherit}, nil
}

// envVars returns the variables of environment envID, under those of
// project's environment inherit when it is set and exists (sorted by
// name; never nil).
func (c *Controller) envVars(ctx context.Context, projectID, envID, inherit string) ([]store.EnvVar, error) {
	own, err := c.store.ListEnvVars(ctx, envID)
	if err != nil {
		return nil, err
	}
	if inherit == "" {
		if own == nil {
			own = []store.EnvVar{}
		}
		return own, nil
	}
	from, err := c.store.GetEnvironment(ctx, projectID, inherit)
	if errors.Is(err, store.ErrNotFound) {
		return append([]store.EnvVar{}, own...), nil
	}
	if err != nil {
		return nil, err
	}
	base, err := c.store.ListEnvVars(ctx, from.ID)
	if err != nil {
		return nil, err
	}
	byName := map[string]store.EnvVar{}
	for _, v := range base {
		byName[v.Name] = v
	}
	for _, v := range own {
		byName[v.Name] = v
	}
	out := make([]store.EnvVar, 0, len(byName))
	for _, v := range byName {
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
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
	now := p.Settings
	if d.Captured.Settings.Sandbox != "" { // captured resolved: compare with what the project resolves to now
		now.Sandbox = project.SandboxOf(now, c.cfg.Sandbox)
	}
	out, err := settingsDiff(d.Captured.Settings, now)
	if err != nil {
		return nil, err
	}
	vars, err := c.envVars(ctx, d.ProjectID, d.EnvironmentID, d.Captured.Inherit)
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
		if k == "previews" {
			continue // the project's, not its deployments': applies at once
		}
		if !bytes.Equal(v, b[k]) {
			out = append(out, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok && k != "previews" {
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
