package plan

import (
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
)

// Project root detection: when no project root is set and the root of the
// source tree holds no app, the subdirectories are searched, breadth
// first, down to rootSearchDepth levels, for directories a provider
// recognises. A recognised directory is a candidate and is not searched
// further (its subdirectories belong to its app). Directories that hold
// dependencies, tools' state or tests are skipped (skipDirs, and every
// name starting with "."). Exactly one candidate becomes the project root;
// static sites beside one app are not chosen over it (they are most often
// its documentation or assets); anything else is an *AmbiguousRootError
// listing the candidates.

// rootSearchDepth is how deep below the tree's root the search looks:
// "web", "apps/web" and "services/api/app" are found.
const rootSearchDepth = 3

// rootSearchDirs bounds how many directories the search opens, so that a
// huge tree without an app costs little.
const rootSearchDirs = 2000

// skipDirs are directory names the search never enters.
var skipDirs = map[string]bool{
	"node_modules": true, "vendor": true, "third_party": true, "bower_components": true,
	"__pycache__": true, "venv": true, "env": true, "site-packages": true,
	"target": true, "testdata": true, "test": true, "tests": true, "fixtures": true,
}

// Candidate is a directory of the source tree that a provider recognises.
type Candidate struct {
	// Dir is the directory, relative to the source tree, slash-separated.
	Dir string `json:"dir"`
	// Provider is the provider that recognised it.
	Provider string `json:"provider"`
}

func (c Candidate) String() string { return c.Dir + " (" + c.Provider + ")" }

// AmbiguousRootError is returned when no project root is set, the root of
// the source tree holds no app, and several subdirectories do. Its message
// lists them and says how to choose.
type AmbiguousRootError struct {
	Candidates []Candidate
}

func (e *AmbiguousRootError) Error() string {
	var list []string
	for _, c := range e.Candidates {
		list = append(list, c.String())
	}
	return fmt.Sprintf("the root of the source tree holds no app, and %d directories do: %s; choose one as the project root "+
		"with the project's rootDirectory setting (slipway deploy --root DIR, or the dashboard's settings; slipway plan --root DIR to try)",
		len(e.Candidates), strings.Join(list, ", "))
}

// findRoot searches fsys below its root for directories a provider
// recognises; see the comment at the top of this file.
func findRoot(fsys fs.FS, opts Options) ([]Candidate, error) {
	var found []Candidate
	level := []string{"."}
	opened := 0
	for depth := 1; depth <= rootSearchDepth && len(level) > 0; depth++ {
		var next []string
		for _, dir := range level {
			if opened >= rootSearchDirs {
				break
			}
			opened++
			entries, err := fs.ReadDir(fsys, dir)
			if err != nil {
				continue // unreadable, or a link that leads out of the tree
			}
			for _, e := range entries {
				name := e.Name()
				if !e.IsDir() || strings.HasPrefix(name, ".") || skipDirs[name] {
					continue
				}
				sub := path.Join(dir, name)
				provider, err := recognise(fsys, sub, opts)
				if err != nil {
					return nil, err
				}
				if provider != "" {
					found = append(found, Candidate{Dir: sub, Provider: provider})
				} else {
					next = append(next, sub)
				}
			}
		}
		level = next
	}
	slices.SortFunc(found, func(a, b Candidate) int { return strings.Compare(a.Dir, b.Dir) })
	return found, nil
}

// recognise returns the provider that recognises dir, or "".
func recognise(fsys fs.FS, dir string, opts Options) (string, error) {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		return "", nil
	}
	// The Dockerfile setting names a file of the project root, which is
	// what is being looked for: each candidate is asked for its own.
	opts.DockerfilePath = ""
	t := &tree{fsys: sub, root: dir, opts: opts}
	for _, pr := range providers {
		ok, err := pr.detect(t)
		if err != nil {
			return "", err
		}
		if ok {
			return providerName(pr), nil
		}
	}
	return "", nil
}

func providerName(pr provider) string {
	switch pr.(type) {
	case dockerfileProvider:
		return ProviderDockerfile
	case pythonProvider:
		return ProviderPython
	case nodeProvider:
		return ProviderNode
	case goProvider:
		return ProviderGo
	case staticProvider:
		return ProviderStatic
	}
	return "unknown"
}

// chooseRoot picks the project root among the candidates: the only one,
// or the only app beside static sites. ok is false when there is none to
// pick; err is an *AmbiguousRootError when there are several.
func chooseRoot(found []Candidate) (c Candidate, reason string, ok bool, err error) {
	var apps, sites []Candidate
	for _, f := range found {
		if f.Provider == ProviderStatic {
			sites = append(sites, f)
		} else {
			apps = append(apps, f)
		}
	}
	const searched = "searched %d levels deep, skipping dependencies, tests and hidden directories"
	switch {
	case len(found) == 0:
		return Candidate{}, "", false, nil
	case len(found) == 1:
		return found[0], fmt.Sprintf("detected: the root of the source tree holds no app; %s is the only directory below it that does ("+searched+"); set the project's rootDirectory to choose another",
			found[0].String(), rootSearchDepth), true, nil
	case len(apps) == 1:
		var names []string
		for _, s := range sites {
			names = append(names, s.Dir)
		}
		return apps[0], fmt.Sprintf("detected: the root of the source tree holds no app; %s is the only app below it besides static sites (%s), which are not chosen over an app ("+searched+"); set the project's rootDirectory to choose another",
			apps[0].String(), strings.Join(names, ", "), rootSearchDepth), true, nil
	}
	if len(apps) == 0 {
		apps = sites
	}
	return Candidate{}, "", false, &AmbiguousRootError{Candidates: apps}
}
