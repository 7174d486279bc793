// Package benchsrv holds what the server benchmarks share: starting the
// slipway binary on a data directory, copying example apps, deploying and
// timing a deployment from upload to its first answer through the router.
package benchsrv

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/slipwayhq/slipway/test/fault/serverproc"
)

// Start starts a server and reports how long it took to answer.
func Start(ctx context.Context, cfg serverproc.Config) (*serverproc.Server, time.Duration, error) {
	srv, err := serverproc.New(cfg)
	if err != nil {
		return nil, 0, err
	}
	t0 := time.Now()
	if err := srv.Start(ctx); err != nil {
		return nil, 0, err
	}
	return srv, time.Since(t0), nil
}

// Shutdown stops every deployment, then the server.
func Shutdown(srv *serverproc.Server) {
	if srv == nil {
		return
	}
	if srv.Running() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		if err := srv.Client().StopAll(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "stopping deployments:", err)
		}
		cancel()
	}
	srv.Stop(30 * time.Second)
}

// CopyDir copies a directory tree of regular files (an example app).
func CopyDir(src, dst string) error {
	return filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if info.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, info.Mode().Perm())
	})
}

// Push is the timeline of one deployment, from the client's upload to the
// first answer of the new deployment through the router.
type Push struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
	// Milliseconds from the start of the upload.
	RunningMS  float64 `json:"running_ms"`   // the client saw RUNNING
	FirstOKMS  float64 `json:"first_200_ms"` // first 200 from the new deployment
	UploadMS   float64 `json:"upload_ms"`    // until the server recorded it
	QueueMS    float64 `json:"queue_ms"`
	InitMS     float64 `json:"initializing_ms"`
	BuildMS    float64 `json:"building_ms"`
	DeployMS   float64 `json:"deploying_ms"`
	RouteMS    float64 `json:"to_first_200_ms"` // end of DEPLOYING → first 200
	UploadSize int     `json:"upload_bytes"`
}

// Deploy uploads dir to project, waits for RUNNING (or the end), then for
// the first 200 from this deployment on host through the router, whose
// body holds the deployment id.
func Deploy(ctx context.Context, c *serverproc.Client, project, dir, host string) (Push, error) {
	tgz, err := serverproc.Pack(dir)
	if err != nil {
		return Push{}, err
	}
	t0 := time.Now()
	d, err := c.UploadTarball(ctx, project, bytes.NewReader(tgz), url.Values{})
	if err != nil {
		return Push{}, err
	}
	p := Push{ID: d.ID, UploadSize: len(tgz)}
	for {
		d, err = c.Deployment(ctx, d.ID)
		if err != nil {
			return p, err
		}
		if serverproc.Settled(d.Status) {
			break
		}
		select {
		case <-ctx.Done():
			return p, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	p.RunningMS = ms(time.Since(t0))
	p.Status, p.Reason = d.Status, d.FailureReason
	if d.Status != "RUNNING" {
		return p, nil
	}
	for {
		code, body, err := c.Get(ctx, host, "/")
		if err == nil && code == 200 && bytes.Contains(body, []byte(d.ID)) {
			break
		}
		select {
		case <-ctx.Done():
			return p, fmt.Errorf("%s never answered for %s: %d %q %v", host, d.ID, code, body, err)
		case <-time.After(2 * time.Millisecond):
		}
	}
	first := time.Now()
	p.FirstOKMS = ms(first.Sub(t0))
	p.UploadMS = ms(d.CreatedAt.Sub(t0))
	var deployEnd time.Time
	for _, ph := range d.Phases {
		switch ph.Name {
		case "INITIALIZING":
			p.QueueMS = ms(ph.StartedAt.Sub(d.CreatedAt))
			p.InitMS = float64(ph.DurationMS)
		case "BUILDING":
			p.BuildMS = float64(ph.DurationMS)
		case "DEPLOYING":
			p.DeployMS = float64(ph.DurationMS)
			if ph.EndedAt != nil {
				deployEnd = *ph.EndedAt
			}
		}
	}
	if !deployEnd.IsZero() {
		p.RouteMS = ms(first.Sub(deployEnd))
	}
	return p, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// TTFB sends one GET for host through the router on a new connection and
// returns the time to the first byte of the answer, its status and body.
func TTFB(ctx context.Context, router, host, path string) (time.Duration, int, []byte, error) {
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	var first time.Time
	trace := &httptrace.ClientTrace{GotFirstResponseByte: func() { first = time.Now() }}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), "GET", "http://"+router+path, nil)
	if err != nil {
		return 0, 0, nil, err
	}
	req.Host = host
	t0 := time.Now()
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return 0, 0, nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return first.Sub(t0), resp.StatusCode, b, nil
}

// Trim shortens a text for a table cell.
func Trim(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
