package web

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"html/template"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// pageData is what every template gets: the layout's fields and the
// page's own Data.
type pageData struct {
	Title  string
	Crumbs []crumb
	// Live is the scope of /live that tells this page when to refresh its
	// live regions; FP is the fingerprint of that scope as rendered.
	Live, FP string
	User     string
	CSRF     string
	Flash    *flash
	Data     any
}

type crumb struct {
	Name, URL string
}

type errorView struct {
	Status  int
	Message string
}

// pageNames are the templates under templates/, each rendered inside
// layout.html.
var pageNames = []string{"login", "error", "projects", "project", "deployment", "settings", "notifications"}

func parsePages(funcs template.FuncMap) map[string]*template.Template {
	base := template.Must(template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/parts.html", "templates/metrics.html"))
	pages := map[string]*template.Template{}
	for _, name := range pageNames {
		t := template.Must(base.Clone())
		template.Must(t.ParseFS(templateFS, "templates/"+name+".html"))
		pages[name] = t
	}
	return pages
}

// render executes page name into a buffer first, so a template error
// never leaves half a page.
func (h *handler) render(w http.ResponseWriter, r *http.Request, status int, name string, d pageData) {
	if s := sessionFrom(r.Context()); s.SID != "" {
		d.User = s.User()
		d.CSRF = h.csrfToken(s)
	}
	if r.Header.Get("X-Live") == "" && d.Flash == nil {
		d.Flash = takeFlash(w, r)
	}
	var buf bytes.Buffer
	if err := h.pages[name].ExecuteTemplate(&buf, "layout.html", d); err != nil {
		h.log.Error("rendering page", "page", name, "err", err)
		http.Error(w, "internal error rendering the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

func (h *handler) funcs() template.FuncMap {
	return template.FuncMap{
		"asset":       h.assets.url,
		"age":         age,
		"iso":         func(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) },
		"clock":       func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
		"dur":         humanDuration,
		"statusClass": func(s string) string { return "st-" + strings.ToLower(s) },
		"statusLabel": statusLabel,
		"healthClass": healthClass,
		"firstLine":   firstLine,
		"short":       shortSHA,
		"host":        breakableHost,
		"shortDigest": func(d string) string {
			algo, hex, ok := strings.Cut(d, ":")
			if !ok || len(hex) <= 12 {
				return d
			}
			return algo + ":" + hex[:12]
		},
		"dict": func(kv ...any) map[string]any {
			m := map[string]any{}
			for i := 0; i+1 < len(kv); i += 2 {
				m[kv[i].(string)] = kv[i+1]
			}
			return m
		},
	}
}

// age says how long ago t was, coarsely.
func age(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := time.Since(t)
	switch {
	case d < 45*time.Second:
		return "just now"
	case d < 90*time.Minute:
		return plural(int((d+30*time.Second)/time.Minute), "minute") + " ago"
	case d < 36*time.Hour:
		return plural(int((d+30*time.Minute)/time.Hour), "hour") + " ago"
	case d < 60*24*time.Hour:
		return plural(int((d+12*time.Hour)/(24*time.Hour)), "day") + " ago"
	}
	return t.UTC().Format("2 Jan 2006")
}

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}

// humanDuration prints a duration the way people read timings: "350 ms",
// "4.2 s", "3 min 12 s", "2 h 5 min".
func humanDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "–"
	case d < time.Second:
		return fmt.Sprintf("%d ms", d.Milliseconds())
	case d < 10*time.Second:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d < time.Minute:
		return fmt.Sprintf("%d s", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%d min %d s", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%d h %d min", int(d.Hours()), int(d.Minutes())%60)
}

func statusLabel(s string) string {
	if s == "" {
		return "no deployments"
	}
	return strings.ToLower(s)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if utf8.RuneCountInString(s) > 100 {
		r := []rune(s)
		s = string(r[:99]) + "…"
	}
	return s
}

func shortSHA(s string) string {
	if len(s) > 7 {
		return s[:7]
	}
	return s
}

// breakableHost lets a long hostname wrap after its dots.
func breakableHost(h string) template.HTML {
	parts := strings.Split(h, ".")
	for i, p := range parts {
		parts[i] = template.HTMLEscapeString(p)
	}
	return template.HTML(strings.Join(parts, ".<wbr>"))
}

func capitalize(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	if n == 0 {
		return s
	}
	return string(unicode.ToUpper(r)) + s[n:]
}

// assets serves the embedded static files. URLs carry a hash of the
// content, so they can be cached for good.
type assets struct {
	fsys   fs.FS
	hashes map[string]string
}

func newAssets(fsys fs.FS) *assets {
	a := &assets{fsys: fsys, hashes: map[string]string{}}
	fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		a.hashes[p] = hex.EncodeToString(sum[:])[:12]
		return nil
	})
	return a
}

// url is the URL of the static file name.
func (a *assets) url(name string) string {
	return "/static/" + name + "?v=" + a.hashes[name]
}

func (a *assets) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/static/")
	hash, ok := a.hashes[name]
	if !ok {
		http.NotFound(w, r)
		return
	}
	b, err := fs.ReadFile(a.fsys, name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	if ct := mime.TypeByExtension(path.Ext(name)); ct != "" {
		w.Header().Set("Content-Type", ct)
	}
	if r.URL.Query().Get("v") == hash {
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		w.Header().Set("Cache-Control", "no-cache")
	}
	w.Header().Set("ETag", `"`+hash+`"`)
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(b))
}
