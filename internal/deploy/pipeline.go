package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/slipwayhq/slipway/internal/build"
	planpkg "github.com/slipwayhq/slipway/internal/build/plan"
	"github.com/slipwayhq/slipway/internal/project"
	"github.com/slipwayhq/slipway/internal/source"
	"github.com/slipwayhq/slipway/internal/store"
)

// transition moves d to status to, persisting the phase timestamps that
// the move opens and closes together with patch, and only then announces
// it. d is updated in place (also on ErrConflict, to what the store holds).
func (c *Controller) transition(ctx context.Context, d *store.Deployment, to Status, patch store.DeploymentPatch) error {
	from := Status(d.Status)
	if !from.CanMoveTo(to) {
		return &IllegalTransitionError{From: from, To: to}
	}
	t := time.Now().UTC()
	st := string(to)
	patch.Status = &st
	closeOpen := func() {
		switch from {
		case Initializing:
			patch.InitEndedAt = &t
		case Building:
			patch.BuildEndedAt = &t
		case Deploying:
			patch.DeployEndedAt = &t
		}
	}
	switch to {
	case Initializing:
		patch.InitializingAt = &t
	case Building:
		closeOpen()
		patch.BuildingAt = &t
	case Deploying:
		closeOpen()
		patch.DeployingAt = &t
	case Running:
		closeOpen()
	case Failed, Stopped:
		closeOpen()
		patch.FinishedAt = &t
	}
	msg := fmt.Sprintf("status %s → %s", from, to)
	if to == Failed && patch.FailureReason != nil {
		msg += ": " + *patch.FailureReason
	}
	line := store.LogLine{DeploymentID: d.ID, Kind: store.LogBuild, Stream: "slipway", Time: t, Text: msg}
	updated, err := c.store.UpdateDeployment(ctx, d.ID, string(from), patch, line)
	if updated.ID != "" {
		*d = updated
	}
	if err != nil {
		return err
	}
	c.hub.notify(d.ID)
	if o := c.cfg.Observer; o != nil {
		o.StatusChanged(*d, from)
	}
	c.log.Info("deployment status", "deployment", d.ID, "project", d.ProjectName, "from", from, "to", to)
	return nil
}

// fail moves d to FAILED with a reason a user understands.
func (c *Controller) fail(ctx context.Context, d *store.Deployment, reason string) {
	if Status(d.Status).Terminal() {
		return
	}
	if err := c.transition(ctx, d, Failed, store.DeploymentPatch{FailureReason: &reason}); err != nil {
		c.log.Error("failing deployment", "deployment", d.ID, "err", err)
	} else {
		// Current only if a server went down between promoting it and
		// announcing it RUNNING.
		c.fallBack(ctx, *d)
	}
	c.routeDeployment(ctx, *d)
}

// track registers a cancel func for the deployment's work in progress.
func (c *Controller) track(id string) (context.Context, func()) {
	ctx, cancel := context.WithCancel(c.ctx)
	c.mu.Lock()
	c.cancels[id] = cancel
	c.mu.Unlock()
	return ctx, func() {
		c.mu.Lock()
		delete(c.cancels, id)
		c.mu.Unlock()
		cancel()
	}
}

// build runs a queued deployment through INITIALIZING and BUILDING and hands
// it to the deploy phase. It resumes a deployment interrupted mid-way.
func (c *Controller) build(id string) {
	ctx, done := c.track(id)
	d, err := c.store.GetDeployment(ctx, id)
	if err != nil {
		done()
		c.log.Error("loading queued deployment", "deployment", id, "err", err)
		return
	}
	ok := c.initializeAndBuild(ctx, &d)
	done()
	if ok {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.deploy(d)
		}()
	}
}

func (c *Controller) initializeAndBuild(ctx context.Context, d *store.Deployment) bool {
	if Status(d.Status) == Pending {
		if reason := c.diskTooFull(); reason != "" {
			c.fail(ctx, d, reason)
			return false
		}
		if err := c.transition(ctx, d, Initializing, store.DeploymentPatch{}); err != nil {
			c.log.Error("starting deployment", "deployment", d.ID, "err", err)
			return false
		}
	}
	if s := Status(d.Status); s != Initializing && s != Building {
		return false // stopped meanwhile, or not ours to build
	}
	settings, err := c.settingsOf(ctx, *d)
	if err != nil {
		c.fail(ctx, d, "internal error: "+err.Error())
		return false
	}
	if d.SourceImage != "" {
		return c.initializeImage(ctx, d, settings)
	}

	// INITIALIZING: unpack the source and detect how to build it. A
	// deployment interrupted while BUILDING redoes this silently.
	work := filepath.Join(c.cfg.DataDir, "builds", d.ID)
	defer os.RemoveAll(work)
	src := filepath.Join(work, "src")
	if err := c.unpack(d, src); err != nil {
		c.fail(ctx, d, err.Error())
		return false
	}
	pl, err := c.planFor(d, settings, src)
	if err != nil {
		c.fail(ctx, d, err.Error())
		return false
	}
	if Status(d.Status) == Initializing {
		planJSON, _ := json.Marshal(pl)
		plan := string(planJSON)
		builder := "dockerfile"
		if pl.Provider != planpkg.ProviderDockerfile {
			builder = "plan:" + pl.Provider
		}
		// The start command is resolved once, here, and kept: changing the
		// project's custom command later never touches this deployment.
		start, detected := pl.StartCommand, pl.DetectedStartCommand
		if err := c.transition(ctx, d, Building, store.DeploymentPatch{
			StartCommand: &start, DetectedStartCommand: &detected, Builder: &builder, Plan: &plan,
		}); err != nil {
			return false
		}
	}

	// BUILDING, unless the image of this very source exists (a redeploy).
	if d.ImageDigest != "" {
		c.event(d.ID, store.LogBuild, "reusing image %s; no rebuild", d.Image)
		image, digest := d.Image, d.ImageDigest
		return c.transition(ctx, d, Deploying, store.DeploymentPatch{Image: &image, ImageDigest: &digest}) == nil
	}
	req := build.Request{
		ContextDir: filepath.Join(src, filepath.FromSlash(pl.Root)),
		Image:      fmt.Sprintf("%s/%s:%s", c.cfg.Registry, d.ProjectName, d.ID),
		Log:        c.newLogWriter(d.ID, store.LogBuild).line,
		// Caches are the project's own: another project's Dockerfile
		// can't fill them with what this one's build would then run.
		CacheNamespace: "slipway-project-" + d.ProjectID,
	}
	if pl.Provider == planpkg.ProviderDockerfile {
		req.Dockerfile = pl.DockerfilePath
	} else {
		text, err := pl.Dockerfile()
		if err != nil {
			c.fail(ctx, d, "rendering the build plan: "+err.Error())
			return false
		}
		req.DockerfileContent = []byte(text)
	}
	if c.cfg.RegistryGrant != nil {
		pw, revoke := c.cfg.RegistryGrant(d.ProjectName)
		defer revoke()
		req.RegistryAuth = map[string]string{c.cfg.Registry: pw}
	}
	// A build may hold its worker for its project's build timeout at
	// most: then its solve is cancelled and the deployment fails, while
	// the current deployment keeps serving.
	timeout := project.BuildTimeout(settings, c.cfg.BuildTimeout)
	bctx, cancel := context.WithTimeoutCause(ctx, timeout, errBuildDeadline)
	defer cancel()
	res, err := c.cfg.Builder.Build(bctx, req)
	if err != nil {
		if ctx.Err() != nil {
			return false // stopped by a user, or the server is shutting down
		}
		if errors.Is(context.Cause(bctx), errBuildDeadline) {
			c.fail(ctx, d, fmt.Sprintf("build exceeded %s deadline", timeout))
			return false
		}
		var be *build.Error
		if errors.As(err, &be) {
			c.fail(ctx, d, "build failed: "+be.Error())
		} else {
			c.log.Error("build", "deployment", d.ID, "err", err)
			c.fail(ctx, d, "build failed: "+err.Error())
		}
		return false
	}
	c.event(d.ID, store.LogBuild, "pushed %s", res.Image)
	if err := c.transition(ctx, d, Deploying, store.DeploymentPatch{Image: &res.Image, ImageDigest: &res.Digest}); err != nil {
		return false
	}
	return true
}

// errBuildDeadline is the cause of a build cancelled at its deadline.
var errBuildDeadline = errors.New("build deadline exceeded")

// unpack extracts the deployment's uploaded source into dir.
func (c *Controller) unpack(d *store.Deployment, dir string) error {
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("internal error: %v", err)
	}
	if _, err := os.Stat(c.sourcePath(d.ID)); err != nil && d.SourceURL != "" {
		if err := c.fetch(d); err != nil {
			return err
		}
	}
	f, err := os.Open(c.sourcePath(d.ID))
	if err != nil {
		return errors.New("the uploaded source is missing (the upload did not complete)")
	}
	defer f.Close()
	st, err := source.Extract(f, dir, source.Limits{})
	if err != nil {
		var se *source.Error
		if errors.As(err, &se) {
			return err
		}
		return fmt.Errorf("unpacking source: %v", err)
	}
	c.event(d.ID, store.LogBuild, "unpacked source: %d files, %s", st.Files, source.FormatBytes(st.Bytes))
	return nil
}

// startCommand turns a start command into the argv that replaces the
// image's entrypoint, or nil to keep the image's own.
func startCommand(cmd string) []string {
	if strings.TrimSpace(cmd) == "" {
		return nil
	}
	return []string{"/bin/sh", "-c", cmd}
}

// fetch checks out a deployment's commit from its repository and stores it
// packed, as an upload would be, so a redeploy can reuse it.
func (c *Controller) fetch(d *store.Deployment) error {
	if c.cfg.Fetch == nil {
		return errors.New("this server cannot fetch sources from git repositories")
	}
	c.event(d.ID, store.LogBuild, "fetching %s at %s", d.SourceURL, d.CommitSHA)
	dir, err := os.MkdirTemp(filepath.Join(c.cfg.DataDir, "builds"), "fetch-")
	if err != nil {
		return fmt.Errorf("internal error: %v", err)
	}
	defer os.RemoveAll(dir)
	checkout := filepath.Join(dir, "src")
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Minute)
	defer cancel()
	if err := c.cfg.Fetch(ctx, *d, checkout); err != nil {
		return fmt.Errorf("fetching the source: %v", err)
	}
	tmp, err := os.CreateTemp(filepath.Join(c.cfg.DataDir, "sources"), "fetch-*")
	if err != nil {
		return fmt.Errorf("internal error: %v", err)
	}
	defer os.Remove(tmp.Name())
	err = source.Pack(checkout, tmp)
	if err == nil {
		err = tmp.Sync()
	}
	tmp.Close()
	if err != nil {
		return fmt.Errorf("packing the fetched source: %v", err)
	}
	return os.Rename(tmp.Name(), c.sourcePath(d.ID))
}

// planFor returns the deployment's build plan: the one it stored (a
// deployment resumed after a restart builds exactly what was decided), or
// one detected now in src, whose facts go to the build log.
func (c *Controller) planFor(d *store.Deployment, st store.ProjectSettings, src string) (*planpkg.Plan, error) {
	if d.Plan != "" {
		var pl planpkg.Plan
		if err := json.Unmarshal([]byte(d.Plan), &pl); err == nil {
			return &pl, nil
		}
	}
	pl, err := planpkg.Detect(src, planpkg.Options{
		Root: st.RootDirectory, DockerfilePath: st.Dockerfile, StartCommand: st.StartCommand,
	})
	if err != nil {
		if planpkg.IsUserError(err) {
			return nil, err
		}
		return nil, fmt.Errorf("detecting how to build the source: %v", err)
	}
	c.event(d.ID, store.LogBuild, "build plan: %s", pl.Provider)
	f := pl.Facts
	for _, fact := range []struct {
		name string
		f    *planpkg.Fact
	}{{"project root", f.ProjectRoot}, {"dockerfile", f.Dockerfile}, {"language", f.Language}, {"version", f.LanguageVersion},
		{"package manager", f.PackageManager}, {"framework", f.Framework}, {"entry point", f.EntryPoint}, {"output", f.OutputDir}} {
		if fact.f == nil {
			continue
		}
		where := ""
		if fact.f.File != "" {
			where = " (" + fact.f.File
			if fact.f.Line > 0 {
				where += fmt.Sprintf(":%d", fact.f.Line)
			}
			where += ")"
		}
		c.event(d.ID, store.LogBuild, "  %s: %s%s %s", fact.name, fact.f.Value, where, fact.f.Reason)
	}
	for _, w := range pl.Warnings {
		c.event(d.ID, store.LogBuild, "  warning: %s", w)
	}
	if pl.StartCommand != "" {
		c.event(d.ID, store.LogBuild, "  start command: %s", pl.StartCommand)
	}
	return pl, nil
}
