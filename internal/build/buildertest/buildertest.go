// Package buildertest is the conformance suite every build.Builder passes:
// the BuildKit builder (package buildkit) and the stand-in that tests the
// code around builders (package buildtest).
//
// A builder's test calls Run with a Harness:
//
//	buildertest.Run(t, buildertest.Harness{
//		New:           func(t *testing.T) build.Builder { return newBuilder(t) },
//		Source:        writeSource, // a source tree for each Scenario
//		Registry:      host,
//		FailingStep:   "RUN make",
//		MalformedStep: "Dockerfile:2",
//	})
//
// The suite builds the sources the harness writes and checks what
// package build promises: a good source builds and yields a digest
// reference in the requested repository; every line a step prints reaches
// Request.Log, in order, timestamped, never concurrently and never after
// Build returns, and while the build still runs; a failing step and a
// malformed Dockerfile are *build.Error naming the step or line, the log
// keeping the lines before the failure; Request.Dockerfile and
// Request.DockerfileContent choose the Dockerfile; a missing Dockerfile or
// one outside the source is the user's error, a missing source directory
// is not; a done context stops a build (and its step's processes)
// promptly with an error wrapping its cause, and the builder builds again;
// concurrent builds keep their logs apart and get distinct digests.
//
// The suite bounds every wait with a generous deadline so that a broken
// builder fails instead of hanging; it asserts no timings.
package buildertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/internal/build"
)

// Kind is what a source does when it is built.
type Kind int

const (
	// Succeeds: one step prints Scenario.Output, and the build succeeds.
	Succeeds Kind = iota
	// Fails: one step prints Scenario.Output, then fails (a RUN step that
	// exits non-zero, say).
	Fails
	// Blocks: one step prints Scenario.Output, then runs until the build
	// is cancelled.
	Blocks
	// Malformed: the Dockerfile does not parse; nothing is printed.
	Malformed
)

func (k Kind) String() string {
	switch k {
	case Succeeds:
		return "succeeds"
	case Fails:
		return "fails"
	case Blocks:
		return "blocks"
	case Malformed:
		return "malformed"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Scenario is a source the suite asks the harness to write.
type Scenario struct {
	Kind Kind
	// Token is unique to this scenario: lowercase letters and digits,
	// contained in every line of Output. A harness may put it into the
	// command of the step, to find that step's processes (StepProcesses).
	Token string
	// Output are the lines one step of the build prints, in this order.
	// Each is printable ASCII without quotes or backslashes.
	Output []string
}

// Harness is what the suite needs from a builder's test.
type Harness struct {
	// New returns the builder under test. The suite calls it once per
	// subtest; if the value implements io.Closer, the suite closes it at
	// the end of the subtest.
	New func(t *testing.T) build.Builder
	// Source writes a source tree for s into a new directory and returns
	// that directory. Its Dockerfile must be the file named Dockerfile at
	// the root, and the source must build the same when that Dockerfile is
	// moved elsewhere in the tree or passed as Request.DockerfileContent
	// (the suite does both): it names files relative to the source root.
	Source func(t *testing.T, s Scenario) string
	// Registry is the registry host the suite pushes to, e.g.
	// "127.0.0.1:7300"; images go to Registry+"/buildertest/...".
	Registry string
	// FailingStep is a part of the Error.Step that names the failing step
	// of a Fails source, e.g. "RUN make". It must not be empty.
	FailingStep string
	// MalformedStep is a part of the Error.Step that names the line at
	// fault in a Malformed source, e.g. "Dockerfile:2". It must not be
	// empty.
	MalformedStep string
	// CheckPushed, if set, checks that res was pushed as req asked: the
	// image pulls by res.Image, and req.Image names the same digest. The
	// stand-in builder pushes nothing, so its test has none.
	CheckPushed func(t *testing.T, req build.Request, res build.Result)
	// StepProcesses, if set, counts the processes of the build step of s
	// that run now. The suite checks that a Blocks step has some while it
	// blocks, and none once its cancelled build returned (within
	// CancelTimeout): cancelling stops the step, not only the wait for it.
	// The stand-in builder runs no processes, so its test has none.
	StepProcesses func(t *testing.T, s Scenario) int
}

// Timeout bounds each build of the suite. It is a deadline for failure,
// not a timing requirement: a cold build may pull a base image.
const Timeout = 3 * time.Minute

// CancelTimeout bounds how long Build may take to return once its context
// is done ("promptly").
const CancelTimeout = 30 * time.Second

// outputLines is how many lines each source prints.
const outputLines = 3

// Run runs the conformance suite against the builder of h.
func Run(t *testing.T, h Harness) {
	if h.New == nil || h.Source == nil || h.Registry == "" || h.FailingStep == "" || h.MalformedStep == "" {
		t.Fatal("buildertest: the harness needs New, Source, Registry, FailingStep and MalformedStep")
	}
	s := &suite{h: h}
	t.Run("Succeeds", s.succeeds)
	t.Run("NilLog", s.nilLog)
	t.Run("FailingStep", s.failingStep)
	t.Run("Malformed", s.malformed)
	t.Run("DockerfilePath", s.dockerfilePath)
	t.Run("DockerfileContent", s.dockerfileContent)
	t.Run("DockerfileMissing", s.dockerfileMissing)
	t.Run("DockerfileOutsideSource", s.dockerfileOutside)
	t.Run("ContextDirMissing", s.contextDirMissing)
	t.Run("StreamsAndCancels", s.streamsAndCancels)
	t.Run("ContextDoneBeforeStart", s.contextDoneBeforeStart)
	t.Run("Concurrent", s.concurrent)
}

type suite struct{ h Harness }

// builder returns a new builder, closed at the end of the test.
func (s *suite) builder(t *testing.T) build.Builder {
	t.Helper()
	b := s.h.New(t)
	if c, ok := b.(io.Closer); ok {
		t.Cleanup(func() { c.Close() })
	}
	return b
}

// scenario returns a fresh scenario of kind k.
func scenario(k Kind) Scenario {
	b := make([]byte, 8)
	rand.Read(b)
	sc := Scenario{Kind: k, Token: hex.EncodeToString(b)}
	if k != Malformed {
		for i := range outputLines {
			sc.Output = append(sc.Output, fmt.Sprintf("buildertest output %d of %d from %s", i+1, outputLines, sc.Token))
		}
	}
	return sc
}

// source writes a source for sc with the harness.
func (s *suite) source(t *testing.T, sc Scenario) string {
	t.Helper()
	dir := s.h.Source(t, sc)
	if _, err := os.Stat(filepath.Join(dir, "Dockerfile")); err != nil {
		t.Fatalf("the harness wrote no Dockerfile for a %s source: %v", sc.Kind, err)
	}
	return dir
}

// request returns a request to build dir into a fresh tag of repository
// Registry/buildertest/name.
func (s *suite) request(sc Scenario, name, dir string, rec *recorder) build.Request {
	req := build.Request{ContextDir: dir, Image: s.repository(name) + ":" + sc.Token}
	if rec != nil {
		req.Log = rec.log
	}
	return req
}

func (s *suite) repository(name string) string {
	return s.h.Registry + "/buildertest/" + name
}

// recorder is a Request.Log that keeps the lines and notes misuse: calls
// that overlap, and calls after Build returned.
type recorder struct {
	inLog    atomic.Int32
	returned atomic.Bool

	mu       sync.Mutex
	lines    []string
	times    []time.Time
	problems []string
	start    time.Time // when Build was called
	end      time.Time // when Build returned
}

func (r *recorder) log(ts time.Time, line string) {
	if r.inLog.Add(1) != 1 {
		r.problem("Log was called concurrently (line %q)", line)
	}
	defer r.inLog.Add(-1)
	if r.returned.Load() {
		r.problem("Log was called after Build returned (line %q)", line)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, line)
	r.times = append(r.times, ts)
}

func (r *recorder) problem(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.problems = append(r.problems, fmt.Sprintf(format, args...))
}

func (r *recorder) snapshot() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.lines...)
}

func (r *recorder) text() string { return strings.Join(r.snapshot(), "\n") }

// timestampSlack is how far a line's timestamp may lie outside the call
// of Build: the builder's clock (buildkitd's) may differ a little. It
// rejects timestamps that are not the time of the line (zero, stale).
const timestampSlack = time.Minute

// check reports misuse of Log and timestamps that are not the time the
// line was produced. Call it after Build returned.
func (r *recorder) check(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.problems {
		t.Error(p)
	}
	for i, ts := range r.times {
		if ts.IsZero() {
			t.Errorf("line %q has no timestamp", r.lines[i])
		} else if ts.Before(r.start.Add(-timestampSlack)) || ts.After(r.end.Add(timestampSlack)) {
			t.Errorf("line %q has timestamp %s, outside the build (%s to %s)", r.lines[i], ts.Format(time.RFC3339Nano),
				r.start.Format(time.RFC3339Nano), r.end.Format(time.RFC3339Nano))
		}
		if strings.Contains(r.lines[i], "\n") {
			t.Errorf("line %q holds a newline", r.lines[i])
		}
	}
}

// run calls b.Build with rec (if any) around it.
func run(ctx context.Context, b build.Builder, req build.Request, rec *recorder) (build.Result, error) {
	if rec != nil {
		rec.mu.Lock()
		rec.start = time.Now()
		rec.mu.Unlock()
	}
	res, err := b.Build(ctx, req)
	if rec != nil {
		rec.returned.Store(true)
		rec.mu.Lock()
		rec.end = time.Now()
		rec.mu.Unlock()
	}
	return res, err
}

// tryBuild builds req with a Timeout, and checks the log afterwards. It
// fails the test if the build ran into the timeout.
func tryBuild(t *testing.T, b build.Builder, req build.Request, rec *recorder) (build.Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeoutCause(context.Background(), Timeout, errSuiteTimeout)
	defer cancel()
	res, err := run(ctx, b, req, rec)
	if errors.Is(context.Cause(ctx), errSuiteTimeout) {
		t.Fatalf("Build of %s did not return within %s (err = %v)", req.Image, Timeout, err)
	}
	if rec != nil {
		rec.check(t)
	}
	return res, err
}

var errSuiteTimeout = errors.New("buildertest: build timed out")

// mustBuild builds req and fails the test unless the build succeeds with
// a digest reference in req.Image's repository.
func (s *suite) mustBuild(t *testing.T, b build.Builder, req build.Request, rec *recorder) build.Result {
	t.Helper()
	res, err := tryBuild(t, b, req, rec)
	if err != nil {
		log := ""
		if rec != nil {
			log = "\nlog:\n" + rec.text()
		}
		t.Fatalf("Build(%s): %v%s", req.Image, err, log)
	}
	checkResult(t, req, res)
	if s.h.CheckPushed != nil {
		s.h.CheckPushed(t, req, res)
	}
	return res
}

var digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// checkResult checks that res is req.Image's repository by a well-formed
// digest.
func checkResult(t *testing.T, req build.Request, res build.Result) {
	t.Helper()
	if !digestRE.MatchString(res.Digest) {
		t.Errorf("Result.Digest = %q, want sha256: and 64 hex digits", res.Digest)
	}
	repo := req.Image
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo = repo[:i]
	}
	if want := repo + "@" + res.Digest; res.Image != want {
		t.Errorf("Result.Image = %q, want %q", res.Image, want)
	}
}

// checkOutput checks that every line of want reached the log as a line of
// its own, in order. It reports what is wrong, or "".
func checkOutput(lines, want []string) string {
	last := -1
	for _, w := range want {
		at := -1
		for i, l := range lines {
			if strings.Contains(l, w) {
				at = i
				break
			}
		}
		switch {
		case at < 0:
			return fmt.Sprintf("the log lacks the output line %q", w)
		case at <= last:
			return fmt.Sprintf("the output line %q is logged before the line printed ahead of it", w)
		}
		for _, other := range want {
			if other != w && strings.Contains(lines[at], other) {
				return fmt.Sprintf("the output lines %q and %q are logged as one line %q", w, other, lines[at])
			}
		}
		last = at
	}
	return ""
}

func (s *suite) expectOutput(t *testing.T, rec *recorder, want []string) {
	t.Helper()
	if msg := checkOutput(rec.snapshot(), want); msg != "" {
		t.Errorf("%s; log:\n%s", msg, rec.text())
	}
}

// userError fails the test unless err is a *build.Error with a message,
// and returns it.
func userError(t *testing.T, err error, rec *recorder) *build.Error {
	t.Helper()
	var be *build.Error
	if !errors.As(err, &be) {
		t.Fatalf("err = %v (%T), want a *build.Error\nlog:\n%s", err, err, rec.text())
	}
	if !build.IsUserError(err) {
		t.Errorf("IsUserError(%v) = false", err)
	}
	if strings.TrimSpace(be.Message) == "" {
		t.Errorf("Error.Message is empty (Step %q)", be.Step)
	}
	t.Logf("user error: step %q, message %q", be.Step, be.Message)
	return be
}

func (s *suite) succeeds(t *testing.T) {
	b := s.builder(t)
	sc := scenario(Succeeds)
	rec := &recorder{}
	req := s.request(sc, "succeeds", s.source(t, sc), rec)
	s.mustBuild(t, b, req, rec)
	s.expectOutput(t, rec, sc.Output)
}

// nilLog: Request.Log is optional.
func (s *suite) nilLog(t *testing.T) {
	b := s.builder(t)
	sc := scenario(Succeeds)
	s.mustBuild(t, b, s.request(sc, "nil-log", s.source(t, sc), nil), nil)
}

func (s *suite) failingStep(t *testing.T) {
	b := s.builder(t)
	sc := scenario(Fails)
	rec := &recorder{}
	_, err := tryBuild(t, b, s.request(sc, "failing-step", s.source(t, sc), rec), rec)
	be := userError(t, err, rec)
	if !strings.Contains(be.Step, s.h.FailingStep) {
		t.Errorf("Error.Step = %q, want it to name the failing step %q", be.Step, s.h.FailingStep)
	}
	// The log keeps what the step printed before it failed.
	s.expectOutput(t, rec, sc.Output)
}

func (s *suite) malformed(t *testing.T) {
	b := s.builder(t)
	sc := scenario(Malformed)
	rec := &recorder{}
	_, err := tryBuild(t, b, s.request(sc, "malformed", s.source(t, sc), rec), rec)
	be := userError(t, err, rec)
	if !strings.Contains(be.Step, s.h.MalformedStep) {
		t.Errorf("Error.Step = %q, want it to name the line at fault %q", be.Step, s.h.MalformedStep)
	}
}

// malformedDockerfile returns the Dockerfile of a Malformed source.
func (s *suite) malformedDockerfile(t *testing.T) []byte {
	t.Helper()
	df, err := os.ReadFile(filepath.Join(s.source(t, scenario(Malformed)), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	return df
}

// dockerfilePath: Request.Dockerfile is used, not the Dockerfile at the
// root (here a malformed one).
func (s *suite) dockerfilePath(t *testing.T) {
	b := s.builder(t)
	sc := scenario(Succeeds)
	dir := s.source(t, sc)
	const alt = "deploy/App.Dockerfile"
	if err := os.MkdirAll(filepath.Join(dir, "deploy"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "Dockerfile"), filepath.Join(dir, filepath.FromSlash(alt))); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "Dockerfile"), s.malformedDockerfile(t))
	rec := &recorder{}
	req := s.request(sc, "dockerfile-path", dir, rec)
	req.Dockerfile = alt
	s.mustBuild(t, b, req, rec)
	s.expectOutput(t, rec, sc.Output)
}

// dockerfileContent: Request.DockerfileContent wins over Request.Dockerfile
// and the Dockerfile in the source, and the source tree is left untouched.
func (s *suite) dockerfileContent(t *testing.T) {
	b := s.builder(t)
	sc := scenario(Succeeds)
	dir := s.source(t, sc)
	content, err := os.ReadFile(filepath.Join(dir, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "Dockerfile"), s.malformedDockerfile(t))
	before := tree(t, dir)
	rec := &recorder{}
	req := s.request(sc, "dockerfile-content", dir, rec)
	req.Dockerfile = "no/such/Dockerfile"
	req.DockerfileContent = content
	s.mustBuild(t, b, req, rec)
	s.expectOutput(t, rec, sc.Output)
	if after := tree(t, dir); after != before {
		t.Errorf("the build changed the source tree:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

func (s *suite) dockerfileMissing(t *testing.T) {
	b := s.builder(t)
	sc := scenario(Succeeds)
	rec := &recorder{}
	req := s.request(sc, "dockerfile-missing", s.source(t, sc), rec)
	req.Dockerfile = "no/such/Dockerfile"
	_, err := tryBuild(t, b, req, rec)
	userError(t, err, rec)
}

// dockerfileOutside: a Dockerfile path that leaves the source is refused,
// even where a Dockerfile exists.
func (s *suite) dockerfileOutside(t *testing.T) {
	b := s.builder(t)
	sc := scenario(Succeeds)
	parent := t.TempDir()
	dir := filepath.Join(parent, "src")
	if err := os.Rename(s.source(t, sc), dir); err != nil {
		t.Fatal(err)
	}
	df, err := os.ReadFile(filepath.Join(dir, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(parent, "Outside.Dockerfile"), df)
	rec := &recorder{}
	req := s.request(sc, "dockerfile-outside", dir, rec)
	req.Dockerfile = "../Outside.Dockerfile"
	_, err = tryBuild(t, b, req, rec)
	userError(t, err, rec)
}

// contextDirMissing: a source directory that is not there is the
// platform's failure, not the user's.
func (s *suite) contextDirMissing(t *testing.T) {
	b := s.builder(t)
	sc := scenario(Succeeds)
	rec := &recorder{}
	req := s.request(sc, "context-missing", filepath.Join(t.TempDir(), "gone"), rec)
	_, err := tryBuild(t, b, req, rec)
	if err == nil {
		t.Fatal("Build of a missing source directory succeeded")
	}
	if build.IsUserError(err) {
		t.Errorf("a missing source directory is reported as the user's error: %v", err)
	}
}

var errCancelled = errors.New("buildertest: cancelled by the suite")

// streamsAndCancels: the output of a step reaches the log while the step
// runs; cancelling the context then stops the build promptly with an
// error wrapping the cause, the log keeping the lines; and the builder
// builds again afterwards.
func (s *suite) streamsAndCancels(t *testing.T) {
	b := s.builder(t)
	sc := scenario(Blocks)
	rec := &recorder{}
	req := s.request(sc, "blocks", s.source(t, sc), rec)
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	type outcome struct {
		res build.Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := run(ctx, b, req, rec)
		done <- outcome{res, err}
	}()

	// Streaming: the step's output arrives while the build runs.
	deadline := time.After(Timeout)
	for checkOutput(rec.snapshot(), sc.Output) != "" {
		select {
		case o := <-done:
			t.Fatalf("a blocking build returned (%v, %v) before its output was logged; log:\n%s", o.res, o.err, rec.text())
		case <-deadline:
			cancel(errCancelled)
			<-done
			t.Fatalf("the output of the blocking step was not logged within %s; log:\n%s", Timeout, rec.text())
		case <-time.After(10 * time.Millisecond):
		}
	}

	if s.h.StepProcesses != nil && s.h.StepProcesses(t, sc) == 0 {
		t.Errorf("the blocking step runs no process while it blocks")
	}

	cancel(errCancelled)
	var o outcome
	select {
	case o = <-done:
	case <-time.After(CancelTimeout):
		t.Fatalf("Build did not return within %s of its context being cancelled", CancelTimeout)
	}
	rec.check(t)
	switch {
	case o.err == nil:
		t.Errorf("a cancelled build succeeded: %+v", o.res)
	case !errors.Is(o.err, errCancelled):
		t.Errorf("err = %v, want it to wrap the context's cause %v", o.err, errCancelled)
	case build.IsUserError(o.err):
		t.Errorf("cancellation is reported as the user's error: %v", o.err)
	}
	s.expectOutput(t, rec, sc.Output)
	if s.h.StepProcesses != nil {
		stopped := time.Now().Add(CancelTimeout)
		for n := s.h.StepProcesses(t, sc); n > 0; n = s.h.StepProcesses(t, sc) {
			if time.Now().After(stopped) {
				t.Errorf("%d processes of the cancelled step still run %s after Build returned", n, CancelTimeout)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// The builder still builds.
	after := scenario(Succeeds)
	rec = &recorder{}
	s.mustBuild(t, b, s.request(after, "after-cancel", s.source(t, after), rec), rec)
	s.expectOutput(t, rec, after.Output)
}

// contextDoneBeforeStart: a context done before Build is called fails the
// build at once with an error wrapping its cause.
func (s *suite) contextDoneBeforeStart(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	for _, c := range []struct {
		name string
		ctx  context.Context
		want error
	}{{"Cancelled", cancelled, context.Canceled}, {"DeadlineExceeded", expired, context.DeadlineExceeded}} {
		t.Run(c.name, func(t *testing.T) {
			b := s.builder(t)
			sc := scenario(Succeeds)
			rec := &recorder{}
			req := s.request(sc, "context-done", s.source(t, sc), rec)
			done := make(chan error, 1)
			go func() {
				_, err := run(c.ctx, b, req, rec)
				done <- err
			}()
			var err error
			select {
			case err = <-done:
			case <-time.After(CancelTimeout):
				t.Fatalf("Build with a done context did not return within %s", CancelTimeout)
			}
			rec.check(t)
			if !errors.Is(err, c.want) {
				t.Errorf("err = %v, want it to wrap %v", err, c.want)
			}
			if build.IsUserError(err) {
				t.Errorf("a done context is reported as the user's error: %v", err)
			}
		})
	}
}

// concurrent: builds running at once each log only their own output, and
// sources of different content get different digests.
func (s *suite) concurrent(t *testing.T) {
	b := s.builder(t)
	const n = 3
	var (
		scs  [n]Scenario
		recs [n]*recorder
		reqs [n]build.Request
		res  [n]build.Result
		errs [n]error
	)
	for i := range n {
		scs[i] = scenario(Succeeds)
		recs[i] = &recorder{}
		reqs[i] = s.request(scs[i], fmt.Sprintf("concurrent-%d", i), s.source(t, scs[i]), recs[i])
	}
	ctx, cancel := context.WithTimeoutCause(context.Background(), Timeout, errSuiteTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { res[i], errs[i] = run(ctx, b, reqs[i], recs[i]) })
	}
	wg.Wait()
	if errors.Is(context.Cause(ctx), errSuiteTimeout) {
		t.Fatalf("concurrent builds did not return within %s", Timeout)
	}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("build %d: %v\nlog:\n%s", i, errs[i], recs[i].text())
		}
		recs[i].check(t)
		checkResult(t, reqs[i], res[i])
		if s.h.CheckPushed != nil {
			s.h.CheckPushed(t, reqs[i], res[i])
		}
		s.expectOutput(t, recs[i], scs[i].Output)
		for j := range n {
			if j != i && strings.Contains(recs[i].text(), scs[j].Token) {
				t.Errorf("the log of build %d holds output of build %d:\n%s", i, j, recs[i].text())
			}
		}
		for j := range i {
			if res[i].Digest == res[j].Digest {
				t.Errorf("builds %d and %d of different sources have the same digest %s", j, i, res[i].Digest)
			}
		}
	}
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// tree renders the files under dir with their modes and contents.
func tree(t *testing.T, dir string) string {
	t.Helper()
	var sb strings.Builder
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fmt.Fprintf(&sb, "%s %s", info.Mode(), rel)
		if info.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(&sb, " %q", b)
		}
		sb.WriteByte('\n')
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return sb.String()
}
