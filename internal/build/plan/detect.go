package plan

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
)

// Options adjusts detection. The zero value detects in the whole tree.
type Options struct {
	// Root is the project root: a subdirectory of the source tree, slash-
	// or OS-separated, relative to it (a leading "/" means the same). It
	// must stay inside the tree. If empty, the whole tree.
	Root string
	// DockerfilePath is the Dockerfile to use, relative to Root. When set
	// it must exist, and it wins over detection. If empty, "Dockerfile" in
	// Root is used when present.
	DockerfilePath string
	// StartCommand is the project's custom start command, a shell command
	// line. If set, it becomes Plan.StartCommand and a missing entry point
	// is no longer an error. If empty, the detected start command is used.
	StartCommand string
}

// maxManifest is the size limit of a manifest or lock file read during
// detection; larger files are an *Error.
const maxManifest = 8 << 20

// provider recognises one kind of project and plans its build.
type provider interface {
	// lookedFor says, for NotDetectedError, what the provider recognises.
	lookedFor() string
	// detect reports whether the project is of the provider's kind.
	detect(t *tree) (bool, error)
	// plan fills in p: images, steps, env, start command and facts.
	plan(t *tree, p *Plan) error
}

// providers in the order they are asked. Order is important: a Dockerfile
// wins over everything, and a Node project with an index.html is still a
// Node project.
var providers = []provider{
	dockerfileProvider{},
	pythonProvider{},
	nodeProvider{},
	goProvider{},
	staticProvider{},
}

// Detect detects the build plan of the source tree in dir. Files are read
// through an os.Root, so symbolic links cannot lead detection outside dir.
func Detect(dir string, opts Options) (*Plan, error) {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("opening source tree: %w", err)
	}
	defer r.Close()
	return DetectFS(r.FS(), opts)
}

// DetectFS is Detect on a file system holding the source tree.
func DetectFS(fsys fs.FS, opts Options) (*Plan, error) {
	root, err := cleanRoot(opts.Root)
	if err != nil {
		return nil, err
	}
	reason := "the whole source tree"
	if root != "." {
		reason = "set by the project's root directory setting"
	}
	p, err := detectIn(fsys, root, reason, opts)
	var nd *NotDetectedError
	if root != "." || !errors.As(err, &nd) {
		return p, err
	}
	// Nothing at the root and no root set: look for the app below.
	found, ferr := findRoot(fsys, opts)
	if ferr != nil {
		return nil, ferr
	}
	c, reason, ok, ferr := chooseRoot(found)
	if ferr != nil {
		return nil, ferr
	}
	if !ok {
		return nil, err
	}
	p, err = detectIn(fsys, c.Dir, reason, opts)
	if IsUserError(err) {
		// Say where the build looked, since nobody asked it to.
		return nil, fmt.Errorf("in %s, detected as the project root (the only app below the root of the source tree; set the project's rootDirectory to choose another): %w", c.String(), err)
	}
	return p, err
}

// detectIn detects the plan of the project root root of fsys; reason says
// why it is the project root.
func detectIn(fsys fs.FS, root, reason string, opts Options) (*Plan, error) {
	sub := fsys
	if root != "." {
		// Missing, a file, or a link that leads out of the tree.
		if st, err := fs.Stat(fsys, root); err != nil || !st.IsDir() {
			return nil, &Error{Message: fmt.Sprintf("project root %q is not a directory of the source tree", root)}
		}
		var err error
		if sub, err = fs.Sub(fsys, root); err != nil {
			return nil, fmt.Errorf("opening project root %s: %w", root, err)
		}
	}
	t := &tree{fsys: sub, root: root, opts: opts}

	var looked []string
	for _, pr := range providers {
		ok, err := pr.detect(t)
		if err != nil {
			return nil, err
		}
		if !ok {
			looked = append(looked, pr.lookedFor())
			continue
		}
		p := &Plan{FormatVersion: FormatVersion, Root: root}
		p.Facts.ProjectRoot = &Fact{Value: root, Reason: reason}
		if err := pr.plan(t, p); err != nil {
			return nil, err
		}
		p.Steps = tidySteps(p.Steps)
		p.StartCommand = p.DetectedStartCommand
		if opts.StartCommand != "" {
			p.StartCommand = opts.StartCommand
		}
		return p, nil
	}
	return nil, &NotDetectedError{Root: root, LookedFor: looked}
}

// tidySteps drops inputs that an earlier step already copied (the whole
// tree, or the same path) and steps left with nothing to do.
func tidySteps(steps []Step) []Step {
	copied := map[string]bool{}
	var out []Step
	for _, s := range steps {
		var in []string
		for _, i := range s.Inputs {
			if !copied["."] && !copied[i] {
				in = append(in, i)
				copied[i] = true
			}
		}
		s.Inputs = in
		if len(s.Inputs) > 0 || len(s.Commands) > 0 {
			out = append(out, s)
		}
	}
	return out
}

// cleanRoot turns Options.Root into a clean slash path inside the tree.
func cleanRoot(r string) (string, error) {
	orig := r
	r = strings.TrimLeft(strings.ReplaceAll(r, `\`, "/"), "/") // a leading "/" is the tree's root
	if r == "" {
		return ".", nil
	}
	r = path.Clean(r)
	if r == ".." || strings.HasPrefix(r, "../") {
		return "", &Error{Message: fmt.Sprintf("project root %q leaves the source tree", orig)}
	}
	if !fs.ValidPath(r) {
		return "", &Error{Message: fmt.Sprintf("project root %q is not a valid path", orig)}
	}
	return r, nil
}

// tree is the project root being detected.
type tree struct {
	fsys fs.FS
	root string // relative to the source tree, "." for all of it
	opts Options
}

// rel is name as users see it: relative to the source tree.
func (t *tree) rel(name string) string {
	if t.root == "." {
		return name
	}
	return path.Join(t.root, name)
}

func (t *tree) isFile(name string) bool {
	st, err := fs.Stat(t.fsys, name)
	return err == nil && st.Mode().IsRegular()
}

func (t *tree) isDir(name string) bool {
	st, err := fs.Stat(t.fsys, name)
	return err == nil && st.IsDir()
}

// read reads a manifest: at most maxManifest bytes.
func (t *tree) read(name string) ([]byte, error) {
	f, err := t.fsys.Open(name)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", t.rel(name), err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxManifest+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", t.rel(name), err)
	}
	if len(b) > maxManifest {
		return nil, &Error{File: t.rel(name), Message: fmt.Sprintf("larger than %d MiB", maxManifest>>20)}
	}
	return b, nil
}

// readIf reads name when it is a regular file; ok is false when it is not.
func (t *tree) readIf(name string) (b []byte, ok bool, err error) {
	if !t.isFile(name) {
		return nil, false, nil
	}
	b, err = t.read(name)
	return b, err == nil, err
}

// errorf is an *Error about file (relative to the project root).
func (t *tree) errorf(file string, line, col int, format string, a ...any) *Error {
	e := &Error{Line: line, Column: col, Message: fmt.Sprintf(format, a...)}
	if file != "" {
		e.File = t.rel(file)
	}
	return e
}

// noEntryPoint is what a provider returns when it found no entry point:
// an error, unless the user set a start command, which then stands in for
// it (and the plan says so in a warning).
func (t *tree) noEntryPoint(p *Plan, e *Error) error {
	if t.opts.StartCommand == "" {
		return e
	}
	p.Warnings = append(p.Warnings, e.Error()+" (the custom start command is used)")
	return nil
}

// anyFile returns the first of names that is a regular file.
func (t *tree) anyFile(names ...string) (string, bool) {
	for _, n := range names {
		if t.isFile(n) {
			return n, true
		}
	}
	return "", false
}
