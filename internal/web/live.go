package web

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/slipwayhq/slipway/internal/api"
	"github.com/slipwayhq/slipway/internal/deploy"
	"github.com/slipwayhq/slipway/internal/store"
)

// Live updates. A page names its scope ("projects", "project:NAME" or
// "deployment:ID") and the fingerprint of what it showed; /live sends a
// "change" event whenever the scope's fingerprint differs, and the page
// then fetches itself again and swaps the regions whose version changed.
// The handler wakes on deploy.Controller.Changed for the deployments in
// scope that can still change, and polls every Config.LivePoll for what
// no deployment announces (a new deployment, a domain, a promotion).

// fingerprint hashes what a scope shows and lists the deployments whose
// changes should wake a follower.
func (h *handler) fingerprint(ctx context.Context, scope string) (string, []string, error) {
	var b strings.Builder
	var wake []string
	add := func(d store.Deployment) {
		fmt.Fprintf(&b, "%s=%s;", d.ID, d.Status)
		if !deploy.Status(d.Status).Terminal() {
			wake = append(wake, d.ID)
		}
	}
	addList := func(f store.DeploymentFilter) error {
		ds, err := h.store.ListDeployments(ctx, f)
		for _, d := range ds {
			add(d)
		}
		return err
	}
	kind, arg, _ := strings.Cut(scope, ":")
	switch kind {
	case "projects":
		ps, err := h.store.ListProjects(ctx)
		if err != nil {
			return "", nil, err
		}
		for _, p := range ps {
			fmt.Fprintf(&b, "p:%s;", p.Name)
			if env, err := h.store.GetEnvironment(ctx, p.ID, store.ProductionEnvironment); err == nil {
				fmt.Fprintf(&b, "cur=%s;", env.CurrentDeploymentID)
				if d, err := h.store.GetDeployment(ctx, env.CurrentDeploymentID); err == nil {
					add(d)
				}
			}
			if err := addList(store.DeploymentFilter{ProjectID: p.ID, Limit: 1}); err != nil {
				return "", nil, err
			}
		}
	case "project":
		p, err := h.store.GetProject(ctx, arg)
		if err != nil {
			return "", nil, err
		}
		envs, err := h.store.ListEnvironments(ctx, p.ID)
		if err != nil {
			return "", nil, err
		}
		for _, e := range envs {
			doms, err := h.store.ListDomains(ctx, e.ID)
			if err != nil {
				return "", nil, err
			}
			fmt.Fprintf(&b, "e:%s=%s/%d;", e.Name, e.CurrentDeploymentID, len(doms))
		}
		if err := addList(store.DeploymentFilter{ProjectID: p.ID, Limit: deploymentsPerPage + 1}); err != nil {
			return "", nil, err
		}
	case "deployment":
		d, err := h.store.GetDeployment(ctx, arg)
		if err != nil {
			return "", nil, err
		}
		add(d)
		fmt.Fprintf(&b, "u=%d;", d.UpdatedAt.UnixNano())
		if insts, err := h.store.ListInstances(ctx, d.ID); err == nil && len(insts) > 0 {
			in := insts[len(insts)-1]
			fmt.Fprintf(&b, "i=%s/%s/%s;", in.ID, in.Status, in.Health.State)
		}
		b.WriteString(strings.Join(h.proj.Hostnames(ctx, d), ","))
	default:
		return "", nil, &httpError{Status: http.StatusBadRequest, Message: "unknown live scope"}
	}
	sum := sha256.Sum256([]byte(b.String()))
	return hex.EncodeToString(sum[:8]), wake, nil
}

// startSSE prepares an event stream, or reports why it cannot.
func startSSE(w http.ResponseWriter) (http.Flusher, bool) {
	f, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return nil, false
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	// Reconnect after 2 s when the connection drops.
	fmt.Fprint(w, "retry: 2000\n\n")
	f.Flush()
	return f, true
}

const keepaliveEvery = 15 * time.Second

func (h *handler) live(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	scope, last := r.URL.Query().Get("scope"), r.URL.Query().Get("fp")
	if _, _, err := h.fingerprint(ctx, scope); err != nil {
		status, msg := h.classify(r, err)
		http.Error(w, msg, status)
		return
	}
	flusher, ok := startSSE(w)
	if !ok {
		return
	}
	poll := time.NewTicker(h.cfg.LivePoll)
	defer poll.Stop()
	keepalive := time.NewTicker(keepaliveEvery)
	defer keepalive.Stop()
	var wake []string
	for {
		// Take the wake-up channels before reading, so a change between
		// the read and the wait is not missed.
		cases := []reflect.SelectCase{
			{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ctx.Done())},
			{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(poll.C)},
			{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(keepalive.C)},
		}
		for _, id := range wake {
			cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(h.dep.Changed(id))})
		}
		fp, ids, err := h.fingerprint(ctx, scope)
		if err != nil {
			fmt.Fprint(w, "event: gone\ndata: {}\n\n")
			flusher.Flush()
			return
		}
		if fp != last {
			last = fp
			fmt.Fprintf(w, "event: change\ndata: %q\n\n", fp)
			flusher.Flush()
		}
		if !sameIDs(ids, wake) {
			wake = ids
			continue // wait on the new set
		}
		switch i, _, _ := reflect.Select(cases); i {
		case 0:
			return
		case 2:
			fmt.Fprint(w, ": keepalive\n\n")
			flusher.Flush()
		}
	}
}

func sameIDs(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func (h *handler) deployment(w http.ResponseWriter, r *http.Request) (store.Deployment, bool) {
	d, err := h.store.GetDeployment(r.Context(), r.PathValue("id"))
	if err != nil {
		status, msg := h.classify(r, err)
		http.Error(w, msg, status)
		return d, false
	}
	return d, true
}

func cursor(r *http.Request, name string) int64 {
	v, err := strconv.ParseInt(r.URL.Query().Get(name), 10, 64)
	if err != nil || v < 0 {
		return 0
	}
	return v
}

// logStream streams a deployment's log of kind from a cursor ("after", or
// the Last-Event-ID of a reconnection) as server-sent events, the same
// events as the API's log streams:
//
//	event: line    data: api.LogLine (id: its cursor)
//	event: status  data: {"status": "..."} whenever the status changes
//	event: end     data: {"status": "..."} (build log only) once the
//	               deployment is RUNNING, FAILED or STOPPED and every line
//	               has been sent
//
// The runtime log is followed until the client goes away.
func (h *handler) logStream(kind string) http.HandlerFunc {
	var end func(store.Deployment) any
	if kind == store.LogBuild {
		end = func(d store.Deployment) any { return map[string]string{"status": d.Status} }
	}
	return func(w http.ResponseWriter, r *http.Request) {
		d, ok := h.deployment(w, r)
		if !ok {
			return
		}
		after := cursor(r, "after")
		if v, err := strconv.ParseInt(r.Header.Get("Last-Event-ID"), 10, 64); err == nil {
			after = v
		}
		if err := api.StreamLogs(w, r, h.store, h.dep, d.ID, kind, after, end); err != nil {
			http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		}
	}
}

// buildLogText serves the whole build log as plain text, for reading
// without JavaScript and for downloading.
func (h *handler) buildLogText(w http.ResponseWriter, r *http.Request) {
	d, ok := h.deployment(w, r)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	var after int64
	for {
		lines, err := h.store.ListLogs(r.Context(), store.LogQuery{DeploymentID: d.ID, Kind: store.LogBuild, After: after, Limit: 1000})
		if err != nil {
			return
		}
		for _, l := range lines {
			fmt.Fprintf(w, "%s %s\n", l.Time.UTC().Format("15:04:05.000"), l.Text)
			after = l.ID
		}
		if len(lines) < 1000 {
			return
		}
	}
}

// runtimeLogs serves a page of runtime log lines older than the cursor
// "before" (newest first; 0: from the newest line), as api.LogPage. Next is
// the cursor of the following, older page, 0 when there is none.
func (h *handler) runtimeLogs(w http.ResponseWriter, r *http.Request) {
	d, ok := h.deployment(w, r)
	if !ok {
		return
	}
	limit := 200
	if v, err := strconv.Atoi(r.URL.Query().Get("limit")); err == nil && v > 0 && v <= 1000 {
		limit = v
	}
	lines, err := h.store.ListLogs(r.Context(), store.LogQuery{DeploymentID: d.ID, Kind: store.LogRuntime,
		Before: cursor(r, "before"), Desc: true, Limit: limit})
	if err != nil {
		status, msg := h.classify(r, err)
		http.Error(w, msg, status)
		return
	}
	page := api.LogPage{Lines: api.ToLogLines(lines)}
	if len(lines) == limit {
		page.Next = lines[len(lines)-1].ID
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(page)
}
