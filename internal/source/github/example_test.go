package github_test

import (
	"context"
	"fmt"
	"net/http"

	"github.com/slipwayhq/slipway/internal/source/github"
)

// The server mounts the webhook endpoint; Enqueue only records the push,
// and a worker later fetches the commit and creates the deployment.
func Example() {
	queue := make(chan github.PushEvent, 100)
	hook, err := github.New(github.Config{
		Lookup: func(ctx context.Context, project string) (github.Link, bool, error) {
			// From the store: the project's linked repository and secret.
			return github.Link{Secret: []byte("s3cret"), Repository: "octo-org/hello-world"}, project == "hello", nil
		},
		Enqueue: func(ctx context.Context, ev github.PushEvent) error {
			if ev.Branch != "main" {
				return fmt.Errorf("branch %q is not mapped to an environment: %w", ev.Branch, github.ErrIgnored)
			}
			queue <- ev
			return nil
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	mux := http.NewServeMux()
	mux.Handle("POST /hooks/github/{project}", hook)

	go func() {
		for ev := range queue {
			dir := "/var/lib/slipway/checkouts/" + ev.DeliveryID
			err := github.Fetch(context.Background(), "https://github.com/octo-org/hello-world.git", ev.NewSHA,
				&github.Credentials{Password: "ghp_…"}, dir)
			_ = err // then source.Pack(dir, …) into deploy.Controller.Create, Trigger "webhook"
		}
	}()
}
