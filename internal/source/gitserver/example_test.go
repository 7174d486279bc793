package gitserver_test

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/slipwayhq/slipway/internal/source/gitserver"
)

// The server mounts the git endpoint at /git/ and creates a deployment for
// each pushed branch, streaming its progress to the pushing client.
func Example() {
	authorized := func(r *http.Request) bool { _, pw, ok := r.BasicAuth(); return ok && pw == "token" }
	create := func(ctx context.Context, ev gitserver.PushEvent, src io.Reader) (string, error) {
		// deploy.Controller.Create(ctx, deploy.CreateRequest{Trigger: "push",
		//	Branch: ev.Branch, CommitSHA: ev.NewSHA, Message: ev.Message,
		//	Author: ev.Author, Source: src, …})
		_, err := io.Copy(io.Discard, src)
		return "abcdefghijkl", err
	}
	git, err := gitserver.New(gitserver.Config{
		Root:      "/var/lib/slipway/git",
		Authorize: authorized,
		Pusher: gitserver.PushFunc(func(ctx context.Context, ev gitserver.PushEvent, out io.Writer) error {
			switch {
			case ev.Branch == "":
				fmt.Fprintf(out, "%s is not a branch: nothing to deploy\n", ev.Ref)
				return nil
			case ev.Deleted:
				fmt.Fprintf(out, "branch %s deleted: nothing to deploy\n", ev.Branch)
				return nil
			}
			// The deployment must outlive a client that hangs up.
			bg := context.WithoutCancel(ctx)
			pr, pw := io.Pipe()
			go func() { pw.CloseWithError(gitserver.Archive(bg, ev.RepoDir, ev.NewSHA, pw)) }()
			id, err := create(bg, ev, pr)
			pr.CloseWithError(io.ErrClosedPipe) // unblocks Archive if create stopped reading early
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "deployment %s created for %s\n", id, ev.Branch)
			// … follow the build log, writing each line to out, then print the URLs.
			return nil
		}),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	mux := http.NewServeMux()
	mux.Handle("/git/", http.StripPrefix("/git", git))
	// git remote add slipway http://127.0.0.1:7300/git/hello.git
}
