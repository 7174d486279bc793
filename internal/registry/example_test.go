package registry_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"

	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/slipwayhq/slipway/internal/registry"
)

func ExampleNew() {
	dir, err := os.MkdirTemp("", "registry-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	reg, err := registry.New(registry.Config{
		Dir: dir,
		// The server checks a Slipway API token given as the basic-auth
		// password or as a bearer token.
		Authorize: func(r *http.Request) bool {
			_, pw, ok := r.BasicAuth()
			return ok && pw == "token"
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/v2/", reg)

	// Seed a public image in-process, as the server does with base images.
	img, _ := random.Image(256, 1)
	if err := reg.Import(context.Background(), "library/golang:1.23", img); err != nil {
		log.Fatal(err)
	}

	for _, path := range []string{"/v2/library/golang/manifests/1.23", "/v2/myapp/manifests/latest"} {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodHead, path, nil))
		fmt.Println(path, rec.Code)
	}
	// Output:
	// /v2/library/golang/manifests/1.23 200
	// /v2/myapp/manifests/latest 401
}
