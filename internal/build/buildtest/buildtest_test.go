package buildtest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipwayhq/slipway/internal/build"
	"github.com/slipwayhq/slipway/internal/build/buildertest"
)

func TestConformance(t *testing.T) {
	buildertest.Run(t, buildertest.Harness{
		New:           func(t *testing.T) build.Builder { return New() },
		Source:        source,
		Registry:      "127.0.0.1:7300",
		FailingStep:   "RUN make",
		MalformedStep: "Dockerfile:1",
		// The stand-in pushes nothing and runs no processes: no
		// CheckPushed, no StepProcesses.
	})
}

// source writes a source that steers the stand-in as sc asks.
func source(t *testing.T, sc buildertest.Scenario) string {
	dir := t.TempDir()
	files := map[string]string{"Dockerfile": "FROM scratch\n"}
	if len(sc.Output) > 0 {
		files["OUTPUT"] = strings.Join(sc.Output, "\n") + "\n"
	}
	switch sc.Kind {
	case buildertest.Fails:
		files["FAIL"] = ""
	case buildertest.Blocks:
		files["BLOCK"] = ""
	case buildertest.Malformed:
		files["Dockerfile"] = "FORM scratch\n"
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestCheckDockerfile(t *testing.T) {
	for _, tt := range []struct {
		name, df string
		line     int
		keyword  string
	}{
		{"empty", "", 0, ""},
		{"scratch", "FROM scratch\n", 0, ""},
		{"lowercase", "from scratch\ncopy . /\n", 0, ""},
		{"typo", "FROM scratch\nFORM x\n", 2, "FORM"},
		{"first line", "FORM scratch", 1, "FORM"},
		{"comments and blanks", "# syntax=docker/dockerfile:1\n\n# a comment\nFROM scratch\n  # indented\nRUN x\n", 0, ""},
		{"continuation", "FROM scratch\nRUN a \\\n    && b \\\n    # comment\n    && c\nNOPE\n", 6, "NOPE"},
		{"escape directive", "# escape=`\nFROM scratch\nRUN a `\n  b\nCMD x\n", 0, ""},
		{"heredoc", "FROM scratch\nRUN <<EOF\nnot an instruction\nEOF\nCOPY <<-\"A\" <<B /\nx\nA\ny\nB\nCMD x\n", 0, ""},
		{"after heredoc", "FROM scratch\nRUN <<EOF\nx\nEOF\nBAD\n", 5, "BAD"},
		{"shift is no heredoc", "FROM scratch\nRUN echo $((1<<2))\nBAD\n", 3, "BAD"},
	} {
		line, kw := checkDockerfile([]byte(tt.df))
		if line != tt.line || kw != tt.keyword {
			t.Errorf("%s: checkDockerfile = %d, %q; want %d, %q", tt.name, line, kw, tt.line, tt.keyword)
		}
	}
}

// TestGeneratedDockerfilesAreWellFormed: the stand-in accepts every
// Dockerfile the build plans generate, as deployments build them.
func TestGeneratedDockerfilesAreWellFormed(t *testing.T) {
	files, err := filepath.Glob("../plan/testdata/golden/*.Dockerfile")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden Dockerfiles: %v", err)
	}
	for _, f := range files {
		df, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if line, kw := checkDockerfile(df); line != 0 {
			t.Errorf("%s: line %d: %q taken for an unknown instruction", f, line, kw)
		}
	}
}
