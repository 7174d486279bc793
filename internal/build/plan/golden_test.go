package plan

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// goldenCase is one source tree and the options to detect it with.
type goldenCase struct {
	name string
	dir  string
	opts Options
}

// caseOptions are the options of the testdata cases that need any; extra
// cases run a tree a second time with other options.
var (
	caseOptions = map[string]Options{
		"monorepo":        {Root: "apps/api"},
		"dockerfile-path": {DockerfilePath: "deploy/Dockerfile"},
	}
	extraCases = []goldenCase{
		{name: "monorepo-web", dir: "testdata/monorepo", opts: Options{Root: "/apps/web/"}},
		{name: "monorepo-root-detected", dir: "testdata/monorepo"},
		{name: "python-plain-custom-start", dir: "testdata/python-plain", opts: Options{StartCommand: "python main.py --workers 2"}},
		{name: "dockerfile-path-ignored-without-setting", dir: "testdata/dockerfile-path"},
	}
)

// goldenCases are every tree under testdata/ and every example app.
func goldenCases(t *testing.T) []goldenCase {
	var cases []goldenCase
	for _, src := range []struct{ dir, prefix string }{{"testdata", ""}, {"../../../examples", "example-"}} {
		entries, err := os.ReadDir(src.dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if !e.IsDir() || e.Name() == "golden" || e.Name() == "fuzz" {
				continue
			}
			cases = append(cases, goldenCase{name: src.prefix + e.Name(), dir: filepath.Join(src.dir, e.Name()), opts: caseOptions[e.Name()]})
		}
	}
	return append(cases, extraCases...)
}

// TestGolden detects the plan of every case and compares it, and the
// Dockerfile rendered from it, with testdata/golden/<case>.json and
// <case>.Dockerfile. Run with -update to rewrite them.
func TestGolden(t *testing.T) {
	cases := goldenCases(t)
	want := map[string]bool{}
	for _, c := range cases {
		want[c.name+".json"] = true
		t.Run(c.name, func(t *testing.T) {
			p, err := Detect(c.dir, c.opts)
			if err != nil {
				t.Fatalf("Detect: %v", err)
			}
			b, err := json.MarshalIndent(p, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, c.name+".json", append(b, '\n'))

			df, err := p.Dockerfile()
			if errors.Is(err, ErrUsesDockerfile) {
				if p.Provider != ProviderDockerfile {
					t.Fatalf("ErrUsesDockerfile for provider %s", p.Provider)
				}
				return
			}
			if err != nil {
				t.Fatalf("Dockerfile: %v", err)
			}
			want[c.name+".Dockerfile"] = true
			checkGolden(t, c.name+".Dockerfile", []byte(df))
			checkFrontendAccepts(t, df, p)
		})
	}
	// No golden file may outlive its case.
	entries, err := os.ReadDir("testdata/golden")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !want[e.Name()] {
			if *update {
				os.Remove(filepath.Join("testdata/golden", e.Name()))
				continue
			}
			t.Errorf("testdata/golden/%s belongs to no case (run with -update to remove it)", e.Name())
		}
	}
}

func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	file := filepath.Join("testdata/golden", name)
	if *update {
		if err := os.MkdirAll("testdata/golden", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the detected plan (run with -update if the change is intended):\n--- got\n%s\n--- want\n%s", file, got, want)
	}
}

// checkFrontendAccepts parses a generated Dockerfile with the parser and
// instruction checks of BuildKit's dockerfile frontend (the code buildkitd
// runs for dockerfile.v0) and checks what the plan asked for survived:
// stages, cache mounts and the command.
func checkFrontendAccepts(t *testing.T, df string, p *Plan) {
	t.Helper()
	res, err := parser.Parse(strings.NewReader(df))
	if err != nil {
		t.Fatalf("the frontend's parser rejects the Dockerfile: %v\n%s", err, df)
	}
	if len(res.Warnings) > 0 {
		t.Errorf("parser warnings: %+v", res.Warnings)
	}
	stages, _, err := instructions.Parse(res.AST, nil)
	if err != nil {
		t.Fatalf("the frontend rejects the Dockerfile: %v\n%s", err, df)
	}
	wantStages := 1
	if p.BaseImages.Runtime != p.BaseImages.Build {
		wantStages = 2
	}
	if len(stages) != wantStages {
		t.Fatalf("%d stages, want %d", len(stages), wantStages)
	}
	if stages[0].BaseName != p.BaseImages.Build || stages[len(stages)-1].BaseName != p.BaseImages.Runtime {
		t.Errorf("stages from %s … %s, want %s … %s", stages[0].BaseName, stages[len(stages)-1].BaseName, p.BaseImages.Build, p.BaseImages.Runtime)
	}
	var mounts []string
	var cmd []string
	for _, st := range stages {
		for _, c := range st.Commands {
			switch c := c.(type) {
			case *instructions.RunCommand:
				// The frontend expands mount flags with the build args; none here.
				if err := c.Expand(func(w string) (string, error) { return w, nil }); err != nil {
					t.Fatalf("the frontend rejects %q: %v", c.String(), err)
				}
				for _, m := range instructions.GetMounts(c) {
					if m.Type != instructions.MountTypeCache {
						t.Errorf("mount of type %s", m.Type)
					}
					mounts = append(mounts, m.CacheID+"="+m.Target)
				}
			case *instructions.CmdCommand:
				cmd = c.CmdLine
			}
		}
	}
	var wantMounts []string
	for _, s := range p.Steps {
		if len(s.Commands) == 0 {
			continue
		}
		for _, c := range s.Caches {
			wantMounts = append(wantMounts, c.ID+"="+c.Target)
		}
	}
	if !slices.Equal(mounts, wantMounts) {
		t.Errorf("cache mounts %v, want %v", mounts, wantMounts)
	}
	if len(cmd) != 3 || cmd[0] != "/bin/sh" || !strings.HasSuffix(cmd[2], p.StartCommand) {
		t.Errorf("CMD %q does not run the start command %q", cmd, p.StartCommand)
	}
}
