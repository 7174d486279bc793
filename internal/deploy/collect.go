package deploy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/slipwayhq/slipway/internal/project"
	"github.com/slipwayhq/slipway/internal/store"
)

// Retention says what the collection (Controller.Collect) removes, and
// when new builds are refused for lack of disk space. Its zero value
// works: every default is documented beside its field.
type Retention struct {
	// StoppedFor is how long a STOPPED or FAILED deployment keeps what it
	// needs to be redeployed or read: its source, its instances' log files
	// and runtime log lines, its unpacked image and its registry image.
	// After that they are removed (its build log and its record stay).
	// If zero, 7 days.
	StoppedFor time.Duration

	// Grace protects registry content written less than this long ago (a
	// push in progress sends its blobs before its manifest). If zero, 1
	// hour.
	Grace time.Duration

	// CollectImages, if set, deletes from the registry what keep does not
	// keep and was written before before, outside the base images, and
	// returns how many manifests and bytes it freed (see
	// registry.Registry.CollectGarbage).
	CollectImages func(keep func(repo, digest string) bool, before time.Time) (manifests int, bytes int64, err error)

	// MinFreeDisk refuses new builds (they fail at once, saying why) while
	// the filesystem of the data directory has fewer free bytes; running
	// apps are not touched. If zero, builds are never refused.
	MinFreeDisk int64

	// FreeDisk returns the bytes free for unprivileged use on the
	// filesystem holding dir. If nil, statfs(2).
	FreeDisk func(dir string) (int64, error)
}

func (r Retention) stoppedFor() time.Duration {
	if r.StoppedFor <= 0 {
		return 7 * 24 * time.Hour
	}
	return r.StoppedFor
}

func (r Retention) grace() time.Duration {
	if r.Grace <= 0 {
		return time.Hour
	}
	return r.Grace
}

// freeDisk is statfs(2)'s available blocks times their size.
func freeDisk(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * st.Bsize, nil
}

// diskTooFull returns why a new build is refused, or "" when there is
// disk space enough (or it cannot be told).
func (c *Controller) diskTooFull() string {
	min := c.cfg.Retention.MinFreeDisk
	if min <= 0 {
		return ""
	}
	free := c.cfg.Retention.FreeDisk
	if free == nil {
		free = freeDisk
	}
	n, err := free(c.cfg.DataDir)
	if err != nil {
		c.log.Warn("reading free disk space", "dir", c.cfg.DataDir, "err", err)
		return ""
	}
	if n >= min {
		return ""
	}
	c.collectSoon()
	return fmt.Sprintf("not enough free disk space to build: %s free on the data directory (%s), below the server's minimum of %s (--min-free-disk); running apps keep serving",
		FormatBytes(n), c.cfg.DataDir, FormatBytes(min))
}

// FormatBytes renders n in binary units: "512 MiB", "1.5 GiB".
func FormatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	v := float64(n) / float64(div)
	s := fmt.Sprintf("%.1f", v)
	s = strings.TrimSuffix(s, ".0")
	return s + " " + string("KMGTP"[exp]) + "iB"
}

// Freed is what one collection removed.
type Freed struct {
	Deployments int   // STOPPED or FAILED for longer than Retention.StoppedFor, pruned
	Sources     int   // stored sources removed
	LogLines    int   // runtime log lines deleted (pruned deployments and project retention)
	Images      int   // unpacked images released
	Manifests   int   // registry manifests deleted
	Bytes       int64 // bytes of sources, log files and registry blobs removed
}

// collector remembers which deployments were pruned in this run of the
// server, so each is pruned once, and wakes Run early when disk is short.
type collector struct {
	mu     sync.Mutex
	pruned map[string]bool
	soon   chan struct{}
	once   sync.Once
}

func (g *collector) init() {
	g.once.Do(func() {
		g.pruned = map[string]bool{}
		g.soon = make(chan struct{}, 1)
	})
}

func (c *Controller) collectSoon() {
	c.gc.init()
	select {
	case c.gc.soon <- struct{}{}:
	default:
	}
}

// RunCollection collects at once and then every interval (if zero, every
// hour) until ctx ends, and sooner when a build was refused for lack of
// disk space, logging what each collection freed.
func (c *Controller) RunCollection(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = time.Hour
	}
	c.gc.init()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		began := time.Now()
		f, err := c.Collect(ctx)
		if err != nil && ctx.Err() == nil {
			c.log.Error("collecting disk space", "err", err)
		}
		if ctx.Err() != nil {
			return
		}
		c.log.Info("collected disk space", "freed", FormatBytes(f.Bytes), "deployments_pruned", f.Deployments,
			"sources", f.Sources, "log_lines", f.LogLines, "images_released", f.Images,
			"registry_manifests", f.Manifests, "took", time.Since(began).Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-c.gc.soon:
		}
	}
}

// Collect applies the retention policy once:
//
//   - deployments STOPPED or FAILED for longer than Retention.StoppedFor
//     lose their source, instance log files, runtime log lines and
//     unpacked image;
//   - each project's runtime logs are cut to its logMaxAge and logMaxBytes
//     (project.LogRetentionOf);
//   - the registry drops the images of projects' repositories that no kept
//     deployment uses (a repository being built for is left for later). Kept are the deployments not STOPPED or FAILED
//     (RUNNING ones, the rollback targets the environment keeps, those in
//     progress) and those stopped more recently than StoppedFor. Base
//     images are never collected.
func (c *Controller) Collect(ctx context.Context) (Freed, error) {
	c.gc.init()
	var f Freed
	var errs []error
	all, err := c.store.ListDeployments(ctx, store.DeploymentFilter{Limit: 1 << 30})
	if err != nil {
		return f, err
	}
	cutoff := time.Now().Add(-c.cfg.Retention.stoppedFor())
	keptDigests := map[string]bool{}
	repos := map[string]bool{} // the projects' repositories
	busy := map[string]bool{}  // those that a build may be pushing to
	var expired []store.Deployment
	for _, d := range all {
		if repo, ok := c.ownRepo(d.Image); ok {
			repos[repo] = true
		}
		switch Status(d.Status) {
		case Pending, Initializing, Building:
			busy[d.ProjectName] = true
		}
		ended := d.FinishedAt
		if ended.IsZero() {
			ended = d.UpdatedAt
		}
		if Status(d.Status).Terminal() && ended.Before(cutoff) {
			expired = append(expired, d)
			continue
		}
		if d.ImageDigest != "" {
			keptDigests[d.ImageDigest] = true
		}
	}

	// Kept deployments keep their log lines, but the files of their
	// instances that are gone, once copied whole, are not needed any more
	// (every wake of an app scaled to zero leaves two).
	for _, d := range all {
		if st := Status(d.Status); st != Running && st != Deploying {
			continue
		}
		n, err := c.removeCopiedLogFiles(ctx, d.ID)
		f.Bytes += n
		if err != nil {
			errs = append(errs, err)
		}
	}

	rm := c.imageRemover()
	released := map[string]bool{}
	for _, d := range expired {
		c.gc.mu.Lock()
		done := c.gc.pruned[d.ID]
		c.gc.mu.Unlock()
		if done {
			continue
		}
		if n, err := removeCounting(c.sourcePath(d.ID)); err != nil {
			errs = append(errs, err)
		} else if n > 0 {
			f.Sources++
			f.Bytes += n
		}
		for _, dir := range []string{"logs", "snapshots"} {
			n, err := removeCounting(filepath.Join(c.cfg.DataDir, dir, d.ID))
			f.Bytes += n
			if err != nil {
				errs = append(errs, err)
			}
		}
		lines, err := c.store.TrimLogs(ctx, d.ID, store.LogRuntime, 0)
		f.LogLines += lines
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if rm != nil && d.ImageDigest != "" && !keptDigests[d.ImageDigest] && !released[d.ImageDigest] {
			released[d.ImageDigest] = true
			if err := rm.RemoveImage(d.ImageDigest); err != nil {
				c.log.Warn("releasing the image of a pruned deployment", "deployment", d.ID, "err", err)
			} else {
				f.Images++
			}
		}
		c.gc.mu.Lock()
		c.gc.pruned[d.ID] = true
		c.gc.mu.Unlock()
		f.Deployments++
	}

	projects, err := c.store.ListProjects(ctx)
	if err != nil {
		return f, errors.Join(append(errs, err)...)
	}
	for _, p := range projects {
		repos[p.Name] = true
		maxAge, maxBytes := project.LogRetentionOf(p.Settings)
		n, err := c.store.TrimProjectLogs(ctx, p.ID, store.LogRuntime, time.Now().Add(-maxAge), maxBytes)
		f.LogLines += n
		if err != nil {
			errs = append(errs, fmt.Errorf("trimming the runtime logs of %s: %w", p.Name, err))
		}
	}

	if collect := c.cfg.Retention.CollectImages; collect != nil {
		keep := func(repo, digest string) bool {
			if digest == "" { // collect the repository at all?
				return !repos[repo] || busy[repo]
			}
			return keptDigests[digest]
		}
		m, n, err := collect(keep, time.Now().Add(-c.cfg.Retention.grace()))
		f.Manifests += m
		f.Bytes += n
		if err != nil {
			errs = append(errs, fmt.Errorf("collecting registry garbage: %w", err))
		}
	}
	return f, errors.Join(errs...)
}

// ownRepo returns the repository of image when it is in Slipway's
// registry ("host:port/web:tag" → "web").
func (c *Controller) ownRepo(image string) (string, bool) {
	rest, ok := strings.CutPrefix(image, c.cfg.Registry+"/")
	if !ok || rest == "" {
		return "", false
	}
	if i := strings.Index(rest, "@"); i >= 0 {
		rest = rest[:i]
	}
	if i := strings.LastIndex(rest, ":"); i > strings.LastIndex(rest, "/") {
		rest = rest[:i]
	}
	return rest, true
}

// removeCounting removes path (a file or a tree) and returns the bytes its
// files held; a missing path is no error.
func removeCounting(path string) (int64, error) {
	var n int64
	err := filepath.WalkDir(path, func(_ string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !e.IsDir() {
			if fi, err := e.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err := os.RemoveAll(path); err != nil {
		return 0, fmt.Errorf("removing %s: %w", path, err)
	}
	return n, nil
}

// removeCopiedLogFiles removes the stdout and stderr files of a
// deployment's exited, stopped or idle (scaled to zero) instances whose
// content is stored whole.
func (c *Controller) removeCopiedLogFiles(ctx context.Context, id string) (int64, error) {
	ins, err := c.store.ListInstances(ctx, id)
	if err != nil {
		return 0, err
	}
	var freed int64
	for _, in := range ins {
		if in.Status != "exited" && in.Status != "stopped" && in.Status != "idle" {
			continue
		}
		for _, file := range []struct {
			path string
			off  int64
		}{{in.StdoutPath, in.StdoutOffset}, {in.StderrPath, in.StderrOffset}} {
			fi, err := os.Stat(file.path)
			if err != nil || fi.Size() > file.off {
				continue // gone already, or not copied whole yet
			}
			if os.Remove(file.path) == nil {
				freed += fi.Size()
			}
		}
	}
	return freed, nil
}
