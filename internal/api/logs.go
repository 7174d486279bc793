package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/slipwayhq/slipway/internal/deploy"
	"github.com/slipwayhq/slipway/internal/store"
)

// buildLogs serves a deployment's build log: a JSON page of lines after a
// cursor (direction=backward: the newest lines first, before a cursor), or with follow=true (or Accept: text/event-stream) a live
// server-sent-event stream that ends once the build and deploy phases are
// over.
func (s *Server) buildLogs(w http.ResponseWriter, r *http.Request) error {
	d, after, limit, err := s.logRequest(r, "after")
	if err != nil {
		return err
	}
	if wantsStream(r) {
		return s.stream(w, r, d.ID, store.LogBuild, resumeAt(r, after), true)
	}
	q := store.LogQuery{DeploymentID: d.ID, Kind: store.LogBuild, After: after, Limit: limit}
	switch dir := r.URL.Query().Get("direction"); dir {
	case "", "forward":
	case "backward":
		// The end of the log first (what `slipway logs --build` prints),
		// paging to older lines with before=<next>.
		before, _, err := cursorParams(r, "before")
		if err != nil {
			return err
		}
		q.After, q.Before, q.Desc = 0, before, true
	default:
		return errBadRequest(fmt.Sprintf("direction must be forward or backward, not %q", dir))
	}
	return s.logPage(w, r, q)
}

// runtimeLogs serves what a deployment's app wrote, paginated by cursor:
// direction=backward (the default) pages from the newest line to older
// ones, direction=forward from the oldest; with follow=true it streams new
// lines as server-sent events until the client goes away.
func (s *Server) runtimeLogs(w http.ResponseWriter, r *http.Request) error {
	d, cursor, limit, err := s.logRequest(r, "cursor")
	if err != nil {
		return err
	}
	if wantsStream(r) {
		if cursor == 0 && r.Header.Get("Last-Event-ID") == "" {
			// Start with the most recent lines, like tail -f.
			last, err := s.store.ListLogs(r.Context(), store.LogQuery{DeploymentID: d.ID, Kind: store.LogRuntime, Desc: true, Limit: limit})
			if err != nil {
				return err
			}
			if len(last) > 0 {
				cursor = last[len(last)-1].ID - 1
			}
		}
		return s.stream(w, r, d.ID, store.LogRuntime, resumeAt(r, cursor), false)
	}
	q := store.LogQuery{DeploymentID: d.ID, Kind: store.LogRuntime, Limit: limit}
	switch dir := r.URL.Query().Get("direction"); dir {
	case "", "backward":
		q.Desc, q.Before = true, cursor
	case "forward":
		q.After = cursor
	default:
		return errBadRequest(fmt.Sprintf("direction must be backward or forward, not %q", dir))
	}
	return s.logPage(w, r, q)
}

// logRequest reads what both log endpoints take: the deployment named in
// the path, the cursor in the query parameter name, and the page limit.
func (s *Server) logRequest(r *http.Request, name string) (d store.Deployment, cursor int64, limit int, err error) {
	d, err = s.store.GetDeployment(r.Context(), r.PathValue("id"))
	if err != nil {
		return store.Deployment{}, 0, 0, err
	}
	cursor, limit, err = cursorParams(r, name)
	if err != nil {
		return store.Deployment{}, 0, 0, err
	}
	return d, cursor, limit, nil
}

// resumeAt is where a stream starts: after the Last-Event-ID of a
// reconnecting client, else after cursor.
func resumeAt(r *http.Request, cursor int64) int64 {
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		cursor, _ = strconv.ParseInt(v, 10, 64)
	}
	return cursor
}

// logPage writes the lines q selects as a LogPage; Next is set when the
// page is full.
func (s *Server) logPage(w http.ResponseWriter, r *http.Request, q store.LogQuery) error {
	lines, err := s.store.ListLogs(r.Context(), q)
	if err != nil {
		return err
	}
	page := LogPage{Lines: ToLogLines(lines)}
	if len(lines) == q.Limit {
		page.Next = lines[len(lines)-1].ID
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

func cursorParams(r *http.Request, name string) (cursor int64, limit int, err error) {
	q := r.URL.Query()
	limit = 200
	if v := q.Get(name); v != "" {
		cursor, err = strconv.ParseInt(v, 10, 64)
		if err != nil || cursor < 0 {
			return 0, 0, errBadRequest(name + " must be a non-negative line id")
		}
	}
	if v := q.Get("limit"); v != "" {
		limit, err = strconv.Atoi(v)
		if err != nil || limit < 1 || limit > 5000 {
			return 0, 0, errBadRequest("limit must be a number from 1 to 5000")
		}
	}
	return cursor, limit, nil
}

func wantsStream(r *http.Request) bool {
	if v, _ := strconv.ParseBool(r.URL.Query().Get("follow")); v {
		return true
	}
	return strings.Contains(r.Header.Get("Accept"), "text/event-stream")
}

// stream serves a deployment's log stream; build streams end with the
// final deployment document.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, id, kind string, after int64, endWithBuild bool) error {
	var end func(store.Deployment) any
	if endWithBuild {
		end = func(d store.Deployment) any { return s.deploymentJSON(r.Context(), d) }
	}
	return StreamLogs(w, r, s.store, s.dep, id, kind, after, end)
}

// StreamLogs writes a deployment's lines of kind after the cursor as
// server-sent events, then waits for more (the dashboard serves its log
// streams with it too). Events:
//
//	event: line    data: LogLine (id: the line's cursor)
//	event: status  data: {"status": "..."} whenever the status changes
//	event: end     data: end(deployment) — only when end is not nil, once
//	               the deployment is RUNNING, FAILED or STOPPED and every
//	               line has been sent
//
// It returns when the client goes away (or the stream ends), or an error
// before writing anything when the connection cannot stream.
func StreamLogs(w http.ResponseWriter, r *http.Request, st store.Reader, dep *deploy.Controller, id, kind string, after int64, end func(store.Deployment) any) error {
	flusher, ok := w.(http.Flusher)
	if !ok {
		return fmt.Errorf("streaming unsupported by the connection")
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, "retry: 2000\n\n") // reconnect after 2 s when the connection drops
	ctx := r.Context()
	lastStatus := ""
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	for {
		// Take the wake-up channel before reading, so a change between the
		// read and the wait is not missed.
		changed := dep.Changed(id)
		d, err := st.GetDeployment(ctx, id)
		if err != nil {
			return nil
		}
		for {
			lines, err := st.ListLogs(ctx, store.LogQuery{DeploymentID: id, Kind: kind, After: after, Limit: 500})
			if err != nil {
				return nil
			}
			for _, l := range ToLogLines(lines) {
				b, _ := json.Marshal(l)
				fmt.Fprintf(w, "id: %d\nevent: line\ndata: %s\n\n", l.ID, b)
				after = l.ID
			}
			if len(lines) < 500 {
				break
			}
		}
		if d.Status != lastStatus {
			lastStatus = d.Status
			fmt.Fprintf(w, "event: status\ndata: {\"status\":%q}\n\n", d.Status)
		}
		flusher.Flush()
		if stat := deploy.Status(d.Status); end != nil && (stat == deploy.Running || stat.Terminal()) {
			b, _ := json.Marshal(end(d))
			fmt.Fprintf(w, "event: end\ndata: %s\n\n", b)
			flusher.Flush()
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-keepalive.C:
			fmt.Fprint(w, ": keepalive\n\n")
			flusher.Flush()
		}
	}
}
