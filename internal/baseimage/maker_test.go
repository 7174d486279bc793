package baseimage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/random"
)

func TestFor(t *testing.T) {
	for ref, want := range map[string]string{
		"golang:1.23":                         "golang",
		"golang:1.23-bookworm":                "golang",
		"docker.io/library/golang:1.23.4":     "golang",
		"library/python:3.11-slim-bookworm":   "python",
		"python:3.11":                         "python",
		"node:18-bookworm-slim":               "node",
		"node:22-bookworm-slim":               "node22",
		"node:jod":                            "node22",
		"node:24":                             "node24",
		"node:lts-slim":                       "node24",
		"node:krypton":                        "node24",
		"debian:bookworm-slim":                "debian",
		"debian:12":                           "debian",
		"debian:12.11-slim":                   "debian",
		"debian":                              "", // latest: a newer Debian
		"debian:bookworm2":                    "",
		"golang:1.22":                         "",
		"golang:1.230":                        "",
		"node:20-bookworm-slim":               "",
		"python:3.12":                         "",
		"golang@sha256:0123":                  "",
		"ghcr.io/library/golang:1.23":         "",
		"localhost/golang:1.23":               "",
		"127.0.0.1:7300/hello:abc":            "",
		"someone/golang:1.23":                 "",
		"index.docker.io/library/node:24.1.0": "node24",
		"golang:1.23-alpine":                  "",
		"node:22-alpine3.20":                  "",
		"python:3.11-slim-bullseye":           "",
		"debian:bookworm-backports":           "",
		"node:18.20.4-bookworm-slim":          "node",
	} {
		got, ok := For(ref)
		if got != want || ok != (want != "") {
			t.Errorf("For(%q) = %q, %v; want %q", ref, got, ok, want)
		}
	}
}

func TestNeeded(t *testing.T) {
	for _, tc := range []struct {
		dockerfile string
		want       []string
	}{
		{"FROM golang:1.23 AS build\nRUN go build\nFROM scratch\nCOPY --from=build /a /a\n", []string{"golang:1.23"}},
		{"ARG GO=1.23\nFROM golang:${GO}-bookworm AS b\nFROM b\nFROM debian:bookworm-slim\nFROM golang:1.23\n",
			[]string{"golang:1.23-bookworm", "debian:bookworm-slim", "golang:1.23"}},
		{"from --platform=linux/amd64 node:22-bookworm-slim as deps\nFROM deps AS run\n", []string{"node:22-bookworm-slim"}},
		{"FROM node:20\n", nil},               // no stand-in: nothing to wait for
		{"FROM alpine AS golang:1.23\n", nil}, // a stage name is not an image
		{"RUN true\nFROM\n", nil},             // the builder reports the error
		{"FROM python:3.11-slim-bookworm\nARG X\nFROM node:${X}\n", []string{"python:3.11-slim-bookworm"}},
	} {
		if got := Needed([]byte(tc.dockerfile)); !slices.Equal(got, tc.want) {
			t.Errorf("Needed(%q) = %q, want %q", tc.dockerfile, got, tc.want)
		}
	}
}

// TestForKnowsTheBuiltTags checks For against images Build really wrote:
// each reference of a layout stands in for the image it belongs to.
func TestForKnowsTheBuiltTags(t *testing.T) {
	dir := os.Getenv("SLIPWAY_BASE_IMAGES")
	if dir == "" {
		dir = "/var/lib/slipway/base-images"
	}
	imgs, err := Images(dir)
	if err != nil {
		t.Fatal(err)
	}
	need(t, len(imgs) > 0, "no base images in "+dir+" (scripts/base-images.sh)")
	for _, im := range imgs {
		if got, ok := For(im.Ref); !ok || got != im.Name {
			t.Errorf("For(%q) = %q, %v; the layout says it is %q", im.Ref, got, ok, im.Name)
		}
	}
}

// fakeBuild stands in for Build: it reports progress as Build does, waits
// until the test releases (or fails) the image, and writes it into the
// layout with Build's annotations.
type fakeBuild struct {
	mu      sync.Mutex
	calls   chan string
	release map[string]chan error
}

func newFakeBuild() *fakeBuild {
	f := &fakeBuild{calls: make(chan string, 100), release: map[string]chan error{}}
	for _, n := range Names() {
		f.release[n] = make(chan error, 10)
	}
	return f
}

func (f *fakeBuild) build(ctx context.Context, o Options) error {
	if len(o.Images) != 1 {
		return fmt.Errorf("want one image per Build, got %q", o.Images)
	}
	name := o.Images[0]
	f.calls <- name
	fmt.Fprintf(o.Log, "==> %s: apt-get install things\nGet:1 http://mirror/ some.deb\n", name)
	fmt.Fprint(o.Log, "I: Unpacking the base system...\nI: Unpacking adduser...\n")
	select {
	case err := <-f.release[name]:
		if err != nil {
			return err
		}
	case <-ctx.Done():
		return ctx.Err()
	}
	fmt.Fprintf(o.Log, "==> %s: wrote library/%s:1\n", name, name)
	return writeFake(o.OutDir, name)
}

// writeFake adds image name to the layout at dir as Build would, under two
// references.
func writeFake(dir, name string) error {
	p, err := layout.FromPath(dir)
	if err != nil {
		if p, err = layout.Write(dir, empty.Index); err != nil {
			return err
		}
	}
	img, err := random.Image(64, 1)
	if err != nil {
		return err
	}
	for _, tag := range []string{"1", "1.0"} {
		err := p.AppendImage(img, layout.WithAnnotations(map[string]string{
			AnnotationRefName: "library/" + name + ":" + tag, AnnotationImage: name}))
		if err != nil {
			return err
		}
	}
	return nil
}

// seeded records what a Maker seeds.
type seeded struct {
	mu   sync.Mutex
	refs []string
}

func (s *seeded) seed(_ context.Context, ref string, _ v1.Image) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refs = append(s.refs, ref)
	return nil
}

func (s *seeded) has(ref string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Contains(s.refs, ref)
}

// lines collects a waiting build's log.
type lines struct {
	mu sync.Mutex
	l  []string
}

func (l *lines) add(s string) { l.mu.Lock(); l.l = append(l.l, s); l.mu.Unlock() }
func (l *lines) all() string  { l.mu.Lock(); defer l.mu.Unlock(); return strings.Join(l.l, "\n") }

func newTestMaker(t *testing.T, f *fakeBuild, s *seeded) (*Maker, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "base-images")
	m, err := NewMaker(MakerConfig{Options: Options{OutDir: dir}, Build: f.build, Seed: s.seed,
		Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m, dir
}

func expectCall(t *testing.T, f *fakeBuild, want string) {
	t.Helper()
	select {
	case got := <-f.calls:
		if got != want {
			t.Fatalf("made %s, want %s next", got, want)
		}
	case <-time.After(time.Minute):
		t.Fatalf("%s was never begun", want)
	}
}

// A build that needs a missing image waits for it, with log lines saying
// so, how long it usually takes and the progress; the image it needs is
// made before images nobody waits for; it proceeds once the image is made
// and seeded; while a build holds the Maker, nothing else is begun.
func TestMakerBuildWaitsForMissingImage(t *testing.T) {
	f, s := newFakeBuild(), &seeded{}
	m, dir := newTestMaker(t, f, s)
	if got := m.Missing(); !slices.Equal(got, Names()) {
		t.Fatalf("Missing() = %q, want all of %q", got, Names())
	}
	m.Start(context.Background())
	expectCall(t, f, "debian") // background work begins with the first image

	var log lines
	waited := make(chan error, 1)
	go func() {
		waited <- m.Wait(context.Background(), []string{"golang:1.23-bookworm", "127.0.0.1:7300/x:y"}, log.add)
	}()
	// The build waits until golang is made: it is begun once debian is.
	select {
	case err := <-waited:
		t.Fatalf("Wait returned %v before golang was made", err)
	case <-time.After(200 * time.Millisecond):
	}
	hold := m.Hold() // as a build that runs meanwhile
	f.release["debian"] <- nil
	expectCall(t, f, "golang") // not python: a build waits for golang
	f.release["golang"] <- nil
	if err := <-waited; err != nil {
		t.Fatal(err)
	}
	if !s.has("library/golang:1") || !s.has("library/golang:1.0") {
		t.Errorf("golang was not seeded before Wait returned: %q", s.refs)
	}
	got := log.all()
	for _, want := range []string{
		`base image golang:1.23-bookworm is not made yet (stand-in "golang", built on this host): it is made next, once "debian" is, and usually takes about `,
		"; the build waits for it",
		"base image debian: wrote library/debian:1", // the image made before, as it progresses
		"base image golang: apt-get install things",
		"base image debootstrap: Unpacking the base system...",
		"base image golang: wrote library/golang:1",
		"base image golang:1.23-bookworm is ready (waited ",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the build's log lacks %q:\n%s", want, got)
		}
	}
	for _, bad := range []string{"Get:1", "adduser", "7300"} {
		if strings.Contains(got, bad) {
			t.Errorf("the build's log holds %q:\n%s", bad, got)
		}
	}

	// While the build holds the Maker, python (which nobody waits for)
	// is not begun; it is once the build is done.
	select {
	case name := <-f.calls:
		t.Fatalf("%s was begun while a build ran", name)
	case <-time.After(200 * time.Millisecond):
	}
	hold()
	expectCall(t, f, "python")
	if got := m.Missing(); !slices.Equal(got, []string{"python", "node", "node22", "node24"}) {
		t.Errorf("Missing() = %q", got)
	}

	// A made image needs no wait and no log line.
	var again lines
	if err := m.Wait(context.Background(), []string{"golang:1.23", "debian:bookworm-slim"}, again.add); err != nil || again.all() != "" {
		t.Errorf("Wait for made images = %v, logged %q", err, again.all())
	}
	// A new Maker finds them in the layout.
	m2, err := NewMaker(MakerConfig{Options: Options{OutDir: dir}, Build: f.build})
	if err != nil {
		t.Fatal(err)
	}
	if got := m2.Missing(); !slices.Equal(got, []string{"python", "node", "node22", "node24"}) {
		t.Errorf("a new Maker's Missing() = %q", got)
	}
}

// An image that cannot be made fails the builds waiting for it with the
// reason; the next build that needs it tries again.
func TestMakerFailureIsRetriedOnNextUse(t *testing.T) {
	f, s := newFakeBuild(), &seeded{}
	m, _ := newTestMaker(t, f, s)
	hold := m.Hold() // no background work: only what builds need
	defer hold()
	m.Start(context.Background())

	var log lines
	waited := make(chan error, 1)
	go func() { waited <- m.Wait(context.Background(), []string{"debian:bookworm"}, log.add) }()
	expectCall(t, f, "debian")
	f.release["debian"] <- errors.New("the mirror is unreachable")
	err := <-waited
	if err == nil || !strings.Contains(err.Error(), "the mirror is unreachable") || !strings.Contains(err.Error(), "debian:bookworm") {
		t.Fatalf("Wait = %v, want the failure", err)
	}
	// "building the stand-in … now" or "is being made (…": the Maker
	// may begin it before Wait says which.
	if !strings.Contains(log.all(), `stand-in "debian"`) || !strings.Contains(log.all(), "the build waits for it") {
		t.Errorf("log:\n%s", log.all())
	}

	go func() { waited <- m.Wait(context.Background(), []string{"debian:bookworm"}, log.add) }()
	expectCall(t, f, "debian")
	f.release["debian"] <- nil
	if err := <-waited; err != nil {
		t.Fatalf("second Wait = %v", err)
	}
	if !s.has("library/debian:1") {
		t.Error("debian was not seeded")
	}
}

// A build stopped while it waits returns at once with the cause; the image
// is still made.
func TestMakerWaitStopped(t *testing.T) {
	f, s := newFakeBuild(), &seeded{}
	m, _ := newTestMaker(t, f, s)
	m.Start(context.Background())
	expectCall(t, f, "debian")
	ctx, cancel := context.WithCancelCause(context.Background())
	waited := make(chan error, 1)
	go func() { waited <- m.Wait(ctx, []string{"node:lts"}, func(string) {}) }()
	stop := errors.New("stopped by a user")
	cancel(stop)
	if err := <-waited; !errors.Is(err, stop) {
		t.Fatalf("Wait = %v, want the cause", err)
	}
	f.release["debian"] <- nil
	expectCall(t, f, "golang") // nobody waits for node24 any more: the queue's order
}

// syncBuffer is a log written by one goroutine and read by another.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// A build waiting for another's lock on the cache (scripts/setup.sh's
// background job, say) shows that build's progress, and goes ahead once
// it is done.
func TestLockShowsTheHoldersProgress(t *testing.T) {
	dir := t.TempDir()
	unlock, progress, err := lockDir(context.Background(), dir, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(progress, "==> debian: debootstrap bookworm")
	var log syncBuffer
	locked := make(chan func(), 1)
	go func() {
		u, _, err := lockDir(context.Background(), dir, &log)
		if err != nil {
			t.Error(err)
		}
		locked <- u
	}()
	waitFor := func(want string) {
		t.Helper()
		for deadline := time.Now().Add(time.Minute); !strings.Contains(log.String(), want); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the waiting build's log lacks %q:\n%s", want, log.String())
			}
		}
	}
	waitFor("==> waiting for another base image build to finish")
	waitFor("==> debian: debootstrap bookworm\n")
	fmt.Fprintln(progress, "==> debian: rootfs ready in 1m")
	waitFor("==> debian: rootfs ready in 1m\n")
	select {
	case <-locked:
		t.Fatal("took the lock while another build held it")
	default:
	}
	unlock()
	(<-locked)()
	if strings.Count(log.String(), "debootstrap bookworm") != 1 {
		t.Errorf("lines shown more than once:\n%s", log.String())
	}
}
