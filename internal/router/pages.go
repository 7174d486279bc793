package router

import (
	"bytes"
	"errors"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// page is a response the router writes itself instead of proxying.
// Everything in it is shown to visitors: never put internal detail in it.
type page struct {
	Status  int
	Title   string // short, e.g. "Deployment stopped"
	Message string // one or two sentences
	Detail  string // optional, e.g. the route's Reason
	// RetryAfter, if positive, is sent as Retry-After (seconds); HTML pages
	// then also reload themselves after that long.
	RetryAfter int
}

var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
{{- if gt .RetryAfter 0}}
<meta http-equiv="refresh" content="{{.RetryAfter}}">
{{- end}}
<title>{{.Status}} · {{.Title}}</title>
<style>
body{margin:0;min-height:100vh;display:flex;align-items:center;justify-content:center;font:16px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1f2328;background:#f6f8fa}
main{max-width:34rem;padding:2rem}
.code{font-size:.875rem;color:#656d76;letter-spacing:.05em}
h1{font-size:1.5rem;margin:.25rem 0 .75rem}
p{margin:.5rem 0}
.detail{padding:.75rem 1rem;background:#fff;border:1px solid #d0d7de;border-radius:6px}
footer{margin-top:1.5rem;font-size:.8rem;color:#656d76}
@media (prefers-color-scheme:dark){body{color:#e6edf3;background:#0d1117}.detail{background:#161b22;border-color:#30363d}.code,footer{color:#8d96a0}}
</style>
</head>
<body>
<main>
<div class="code">{{.Status}} {{.StatusText}}</div>
<h1>{{.Title}}</h1>
<p>{{.Message}}</p>
{{- if .Detail}}
<p class="detail">{{.Detail}}</p>
{{- end}}
<footer>Slipway</footer>
</main>
</body>
</html>
`))

// bufPool holds buffers for rendering pages.
var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// write renders p as HTML when the client accepts it, else as plain text.
func (p page) write(w http.ResponseWriter, r *http.Request) {
	buf := bufPool.Get().(*bytes.Buffer)
	defer bufPool.Put(buf)
	buf.Reset()

	h := w.Header()
	if acceptsHTML(r) {
		if err := pageTemplate.Execute(buf, p); err != nil {
			// The template is fixed and its data are strings: this cannot
			// happen. Fall back to text rather than a half-written page.
			buf.Reset()
			p.text(buf)
			h.Set("Content-Type", "text/plain; charset=utf-8")
		} else {
			h.Set("Content-Type", "text/html; charset=utf-8")
		}
	} else {
		p.text(buf)
		h.Set("Content-Type", "text/plain; charset=utf-8")
	}
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if p.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(p.RetryAfter))
	}
	w.WriteHeader(p.Status)
	_, _ = w.Write(buf.Bytes()) // the client may be gone; nothing to do then
}

// StatusText is the status's reason phrase, for the template.
func (p page) StatusText() string { return http.StatusText(p.Status) }

func (p page) text(buf *bytes.Buffer) {
	buf.WriteString(strconv.Itoa(p.Status))
	buf.WriteByte(' ')
	buf.WriteString(http.StatusText(p.Status))
	buf.WriteString("\n\n")
	buf.WriteString(p.Title)
	buf.WriteString("\n")
	buf.WriteString(p.Message)
	buf.WriteString("\n")
	if p.Detail != "" {
		buf.WriteString("\n")
		buf.WriteString(p.Detail)
		buf.WriteString("\n")
	}
}

func acceptsHTML(r *http.Request) bool {
	for _, v := range r.Header["Accept"] {
		if strings.Contains(v, "text/html") {
			return true
		}
	}
	return false
}

// describe is how pages refer to a deployment.
func describe(rt Route) string {
	d := rt.Deployment
	if d == "" {
		d = "this deployment"
	} else {
		d = "Deployment " + d
	}
	if rt.Project != "" {
		d += " of project " + rt.Project
	}
	return d
}

func badRequestPage() page {
	return page{
		Status:  http.StatusBadRequest,
		Title:   "Bad request",
		Message: "The request's Host header is missing or malformed.",
	}
}

func methodNotAllowedPage() page {
	return page{
		Status:  http.StatusMethodNotAllowed,
		Title:   "Method not allowed",
		Message: "CONNECT is not supported here.",
	}
}

func unknownHostPage(host string) page {
	return page{
		Status:  http.StatusNotFound,
		Title:   "No app here",
		Message: "Nothing is deployed at " + host + ".",
	}
}

func statePage(rt Route) page {
	switch rt.State {
	case Deploying:
		return page{
			Status:     http.StatusServiceUnavailable,
			Title:      "Deployment starting",
			Message:    describe(rt) + " is starting. This page reloads when it is ready.",
			RetryAfter: 5,
		}
	case Stopped:
		return page{
			Status:  http.StatusGone,
			Title:   "Deployment stopped",
			Message: describe(rt) + " is stopped and no longer serves requests.",
			Detail:  rt.Reason,
		}
	case Failed:
		return page{
			Status:  http.StatusServiceUnavailable,
			Title:   "Deployment failed",
			Message: describe(rt) + " failed and never went live.",
			Detail:  rt.Reason,
		}
	}
	// Serving without a Backend, or a State this version does not know.
	return page{
		Status:     http.StatusServiceUnavailable,
		Title:      "Deployment unavailable",
		Message:    describe(rt) + " is not available right now.",
		RetryAfter: 5,
	}
}

// appErrorPage is the page for a request whose app could not be reached
// (err from dialling its Backend) or did not answer properly, on every
// proxy path: 503 when the dial timed out, else 502.
func appErrorPage(rt Route, err error) page {
	if de := (*dialError)(nil); errors.As(err, &de) && de.timedOut {
		return timeoutPage(rt)
	}
	return badGatewayPage(rt)
}

func badGatewayPage(rt Route) page {
	return page{
		Status:  http.StatusBadGateway,
		Title:   "App not responding",
		Message: describe(rt) + " did not answer this request. If this is your app, check its logs.",
	}
}

func timeoutPage(rt Route) page {
	return page{
		Status:     http.StatusServiceUnavailable,
		Title:      "App not reachable in time",
		Message:    describe(rt) + " could not be reached in time. Try again shortly.",
		RetryAfter: 5,
	}
}
