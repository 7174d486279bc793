package web_test

import (
	"net/http"

	"github.com/slipwayhq/slipway/internal/deploy"
	"github.com/slipwayhq/slipway/internal/project"
	"github.com/slipwayhq/slipway/internal/store"
	"github.com/slipwayhq/slipway/internal/web"
)

// The dashboard answers every path the API listener's other handlers do
// not claim.
func ExampleNew() {
	var (
		st  *store.Store       // opened by the server
		ctl *deploy.Controller // started by the server
		prj *project.Service   // project.New with ctl as its Lifecycle
		api http.Handler       // api.New(...).Handler(): /api/ and /v2/
	)
	mux := http.NewServeMux()
	mux.Handle("/api/", api)
	mux.Handle("/v2/", api)
	mux.Handle("/", web.New(web.Config{Store: st, Deploy: ctl, Projects: prj, RouterPort: 80}))
	_ = &http.Server{Handler: mux}
}
