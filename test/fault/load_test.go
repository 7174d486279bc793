package fault

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Deploy under load: a constant load on a project's default hostname while
// deployments are made back to back. Every request must get a 2xx answer
// (no error page, no connection error), and the hostname must move
// forward only: once a client has been answered by deployment k, it is
// never answered by an older one. Right after the API says RUNNING, the
// new deployment answers.
func TestDeployUnderLoad(t *testing.T) {
	const (
		deploys = 20
		workers = 8
		// Deployments are paced so that at least this many requests fall
		// between two switches (waiting at most pace each time): 20
		// deployments then carry 100,000 requests.
		perDeploy   = 5000
		pace        = 15 * time.Second
		maxRequests = 1_000_000 // a bound, not a target
	)
	e := sharedEnv(t)
	c := e.c
	ensureProject(t, c, "load")
	src := faultApp(t, "")
	first := deployRunning(t, c, "load", src, 10*time.Minute)
	host := c.Host("load")

	// order maps deployment ids to their rank; the deployer adds each new
	// deployment before it can become current.
	var mu sync.Mutex
	order := map[string]int{first.ID: 0}
	rank := func(id string) (int, bool) {
		mu.Lock()
		defer mu.Unlock()
		r, ok := order[id]
		return r, ok
	}

	var total, non2xx, connErrs, backwards, foreign atomic.Int64
	var firstProblem atomic.Value
	problem := func(format string, args ...any) {
		firstProblem.CompareAndSwap(nil, fmt.Sprintf(format, args...))
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
				DialContext: c.RouterDialer(), MaxIdleConnsPerHost: 4, DisableCompression: true,
			}}
			defer client.CloseIdleConnections()
			last := 0
			for total.Load() < maxRequests {
				select {
				case <-stop:
					return
				default:
				}
				total.Add(1)
				resp, err := client.Get("http://" + host + "/")
				if err != nil {
					connErrs.Add(1)
					problem("connection error: %v", err)
					continue
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					connErrs.Add(1)
					problem("reading the answer: %v", err)
					continue
				}
				if resp.StatusCode/100 != 2 {
					non2xx.Add(1)
					problem("%d %q", resp.StatusCode, body)
					continue
				}
				a, ok := parseAppInfo(body)
				if !ok {
					foreign.Add(1)
					problem("answer not from the app: %q", body)
					continue
				}
				r, ok := rank(a.Deployment)
				if !ok {
					foreign.Add(1)
					problem("answer from unknown deployment %s", a.Deployment)
					continue
				}
				if r < last {
					backwards.Add(1)
					problem("answered by deployment #%d after #%d", r, last)
				}
				last = r
			}
		}()
	}

	start := time.Now()
	var deployErr error
	for i := 1; i <= deploys && deployErr == nil; i++ {
		deployErr = func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			d, err := c.Upload(ctx, "load", src, url.Values{"message": {fmt.Sprintf("deploy %d under load", i)}})
			if err != nil {
				return err
			}
			mu.Lock()
			order[d.ID] = i
			mu.Unlock()
			d, err = c.WaitSettled(ctx, d.ID)
			if err != nil {
				return err
			}
			if d.Status != "RUNNING" {
				return fmt.Errorf("deployment %d (%s) is %s: %s", i, d.ID, d.Status, d.FailureReason)
			}
			// Whoever sees RUNNING reaches the new deployment at once.
			code, body, err := c.Get(ctx, host, "/")
			if a, ok := parseAppInfo(body); err != nil || code != 200 || !ok || a.Deployment != d.ID {
				return fmt.Errorf("right after deployment %d (%s) was RUNNING, %s answered %d %q (%v)", i, d.ID, host, code, strings.TrimSpace(string(body)), err)
			}
			for wait := time.Now().Add(pace); total.Load() < int64(i*perDeploy) && time.Now().Before(wait); {
				time.Sleep(10 * time.Millisecond)
			}
			return nil
		}()
	}
	elapsed := time.Since(start)
	close(stop)
	wg.Wait()

	n := total.Load()
	t.Logf("%d requests in %s (%.0f/s) across %d deployments; %d non-2xx, %d connection errors, %d from an older deployment, %d not from the app",
		n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(), deploys, non2xx.Load(), connErrs.Load(), backwards.Load(), foreign.Load())
	if deployErr != nil {
		t.Fatal(deployErr)
	}
	if non2xx.Load()+connErrs.Load()+backwards.Load()+foreign.Load() != 0 {
		t.Errorf("failed requests under load; the first: %v", firstProblem.Load())
	}
	if n == 0 {
		t.Error("no requests were made")
	}
}
