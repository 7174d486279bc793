// Package deploy is Slipway's deployment lifecycle: a durable, restart-safe
// state machine per deployment.
//
// A deployment moves PENDING → INITIALIZING → BUILDING → DEPLOYING →
// RUNNING, or ends FAILED or STOPPED (see Status). Every transition is
// persisted in the store before it is acted on, so a Controller started on
// the same data after a crash reconciles what it finds: queued and
// half-built deployments are retried (a bounded number of times), deploying
// ones resume their health checks, running ones are re-attached to their
// sandboxes, never restarted.
//
// The Controller depends only on the contracts of the parts it drives —
// build.Builder, runtime.Driver and Routes (the router's table) — so builders and
// runtimes can be swapped without touching it.
package deploy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/slipwayhq/slipway/internal/build"
	"github.com/slipwayhq/slipway/internal/project"
	"github.com/slipwayhq/slipway/internal/runtime"
	"github.com/slipwayhq/slipway/internal/secrets"
	"github.com/slipwayhq/slipway/internal/store"
)

// Config wires a Controller. Store, Builder, Driver (or Sandboxes),
// Routes, Registry and DataDir are required.
type Config struct {
	Store   *store.Store
	Builder build.Builder
	// Driver runs the instances of deployments in the default sandbox
	// (Sandbox). With Sandboxes it may be nil.
	Driver runtime.Driver
	// Sandboxes holds the driver of each sandbox kind this server runs
	// (the project setting "sandbox": runc, gvisor, microvm), by kind:
	// each deployment's instances start in its kind's driver, and each
	// instance is reached, watched, stopped and recovered through the
	// driver whose Name its handle records. Their names must differ. A
	// deployment of a kind missing here fails to start, saying so. If
	// nil, {Sandbox: Driver}.
	Sandboxes map[string]runtime.Driver
	// Sandbox is the kind of deployments whose project sets none. If
	// empty, Driver's Name.
	Sandbox string
	// Unavailable says why a sandbox kind missing from Sandboxes cannot
	// run on this server (its runtime is not installed): a deployment of
	// that kind fails with it. May be nil.
	Unavailable map[string]error
	// Routes is the router's table, which the controller writes.
	Routes Routes
	// Registry is the host:port of the embedded registry that builds push
	// to and runtimes pull from.
	Registry string
	// RegistryGrant, if set, returns a registry password scoped to one
	// build of project (pull base images and the project's own images,
	// push to the project's repository) and its revocation, called when
	// the build ends. If nil, builds use the builder's own credentials.
	RegistryGrant func(project string) (password string, revoke func())
	// DataDir holds uploaded sources, build contexts and instance logs.
	DataDir string
	// BaseDomain is the suffix of every hostname. If empty,
	// "slipway.localhost".
	BaseDomain string
	// DeployWindow bounds how long a deployment may take to become healthy.
	// If zero, 5 minutes. A project setting overrides it.
	DeployWindow time.Duration
	// Builds is how many deployments may initialize and build at once.
	// If zero, 2.
	Builds int
	// BuildsPerProject is how many of those may belong to one project;
	// the project's other deployments wait while other projects' builds
	// take their turn. If zero, 1.
	BuildsPerProject int
	// BuildTimeout bounds a build (the BUILDING phase): a build still
	// running then is cancelled and its deployment FAILED. If zero, 30
	// minutes. A project setting (buildTimeout) overrides it.
	BuildTimeout time.Duration
	// MaxRetries is how many times a deployment interrupted by a server
	// restart is retried before it is failed. If zero, 3.
	MaxRetries int
	// Secrets decrypts environment variables (sealed by package project).
	// If nil, a deployment whose environment has variables fails to start.
	Secrets *secrets.Box
	// IdleTimeout is how long a RUNNING deployment's instance may go
	// without a request before it is stopped (scaled to zero); it starts
	// again on the next request. If zero, 5 minutes; negative means never.
	// A project setting overrides it.
	IdleTimeout time.Duration
	// Keep is how many RUNNING deployments per environment are kept
	// reachable; older ones, unless current, are retired to STOPPED.
	// If zero, 20.
	Keep int
	// Retention says what Collect removes and when builds are refused
	// for lack of disk space (see Retention).
	Retention Retention
	// Fetch checks out the commit of a deployment whose source lives in a
	// git repository (store.Deployment.SourceURL) into dir. If nil, such
	// deployments fail.
	Fetch func(ctx context.Context, d store.Deployment, dir string) error
	// Logs bounds what each instance puts in the runtime log: rates,
	// burst, and lines kept per deployment. Its zero value means the
	// defaults (see LogLimits).
	Logs LogLimits
	// PreparedSandboxes is how many sandboxes are kept prepared ahead for
	// the next wake of deployments scaled to zero, with a driver that can
	// (runtime.Preparer): the deployments that fell asleep last keep
	// theirs. If zero, 8; negative: none.
	PreparedSandboxes int
	// RestoreAheadMemory bounds the memory that sandboxes prepared ahead
	// hold with their app already restored from its snapshot (gVisor):
	// a sandbox prepared for a deployment that has a snapshot restores it
	// ahead, the app paused, if the snapshot fits beside those restored
	// ahead already; its wake then only resumes the app. Otherwise the
	// snapshot is restored at the wake. If zero,
	// DefaultRestoreAheadMemory; negative: none is restored ahead.
	RestoreAheadMemory int64
	// NoSnapshots turns snapshot wakes off (see snapshot.go): instances
	// on a driver that can save them (gVisor's) start the app each time,
	// as on the others. If false, the first instance of a deployment to
	// pass a health check is saved, and later ones resume from the save.
	NoSnapshots bool
	// Observer, if set, is told of status changes, wakes, sleeps and
	// restarts (Observers tells several).
	Observer Observer
	// InstanceStopped, if set, is called once an instance of a deployment
	// has stopped (scaled to zero, restarted, stopped, found stale): the
	// router drops its idle connections to it, which the end of a VM
	// does not close.
	InstanceStopped func(deployment string)
	// LogTap, if set, is given each instance's runtime log lines once they
	// are stored (log drains).
	LogTap LogTap
	// Log receives operational messages. If nil, slog.Default().
	Log *slog.Logger
}

// DefaultPreparedSandboxes is Config.PreparedSandboxes when zero.
const DefaultPreparedSandboxes = 8

// DefaultRestoreAheadMemory is Config.RestoreAheadMemory when zero: room
// for seven Flask apps restored ahead in gVisor (about 70 MiB each).
const DefaultRestoreAheadMemory = 512 << 20

// Controller runs deployments through their lifecycle.
type Controller struct {
	cfg   Config
	store *store.Store
	log   *slog.Logger
	hub   *hub
	hosts project.Hosts

	queue *buildQueue
	ctx   context.Context // lives as long as the controller
	stop  context.CancelFunc
	wg    sync.WaitGroup

	mu      sync.Mutex
	cancels map[string]context.CancelFunc // per deployment in progress
	// routeMu makes reading which hostnames a deployment has and routing
	// them one step, so that a change of an environment's current
	// deployment routed meanwhile is never overwritten by a stale read.
	routeMu sync.Mutex
	// live holds the RUNNING or DEPLOYING deployments with an instance, by
	// id (*liveDeployment). It is written under mu, so that changes to it
	// stay consistent with the rest of the controller's state, and read
	// without mu by the router's per-request hooks (liveByID).
	live sync.Map
	gc   collector // Collect, RunCollection
	// drivers holds every driver of cfg.Sandboxes by its Name, the name
	// handles record.
	drivers  map[string]runtime.Driver
	prepared preparedSet   // sandboxes prepared ahead for wakes
	snaps    snapshotState // snapshots being saved
}

// New validates cfg and returns a Controller. Call Start to reconcile and
// begin processing.
func New(cfg Config) (*Controller, error) {
	if cfg.Store == nil || cfg.Builder == nil || (cfg.Driver == nil && len(cfg.Sandboxes) == 0) || cfg.Routes == nil {
		return nil, errors.New("deploy: Store, Builder, Driver (or Sandboxes) and Routes are required")
	}
	drivers, err := sandboxDrivers(&cfg)
	if err != nil {
		return nil, err
	}
	if cfg.Registry == "" || cfg.DataDir == "" {
		return nil, errors.New("deploy: Registry and DataDir are required")
	}
	if cfg.BaseDomain == "" {
		cfg.BaseDomain = "slipway.localhost"
	}
	if cfg.DeployWindow <= 0 {
		cfg.DeployWindow = 5 * time.Minute
	}
	if cfg.Builds <= 0 {
		cfg.Builds = 2
	}
	if cfg.BuildsPerProject <= 0 {
		cfg.BuildsPerProject = 1
	}
	if cfg.BuildTimeout <= 0 {
		cfg.BuildTimeout = 30 * time.Minute
	}
	if cfg.MaxRetries <= 0 {
		cfg.MaxRetries = 3
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 5 * time.Minute
	}
	if cfg.Keep <= 0 {
		cfg.Keep = 20
	}
	if cfg.PreparedSandboxes == 0 {
		cfg.PreparedSandboxes = DefaultPreparedSandboxes
	}
	if cfg.RestoreAheadMemory == 0 {
		cfg.RestoreAheadMemory = DefaultRestoreAheadMemory
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	cfg.Logs = cfg.Logs.withDefaults()
	for _, dir := range []string{"sources", "builds", "logs"} {
		if err := os.MkdirAll(filepath.Join(cfg.DataDir, dir), 0o700); err != nil {
			return nil, fmt.Errorf("creating %s directory: %w", dir, err)
		}
	}
	ctx, stop := context.WithCancel(context.Background())
	return &Controller{
		cfg:     cfg,
		store:   cfg.Store,
		log:     cfg.Log,
		hub:     newHub(),
		hosts:   project.Hosts{Base: cfg.BaseDomain},
		queue:   newBuildQueue(cfg.BuildsPerProject, 10000),
		ctx:     ctx,
		stop:    stop,
		cancels: map[string]context.CancelFunc{},
		drivers: drivers,
	}, nil
}

// Start reconciles the persisted state with what is running and starts the
// build workers. It returns once every deployment has been looked at.
func (c *Controller) Start(ctx context.Context) error {
	// Uploads and fetches cut short by a crash never became deployments.
	for _, pattern := range []string{"upload-*", "fetch-*"} {
		stale, _ := filepath.Glob(filepath.Join(c.cfg.DataDir, "sources", pattern))
		for _, f := range stale {
			os.Remove(f)
		}
	}
	if err := c.reconcile(ctx); err != nil {
		return fmt.Errorf("reconciling deployments: %w", err)
	}
	for i := 0; i < c.cfg.Builds; i++ {
		c.wg.Add(1)
		go c.worker()
	}
	c.wg.Add(1)
	go c.reaper()
	return nil
}

// Close stops the workers and the supervision of instances. Instances keep
// running: a restarted server re-attaches to them.
func (c *Controller) Close() error {
	c.stop()
	c.wg.Wait()
	c.closePrepared()
	// Copy what the apps wrote so far; the files keep filling while the
	// server is down and the next start continues from the stored offsets.
	live := c.liveDeployments(func(*liveDeployment) bool { return true })
	for _, l := range live {
		l.stopTail()
	}
	return nil
}

// CreateRequest describes a new deployment.
type CreateRequest struct {
	// ID is the new deployment's id (store.NewID), for a caller that
	// records something about it first. If empty, a new one.
	ID          string
	Project     string
	Environment string // If empty, production.
	Trigger     string // upload, push, webhook, redeploy
	Promote     bool   // make it current on its environment when RUNNING
	Branch      string
	CommitSHA   string
	Message     string
	Author      string
	// Dirty marks an upload from a git work tree with uncommitted changes.
	Dirty bool
	// Source is a gzip-compressed tar of the source tree. If nil,
	// SourceURL names a git repository that is fetched at CommitSHA while
	// the deployment is INITIALIZING.
	Source    io.Reader
	SourceURL string
	// SourceImage, when set instead of a source, is the reference of a
	// prebuilt image to deploy (ParseImageRef).
	SourceImage string
	// Image and ImageDigest, when set, name an already built image of the
	// same source: the build is skipped (a redeploy without --rebuild).
	Image, ImageDigest string
	// MaxSourceBytes bounds the compressed source. If zero, 256 MiB.
	MaxSourceBytes int64
	// InheritVariables, if set, names an environment of the project whose
	// variables the deployment captures too, under its own environment's
	// (which win on a name both have): a pull request's preview takes
	// production's. If empty, only its own environment's.
	InheritVariables string
}

// ErrSourceTooLarge reports an upload over CreateRequest.MaxSourceBytes.
var ErrSourceTooLarge = errors.New("source upload too large")

// Create persists a new PENDING deployment with its source and queues it.
func (c *Controller) Create(ctx context.Context, req CreateRequest) (store.Deployment, error) {
	p, err := c.store.GetProject(ctx, req.Project)
	if err != nil {
		return store.Deployment{}, err
	}
	envName := req.Environment
	if envName == "" {
		envName = store.ProductionEnvironment
	}
	env, err := c.store.GetEnvironment(ctx, p.ID, envName)
	if err != nil {
		return store.Deployment{}, err
	}
	captured, err := c.capture(ctx, p, env, req.InheritVariables)
	if err != nil {
		return store.Deployment{}, err
	}
	if req.SourceImage != "" {
		d, err := c.store.CreateDeployment(ctx, store.Deployment{
			ID: req.ID, ProjectID: p.ID, EnvironmentID: env.ID, Status: string(Pending), Trigger: req.Trigger, Promote: req.Promote,
			SourceImage: strings.TrimSpace(req.SourceImage), Image: req.Image, ImageDigest: req.ImageDigest,
			Branch: req.Branch, CommitSHA: req.CommitSHA, CommitMessage: req.Message, CommitAuthor: req.Author,
			Captured: captured,
		})
		if err != nil {
			return d, err
		}
		c.queued(ctx, d)
		return d, nil
	}
	if req.Source == nil {
		if req.SourceURL == "" || req.CommitSHA == "" {
			return store.Deployment{}, errors.New("a deployment needs an uploaded source or a repository and commit")
		}
		d, err := c.store.CreateDeployment(ctx, store.Deployment{
			ID: req.ID, ProjectID: p.ID, EnvironmentID: env.ID, Status: string(Pending), Trigger: req.Trigger, Promote: req.Promote,
			SourceURL: req.SourceURL, Branch: req.Branch, CommitSHA: req.CommitSHA, CommitMessage: req.Message, CommitAuthor: req.Author,
			Captured: captured,
		})
		if err != nil {
			return d, err
		}
		c.queued(ctx, d)
		return d, nil
	}
	limit := req.MaxSourceBytes
	if limit <= 0 {
		limit = 256 << 20
	}
	// The source reaches disk before the deployment exists, so a PENDING
	// deployment always has its source.
	tmp, err := os.CreateTemp(filepath.Join(c.cfg.DataDir, "sources"), "upload-*")
	if err != nil {
		return store.Deployment{}, err
	}
	defer os.Remove(tmp.Name())
	n, err := io.Copy(tmp, io.LimitReader(req.Source, limit+1))
	if err == nil {
		err = tmp.Sync()
	}
	tmp.Close()
	if err != nil {
		return store.Deployment{}, fmt.Errorf("receiving source: %w", err)
	}
	if n > limit {
		return store.Deployment{}, fmt.Errorf("%w: more than %d MiB compressed", ErrSourceTooLarge, limit>>20)
	}
	if n == 0 {
		return store.Deployment{}, errors.New("source upload is empty")
	}
	id := req.ID
	if id == "" {
		id = store.NewID()
	}
	if err := os.Rename(tmp.Name(), c.sourcePath(id)); err != nil {
		return store.Deployment{}, err
	}
	d, err := c.store.CreateDeployment(ctx, store.Deployment{
		ID: id, ProjectID: p.ID, EnvironmentID: env.ID, Status: string(Pending),
		Trigger: req.Trigger, Promote: req.Promote,
		Branch: req.Branch, CommitSHA: req.CommitSHA, CommitMessage: req.Message, CommitAuthor: req.Author,
		Dirty: req.Dirty, Image: req.Image, ImageDigest: req.ImageDigest, Captured: captured,
	})
	if err != nil {
		os.Remove(c.sourcePath(id))
		return store.Deployment{}, err
	}
	c.queued(ctx, d)
	return d, nil
}

func (c *Controller) queued(ctx context.Context, d store.Deployment) {
	c.event(d.ID, store.LogBuild, "deployment %s queued (trigger %s)", d.ID, d.Trigger)
	c.routeDeployment(ctx, d) // its preview URL says "deploying" from now on
	c.enqueue(d)
}

// Stop stops a deployment: a build in progress is cancelled, instances are
// stopped, and its hostnames answer with a "stopped" page.
func (c *Controller) Stop(ctx context.Context, id string) (store.Deployment, error) {
	d, err := c.store.GetDeployment(ctx, id)
	if err != nil {
		return d, err
	}
	if Status(d.Status).Terminal() {
		return d, nil
	}
	c.mu.Lock()
	cancel := c.cancels[id]
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	for attempt := 0; ; attempt++ {
		err := c.transition(ctx, &d, Stopped, store.DeploymentPatch{})
		if err == nil {
			break
		}
		if Status(d.Status).Terminal() {
			return d, nil
		}
		if !errors.Is(err, store.ErrConflict) || attempt == 5 {
			return d, err
		}
		// It moved on meanwhile; try again from where it is now.
	}
	// The environment's hostnames move to the deployment it falls back to
	// before this one's instance stops, so no request meets a stopped app.
	c.fallBack(ctx, d)
	c.stopInstances(ctx, d.ID)
	c.routeDeployment(ctx, d)
	return d, nil
}

// Redeploy creates a new deployment of the same source and commit as
// deployment id, on the same environment, made current once RUNNING. Unless
// rebuild is set, the image already built is reused and the build skipped.
func (c *Controller) Redeploy(ctx context.Context, id string, rebuild bool) (store.Deployment, error) {
	d, err := c.store.GetDeployment(ctx, id)
	if err != nil {
		return d, err
	}
	if d.SourceImage != "" {
		req := CreateRequest{Project: d.ProjectName, Environment: d.EnvironmentName, Trigger: "redeploy", Promote: true,
			SourceImage: d.SourceImage}
		if !rebuild {
			req.Image, req.ImageDigest = d.Image, d.ImageDigest // the digest it ran, not where the tag is now
		}
		return c.Create(ctx, req)
	}
	f, err := os.Open(c.sourcePath(d.ID))
	if err != nil {
		return store.Deployment{}, fmt.Errorf("the source of deployment %s is no longer kept: %w", d.ID, store.ErrConflict)
	}
	defer f.Close()
	req := CreateRequest{
		Project: d.ProjectName, Environment: d.EnvironmentName, Trigger: "redeploy", Promote: true,
		Branch: d.Branch, CommitSHA: d.CommitSHA, Message: d.CommitMessage, Author: d.CommitAuthor, Dirty: d.Dirty,
		Source: f, MaxSourceBytes: 1 << 40,
	}
	if !rebuild && d.ImageDigest != "" {
		req.Image, req.ImageDigest = d.Image, d.ImageDigest
	}
	return c.Create(ctx, req)
}

// Deployment returns a deployment by id.
func (c *Controller) Deployment(ctx context.Context, id string) (store.Deployment, error) {
	return c.store.GetDeployment(ctx, id)
}

// Changed returns a channel closed at the next change of the deployment:
// a status change or a new log line.
func (c *Controller) Changed(id string) <-chan struct{} { return c.hub.wait(id) }

func (c *Controller) sourcePath(id string) string {
	return filepath.Join(c.cfg.DataDir, "sources", id+".tar.gz")
}

func (c *Controller) enqueue(d store.Deployment) {
	// A deployment created while Start reconciles is both queued by Create
	// and found PENDING by reconcile: it is built once.
	if err := c.queue.push(d.ID, d.ProjectID); err != nil {
		// The deployment stays PENDING in the store and is picked up at
		// the next start.
		c.log.Warn("build queue full; deployment stays pending", "deployment", d.ID)
	}
}

func (c *Controller) worker() {
	defer c.wg.Done()
	for {
		id, project, ok := c.queue.next(c.ctx)
		if !ok {
			return
		}
		c.build(id)
		c.queue.done(id, project)
	}
}
