package buildkit

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/slipwayhq/slipway/internal/baseimage"
	"github.com/slipwayhq/slipway/internal/build"
	"github.com/slipwayhq/slipway/internal/build/buildertest"
)

// TestConformance runs the builder conformance suite against buildkitd,
// with sources whose steps run in the debian base-image stand-in.
func TestConformance(t *testing.T) {
	_, host := sharedEnv(t)
	base := seedDebian(t, host)
	const outputFile = "/buildertest/output.txt"
	buildertest.Run(t, buildertest.Harness{
		New: func(t *testing.T) build.Builder {
			return newBuilder(t, map[string]Credential{host: {Secret: testSecret}})
		},
		Source: func(t *testing.T, sc buildertest.Scenario) string {
			step := "RUN cat " + outputFile
			switch sc.Kind {
			case buildertest.Fails:
				step += " && exit 3"
			case buildertest.Blocks:
				// The token in the command finds the step's shell in /proc.
				step += " && sleep infinity && echo " + sc.Token
			}
			df := "FROM " + base + "\nCOPY output.txt " + outputFile + "\n" + step + "\n"
			if sc.Kind == buildertest.Malformed {
				df = "FROM " + base + "\nFORM x\n"
			}
			files := map[string]string{"Dockerfile": df}
			if len(sc.Output) > 0 {
				files["output.txt"] = strings.Join(sc.Output, "\n") + "\n"
			}
			return source(t, files)
		},
		Registry:      host,
		FailingStep:   "RUN cat " + outputFile + " && exit 3",
		MalformedStep: "Dockerfile:2",
		CheckPushed: func(t *testing.T, req build.Request, res build.Result) {
			t.Helper()
			if got, err := crane.Digest(res.Image, crane.Insecure); err != nil || got != res.Digest {
				t.Errorf("the registry has %s as %q, %v; want %s", res.Image, got, err, res.Digest)
			}
			if got, err := crane.Digest(req.Image, crane.Insecure); err != nil || got != res.Digest {
				t.Errorf("the registry has tag %s → %q, %v; want %s", req.Image, got, err, res.Digest)
			}
		},
		StepProcesses: func(t *testing.T, sc buildertest.Scenario) int {
			return len(processesWith(sc.Token))
		},
	})
}

// processesWith returns the pids of the processes whose command line
// holds s.
func processesWith(s string) []string {
	needle := []byte(s)
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	var pids []string
	for _, d := range dirs {
		cmd, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err == nil && bytes.Contains(cmd, needle) {
			pids = append(pids, filepath.Base(d))
		}
	}
	return pids
}

// debianBase is the reference of the debian stand-in in the shared
// registry, seeded once.
var debianBase struct {
	once sync.Once
	ref  string
	err  string
	miss string
}

// seedDebian pushes the debian base-image stand-in (scripts/base-images.sh
// builds it) into the shared registry and returns its reference. Without
// it the test skips, or fails when CI is set.
func seedDebian(t *testing.T, host string) string {
	t.Helper()
	debianBase.once.Do(func() {
		dir := os.Getenv("SLIPWAY_BASE_IMAGES")
		if dir == "" {
			dir = "/var/lib/slipway/base-images"
		}
		imgs, err := baseimage.Images(dir)
		if err != nil {
			debianBase.miss = "reading base images: " + err.Error()
			return
		}
		var img baseimage.Image
		for _, im := range imgs {
			if strings.HasPrefix(im.Ref, "library/debian:") && (img.Image == nil || strings.HasSuffix(im.Ref, "-slim") && !strings.HasSuffix(img.Ref, "-slim")) {
				img = im
			}
		}
		if img.Image == nil {
			debianBase.miss = "no library/debian image in " + dir + " (scripts/base-images.sh builds it)"
			return
		}
		ref, err := name.ParseReference(host+"/"+img.Ref, name.Insecure)
		if err != nil {
			debianBase.err = err.Error()
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := remote.Write(ref, img.Image, remote.WithContext(ctx),
			remote.WithAuth(&authn.Basic{Username: "seed", Password: testSecret})); err != nil {
			debianBase.err = "seeding " + img.Ref + ": " + err.Error()
			return
		}
		debianBase.ref = ref.String()
	})
	if debianBase.miss != "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI is set and %s", debianBase.miss)
		}
		t.Skip(debianBase.miss)
	}
	if debianBase.err != "" {
		t.Fatal(debianBase.err)
	}
	return debianBase.ref
}
