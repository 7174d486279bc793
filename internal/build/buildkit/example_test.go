package buildkit_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/slipwayhq/slipway/internal/build"
	"github.com/slipwayhq/slipway/internal/build/buildkit"
)

// Start a supervised buildkitd that treats the embedded registry as a
// plain-HTTP registry and as the docker.io mirror, then build and push.
func Example() {
	ctx := context.Background()
	const registry = "127.0.0.1:7300"
	d, err := buildkit.StartDaemon(ctx, buildkit.DaemonConfig{
		PlainHTTPRegistries: []string{registry},
		DockerHubMirrors:    []string{registry},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer d.Close()

	b, err := buildkit.New(d.Addr(), buildkit.Config{
		Credentials: map[string]buildkit.Credential{registry: {Secret: "a-registry-token"}},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	res, err := b.Build(ctx, build.Request{
		ContextDir: "/srv/source",
		Image:      registry + "/myproject:d0123456789a",
		Log:        func(t time.Time, line string) { fmt.Println(t.Format(time.RFC3339Nano), line) },
	})
	if build.IsUserError(err) {
		fmt.Println("build failed:", err) // e.g. "[2/4] RUN make: process ... exit code: 2"
		return
	}
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("pushed", res.Image)
}
