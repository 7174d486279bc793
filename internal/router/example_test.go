package router_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"

	"github.com/slipwayhq/slipway/internal/router"
)

func Example() {
	// An app, as the runtime would run it.
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s", r.Host)
	}))
	defer app.Close()
	backend := router.BackendFunc(func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer // the control plane dials into the instance's netns instead
		return d.DialContext(ctx, "tcp", app.Listener.Addr().String())
	})

	// The control plane publishes a deployment's hosts in one atomic swap.
	var table router.Table
	table.Update(func(m map[string]router.Route) {
		r := router.Route{Deployment: "d0123456789a", Project: "web", Backend: backend}
		m["d0123456789a.slipway.localhost"] = r // preview URL
		m["web.slipway.localhost"] = r          // project hostname
	})

	front := httptest.NewServer(&router.Router{Table: &table})
	defer front.Close()

	for _, host := range []string{"web.slipway.localhost:8080", "nope.slipway.localhost"} {
		req, _ := http.NewRequest("GET", front.URL, nil)
		req.Host = host
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			fmt.Println(err)
			return
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		fmt.Printf("%d %s\n", res.StatusCode, firstLine(string(body)))
	}
	// Output:
	// 200 hello from web.slipway.localhost:8080
	// 404 404 Not Found
}

func firstLine(s string) string {
	for i, c := range s {
		if c == '\n' {
			return s[:i]
		}
	}
	return s
}
