package baseimage

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Maker makes the images of Build that a layout lacks in the background,
// one at a time in the order of Names(), and seeds each as soon as it is
// written, so that a server can take its first deploy before every image
// exists. A build that needs an image calls Wait first: the image is made
// next (or the one being made is awaited), and the build's log says what
// it waits for, how long that usually takes, and Build's progress lines.
// While a build runs (Hold), images that no build waits for are not
// started, so background work does not slow the builds down.
//
// A Maker's lifecycle: NewMaker, Start, any number of Wait and Hold from
// any goroutine, Close.
type Maker struct {
	cfg MakerConfig

	mu    sync.Mutex
	jobs  map[string]*job // images not made yet (queued, being made, or failed), by name
	queue []*job          // queued or being made, in the order they are made
	holds int             // builds running: images nobody waits for wait
	wake  chan struct{}   // a job was queued or needed, or a hold released
	// lines are the progress lines of every job so far ("golang:
	// apt-get install …"); changed is closed and replaced when one is
	// added. Images are made one at a time: a build waiting for one
	// shows those of the image being made, its own or the one before.
	lines   []string
	changed chan struct{}
	stop    context.CancelFunc
	stopped chan struct{}
}

// MakerConfig configures a Maker.
type MakerConfig struct {
	// Options are those of every Build (OutDir, CacheDir, Suite, …);
	// the Maker sets Images and Log itself.
	Options Options
	// Seed receives each image of the layout written for an image made,
	// e.g. (*registry.Registry).Import. If nil, nothing is seeded.
	Seed func(ctx context.Context, ref string, img v1.Image) error
	// Build makes the image named in its Options.Images into the layout at
	// Options.OutDir. If nil, Build.
	Build func(ctx context.Context, opts Options) error
	// Log receives a line when an image is begun, made or fails, and the
	// output of Build at debug level. If nil, slog.Default().
	Log *slog.Logger
}

// job is the making of one image.
type job struct {
	name    string
	waiters int       // builds waiting for it: made first, even while builds run
	started time.Time // zero while queued
	// firstLine is the index of its first line in the Maker's lines.
	firstLine int
	done      chan struct{}
	err       error // set before done is closed
}

// NewMaker returns a Maker of the images that the layout at
// cfg.Options.OutDir lacks. Nothing is made before Start.
func NewMaker(cfg MakerConfig) (*Maker, error) {
	if cfg.Build == nil {
		cfg.Build = Build
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	dir := cfg.Options.withDefaults().OutDir
	imgs, err := Images(dir)
	if err != nil {
		return nil, err
	}
	m := &Maker{cfg: cfg, jobs: map[string]*job{}, wake: make(chan struct{}, 1), changed: make(chan struct{})}
	for _, name := range Names() {
		if !slices.ContainsFunc(imgs, func(im Image) bool { return im.Name == name }) {
			m.queueLocked(name)
		}
	}
	return m, nil
}

// Missing lists the images not made yet, in the order they will be made.
func (m *Maker) Missing() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, j := range m.queue {
		out = append(out, j.name)
	}
	return out
}

// Start begins making the missing images in the background until ctx
// ends or Close is called.
func (m *Maker) Start(ctx context.Context) {
	ctx, m.stop = context.WithCancel(ctx)
	m.stopped = make(chan struct{})
	if len(m.Missing()) > 0 {
		m.cfg.Log.Info("making the missing base images in the background", "images", strings.Join(m.Missing(), ","),
			"dir", m.cfg.Options.withDefaults().OutDir)
	}
	go func() {
		defer close(m.stopped)
		for {
			j := m.next(ctx)
			if j == nil {
				return
			}
			m.make(ctx, j)
		}
	}()
}

// Close stops making images (an image being made is abandoned, to be
// made again by the next Maker) and waits for the background work to end.
func (m *Maker) Close() {
	if m.stop == nil {
		return
	}
	m.stop()
	<-m.stopped
}

// Hold marks a build as running until release is called: meanwhile no
// image that no build waits for is begun.
func (m *Maker) Hold() (release func()) {
	m.mu.Lock()
	m.holds++
	m.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			m.mu.Lock()
			m.holds--
			m.mu.Unlock()
			m.signal()
		})
	}
}

// Wait returns once the images standing in for refs (see For; references
// without one are ignored) are made and seeded, making them first if none
// is being made. Its lines (what it waits for, how long that usually
// takes, progress) go to logf. It fails when ctx ends or an image cannot
// be made; an image that failed before is tried again.
func (m *Maker) Wait(ctx context.Context, refs []string, logf func(line string)) error {
	var seen []string
	for _, ref := range refs {
		name, ok := For(ref)
		if !ok || slices.Contains(seen, name) {
			continue
		}
		seen = append(seen, name)
		for {
			m.mu.Lock()
			j, ok := m.jobs[name]
			if !ok {
				m.mu.Unlock()
				break // made
			}
			if j.failed() {
				delete(m.jobs, name)
				j = m.queueLocked(name)
			}
			j.waiters++
			m.mu.Unlock()
			m.signal()
			err := m.await(ctx, ref, j, logf)
			m.mu.Lock()
			j.waiters--
			m.mu.Unlock()
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// queueLocked queues the making of name. m.mu is held.
func (m *Maker) queueLocked(name string) *job {
	j := &job{name: name, done: make(chan struct{})}
	m.jobs[name] = j
	// In the order of Names(): parents before the images built on them.
	i := slices.IndexFunc(m.queue, func(q *job) bool { return q.started.IsZero() && order(q.name) > order(name) })
	if i < 0 {
		i = len(m.queue)
	}
	m.queue = slices.Insert(m.queue, i, j)
	return j
}

func order(name string) int { return slices.Index(Names(), name) }

func (m *Maker) signal() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// next blocks until an image may be begun and returns its job: the first
// one a build waits for, else, while no build runs, the first queued; nil
// once ctx ends.
func (m *Maker) next(ctx context.Context) *job {
	for ctx.Err() == nil {
		m.mu.Lock()
		var pick *job
		for _, j := range m.queue {
			if j.waiters > 0 {
				pick = j
				break
			}
		}
		if pick == nil && m.holds == 0 && len(m.queue) > 0 {
			pick = m.queue[0]
		}
		if pick != nil {
			pick.started, pick.firstLine = time.Now(), len(m.lines)
		}
		m.mu.Unlock()
		if pick != nil {
			return pick
		}
		select {
		case <-ctx.Done():
		case <-m.wake:
		}
	}
	return nil
}

// make makes j's image and seeds it.
func (m *Maker) make(ctx context.Context, j *job) {
	log := m.cfg.Log.With("image", j.name)
	log.Info("making base image", "usually", m.estimate(j.name).String())
	lines := &lineWriter{line: func(l string) {
		if p, ok := strings.CutPrefix(l, "==> "); ok {
			m.progress(p)
		} else if p, ok := strings.CutPrefix(l, "I: "); ok && isProgress(l) {
			m.progress("debootstrap: " + p)
		}
		log.Debug("base image build: " + l)
	}}
	opts := m.cfg.Options
	opts.Images, opts.Log, opts.Force = []string{j.name}, lines, false
	err := m.cfg.Build(ctx, opts)
	lines.flush()
	if err == nil {
		err = m.seed(ctx, j.name)
	}
	took := time.Since(j.started).Round(time.Second)
	m.mu.Lock()
	m.queue = slices.DeleteFunc(m.queue, func(q *job) bool { return q == j })
	if err == nil {
		delete(m.jobs, j.name)
	} else {
		j.err = err
	}
	close(j.done)
	m.mu.Unlock()
	m.signal()
	switch {
	case err == nil:
		log.Info("made base image", "took", took.String())
	case ctx.Err() == nil:
		log.Warn("making base image failed; a build that needs it tries again", "took", took.String(), "err", err)
	}
}

// isProgress reports whether a line of Build's output says how it
// progresses: its own lines ("==> golang: …"), and the lines of
// debootstrap's output that begin a phase ("I: Unpacking the base
// system...") rather than a package.
func isProgress(line string) bool {
	if strings.HasPrefix(line, "==> ") {
		return true
	}
	line, ok := strings.CutPrefix(line, "I: ")
	if !ok {
		return false
	}
	for _, p := range []string{"Resolving dependencies of required", "Installing core packages", "Unpacking required packages",
		"Configuring required packages", "Unpacking the base system", "Configuring the base system", "Base system installed"} {
		if strings.HasPrefix(line, p) {
			return true
		}
	}
	return false
}

// seed seeds the images of the layout that Build wrote for name.
func (m *Maker) seed(ctx context.Context, name string) error {
	imgs, err := Images(m.cfg.Options.withDefaults().OutDir)
	if err != nil {
		return err
	}
	n := 0
	for _, im := range imgs {
		if im.Name != name {
			continue
		}
		n++
		if m.cfg.Seed != nil {
			if err := m.cfg.Seed(ctx, im.Ref, im.Image); err != nil {
				return fmt.Errorf("seeding %s: %w", im.Ref, err)
			}
		}
	}
	if n == 0 {
		return fmt.Errorf("the build wrote no %s image", name)
	}
	return nil
}

// estimate is about how long making name takes, its parent's rootfs
// included when the parent is not made yet.
func (m *Maker) estimate(name string) time.Duration {
	s, _ := findSpec(name)
	d := s.typical
	if s.parent != "" {
		m.mu.Lock()
		_, pending := m.jobs[s.parent]
		m.mu.Unlock()
		if pending {
			d += m.estimate(s.parent)
		}
	}
	return d
}

// progressEvery is how often a waiting build's log says it still waits.
var progressEvery = 15 * time.Second

// await waits for j, reporting to logf.
func (m *Maker) await(ctx context.Context, ref string, j *job, logf func(string)) error {
	m.mu.Lock()
	started, ahead := j.started, m.runningLocked()
	m.mu.Unlock()
	est := m.estimate(j.name)
	began := time.Now()
	switch {
	case !started.IsZero():
		logf(fmt.Sprintf("base image %s is being made (stand-in %q, built on this host, begun %s ago; it usually takes about %s); the build waits for it",
			ref, j.name, time.Since(started).Round(time.Second), roundEstimate(est)))
	case ahead != nil && ahead != j:
		logf(fmt.Sprintf("base image %s is not made yet (stand-in %q, built on this host): it is made next, once %q is, and usually takes about %s; the build waits for it",
			ref, j.name, ahead.name, roundEstimate(est)))
	default:
		logf(fmt.Sprintf("base image %s is not made yet: building the stand-in %q on this host now (it usually takes about %s); the build waits for it",
			ref, j.name, roundEstimate(est)))
	}
	tick := time.NewTicker(progressEvery)
	defer tick.Stop()
	// The image being made is shown from its first line.
	m.mu.Lock()
	shown := len(m.lines)
	if r := m.runningLocked(); r != nil {
		shown = r.firstLine
	}
	m.mu.Unlock()
	// show logs the progress lines added since the last call.
	show := func() <-chan struct{} {
		m.mu.Lock()
		lines, changed := m.lines[shown:], m.changed
		shown = len(m.lines)
		m.mu.Unlock()
		for _, l := range lines {
			logf("base image " + l)
		}
		return changed
	}
	for {
		changed := show()
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for base image %s: %w", ref, context.Cause(ctx))
		case <-j.done:
			show()
			if j.err != nil {
				return fmt.Errorf("making base image %s (stand-in %q): %w", ref, j.name, j.err)
			}
			logf(fmt.Sprintf("base image %s is ready (waited %s)", ref, time.Since(began).Round(time.Second)))
			return nil
		case <-changed:
		case <-tick.C:
			m.mu.Lock()
			started, ahead := j.started, m.runningLocked()
			m.mu.Unlock()
			if started.IsZero() && ahead != nil {
				logf(fmt.Sprintf("still waiting for base image %s: %q is being made first (%s so far)",
					ref, ahead.name, time.Since(ahead.started).Round(time.Second)))
			} else if !started.IsZero() {
				logf(fmt.Sprintf("still making base image %s: %s so far, usually about %s",
					ref, time.Since(started).Round(time.Second), roundEstimate(est)))
			}
		}
	}
}

// runningLocked is the job being made, if any. m.mu is held.
func (m *Maker) runningLocked() *job {
	for _, j := range m.queue {
		if !j.started.IsZero() {
			return j
		}
	}
	return nil
}

func roundEstimate(d time.Duration) time.Duration {
	if d >= time.Minute {
		return d.Round(30 * time.Second)
	}
	return d.Round(5 * time.Second)
}

func (j *job) failed() bool {
	select {
	case <-j.done:
		return j.err != nil
	default:
		return false
	}
}

// progress adds a progress line ("golang: apt-get install …").
func (m *Maker) progress(line string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lines = append(m.lines, line)
	close(m.changed)
	m.changed = make(chan struct{})
}

// lineWriter calls line for each line written to it.
type lineWriter struct {
	buf  bytes.Buffer
	line func(string)
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf.Write(p)
	for {
		i := bytes.IndexAny(w.buf.Bytes(), "\r\n")
		if i < 0 {
			return len(p), nil
		}
		l := string(w.buf.Next(i + 1))
		if l = strings.TrimRight(l, "\r\n"); l != "" {
			w.line(l)
		}
	}
}

func (w *lineWriter) flush() {
	if l := strings.TrimSpace(w.buf.String()); l != "" {
		w.line(l)
	}
	w.buf.Reset()
}
