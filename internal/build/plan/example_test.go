package plan_test

import (
	"errors"
	"fmt"
	"log"

	"github.com/slipwayhq/slipway/internal/build/plan"
)

// Detect the plan of a source tree, then render the Dockerfile that
// BuildKit builds with the tree's project root as the context.
func ExampleDetect() {
	p, err := plan.Detect("testdata/monorepo", plan.Options{Root: "apps/api"})
	if plan.IsUserError(err) {
		fmt.Println("cannot build:", err) // show it to the user
		return
	}
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(p.Provider, p.Root, p.BaseImages.Build)
	fmt.Println(p.Facts.Framework.Value, p.Facts.EntryPoint.Value, "from", p.Facts.EntryPoint.File)
	fmt.Println(p.StartCommand)

	dockerfile, err := p.Dockerfile()
	if errors.Is(err, plan.ErrUsesDockerfile) {
		dockerfile = "" // build p.DockerfilePath instead
	} else if err != nil {
		log.Fatal(err)
	}
	_ = dockerfile // build.Request{ContextDir: <tree>/apps/api, DockerfileContent: []byte(dockerfile)}
	// Output:
	// python apps/api python:3.11-slim-bookworm
	// fastapi service.api:api from service/api.py
	// uvicorn service.api:api --host 0.0.0.0 --port $PORT
}

// Nothing recognisable in the project root that is set: the error lists
// what was looked for.
func ExampleNotDetectedError() {
	_, err := plan.Detect("testdata/monorepo", plan.Options{Root: "apps"})
	var nd *plan.NotDetectedError
	if errors.As(err, &nd) {
		fmt.Println(len(nd.LookedFor), "providers looked in", nd.Root)
	}
	// Output:
	// 5 providers looked in apps
}

// No project root set and nothing at the root of the tree: the app below
// is found, and the plan says why it was chosen.
func ExampleDetect_projectRootDetected() {
	p, err := plan.Detect("testdata/monorepo", plan.Options{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(p.Provider, p.Root)
	fmt.Println(p.Facts.ProjectRoot.Reason)
	// Output:
	// python apps/api
	// detected: the root of the source tree holds no app; apps/api (python) is the only app below it besides static sites (apps/web), which are not chosen over an app (searched 3 levels deep, skipping dependencies, tests and hidden directories); set the project's rootDirectory to choose another
}
