package web

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Sessions. The cookie holds "subject|sid|expiry" and an HMAC-SHA256 of it
// under the session key; nothing is stored on the server. sid is random per
// sign-in and keys the CSRF token, HMAC("csrf|"+sid), which every form and
// every fetch of the dashboard's JavaScript sends back.

const (
	sessionCookie = "slipway_session"
	flashCookie   = "slipway_flash"
)

type session struct {
	Subject string // "admin" or "token:<name>"
	SID     string
	Expires time.Time
}

// User is the name shown in the header.
func (s session) User() string {
	if name, ok := strings.CutPrefix(s.Subject, "token:"); ok {
		return name
	}
	return s.Subject
}

type sessionKey struct{}

func sessionFrom(ctx context.Context) session {
	s, _ := ctx.Value(sessionKey{}).(session)
	return s
}

var b64 = base64.RawURLEncoding

func (h *handler) sign(purpose, msg string) []byte {
	m := hmac.New(sha256.New, h.cfg.SessionKey)
	m.Write([]byte(purpose + "|" + msg))
	return m.Sum(nil)
}

func (h *handler) encodeSession(s session) string {
	payload := b64.EncodeToString([]byte(s.Subject + "|" + s.SID + "|" + strconv.FormatInt(s.Expires.Unix(), 10)))
	return payload + "." + b64.EncodeToString(h.sign("session", payload))
}

func (h *handler) decodeSession(v string) (session, bool) {
	payload, sig, ok := strings.Cut(v, ".")
	if !ok {
		return session{}, false
	}
	got, err := b64.DecodeString(sig)
	if err != nil || !hmac.Equal(got, h.sign("session", payload)) {
		return session{}, false
	}
	raw, err := b64.DecodeString(payload)
	if err != nil {
		return session{}, false
	}
	parts := strings.Split(string(raw), "|")
	if len(parts) != 3 {
		return session{}, false
	}
	exp, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil || time.Now().Unix() >= exp {
		return session{}, false
	}
	return session{Subject: parts[0], SID: parts[1], Expires: time.Unix(exp, 0)}, true
}

func (h *handler) csrfToken(s session) string {
	return b64.EncodeToString(h.sign("csrf", s.SID))
}

// signedIn lets requests with a valid session through; others are sent to
// the sign-in page (pages) or refused (everything else).
func (h *handler) signedIn(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, err := r.Cookie(sessionCookie); err == nil {
			if s, ok := h.decodeSession(c.Value); ok {
				next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), sessionKey{}, s)))
				return
			}
		}
		w.Header().Set("Cache-Control", "no-store")
		if strings.Contains(r.Header.Get("Accept"), "text/html") {
			// A browser: to the sign-in page, and back here after (a form
			// cannot be replayed, so after a POST back to the start).
			next := "/"
			if r.Method == http.MethodGet {
				next = r.URL.RequestURI()
			}
			http.Redirect(w, r, "/login?next="+url.QueryEscape(next), http.StatusSeeOther)
			return
		}
		http.Error(w, "sign in first", http.StatusUnauthorized)
	})
}

// csrf refuses a POST that is cross-origin or lacks the session's CSRF
// token (form field _csrf or header X-CSRF-Token).
func (h *handler) csrf(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h.cop.Check(r); err != nil {
			h.forbidden(w, r, "This request came from another site and was refused.")
			return
		}
		tok := r.Header.Get("X-CSRF-Token")
		if tok == "" {
			tok = r.PostFormValue("_csrf")
		}
		want := h.csrfToken(sessionFrom(r.Context()))
		if subtle.ConstantTimeCompare([]byte(tok), []byte(want)) != 1 {
			h.forbidden(w, r, "The form was stale or incomplete (missing its security token). Reload the page and try again.")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (h *handler) forbidden(w http.ResponseWriter, r *http.Request, msg string) {
	h.render(w, r, http.StatusForbidden, "error", pageData{Title: "Forbidden", Data: errorView{Status: http.StatusForbidden, Message: msg}})
}

type loginView struct {
	Next          string
	Error         string
	AdminPassword bool
}

func (h *handler) loginPage(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(sessionCookie); err == nil {
		if _, ok := h.decodeSession(c.Value); ok {
			http.Redirect(w, r, localPath(r.URL.Query().Get("next"), "/"), http.StatusSeeOther)
			return
		}
	}
	h.render(w, r, http.StatusOK, "login", pageData{Title: "Sign in",
		Data: loginView{Next: localPath(r.URL.Query().Get("next"), "/"), AdminPassword: h.cfg.AdminPassword != ""}})
}

func (h *handler) login(w http.ResponseWriter, r *http.Request) {
	if err := h.cop.Check(r); err != nil {
		h.forbidden(w, r, "This sign-in came from another site and was refused.")
		return
	}
	next := localPath(r.PostFormValue("next"), "/")
	view := loginView{Next: next, AdminPassword: h.cfg.AdminPassword != ""}
	ip := clientIP(r)
	if !h.logins.allow(ip) {
		view.Error = "Too many failed sign-ins from your address. Wait a few minutes and try again."
		h.render(w, r, http.StatusTooManyRequests, "login", pageData{Title: "Sign in", Data: view})
		return
	}
	secret := strings.TrimSpace(r.PostFormValue("secret"))
	subject := ""
	if pw := h.cfg.AdminPassword; pw != "" && subtle.ConstantTimeCompare([]byte(secret), []byte(pw)) == 1 {
		subject = "admin"
	} else if secret != "" {
		if t, err := h.store.CheckToken(r.Context(), secret); err == nil {
			subject = "token:" + t.Name
		}
	}
	if subject == "" {
		h.logins.fail(ip)
		view.Error = "That token or password is not valid."
		h.render(w, r, http.StatusUnauthorized, "login", pageData{Title: "Sign in", Data: view})
		return
	}
	sid := make([]byte, 16)
	rand.Read(sid)
	s := session{Subject: subject, SID: b64.EncodeToString(sid), Expires: time.Now().Add(h.cfg.SessionTTL)}
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: h.encodeSession(s), Path: "/",
		MaxAge: int(h.cfg.SessionTTL / time.Second), HttpOnly: true, SameSite: http.SameSiteLaxMode,
		Secure: r.TLS != nil,
	})
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (h *handler) logout(w http.ResponseWriter, r *http.Request) error {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
	return nil
}

// localPath returns p if it is a path on this site, else fallback.
func localPath(p, fallback string) string {
	if p == "" || !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || strings.ContainsAny(p, "\\\r\n") {
		return fallback
	}
	return p
}

// backTo is where a form action returns: its "back" field, or fallback.
func backTo(r *http.Request, fallback string) string {
	return localPath(r.PostFormValue("back"), fallback)
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// loginLimiter refuses sign-ins from an address after too many failures
// in a window.
type loginLimiter struct {
	mu       sync.Mutex
	failures map[string]*failures
}

type failures struct {
	n     int
	since time.Time
}

const (
	maxLoginFailures = 10
	loginWindow      = 5 * time.Minute
)

func newLoginLimiter() *loginLimiter { return &loginLimiter{failures: map[string]*failures{}} }

func (l *loginLimiter) allow(ip string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.failures[ip]
	if f == nil {
		return true
	}
	if time.Since(f.since) > loginWindow {
		delete(l.failures, ip)
		return true
	}
	return f.n < maxLoginFailures
}

func (l *loginLimiter) fail(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	for k, f := range l.failures { // bounded by the number of recent offenders
		if now.Sub(f.since) > loginWindow {
			delete(l.failures, k)
		}
	}
	f := l.failures[ip]
	if f == nil {
		f = &failures{since: now}
		l.failures[ip] = f
	}
	f.n++
}

// Flash messages survive one redirect in a short-lived cookie.

type flash struct {
	Kind    string // "ok" or "error"
	Message string
}

func setFlash(w http.ResponseWriter, kind, msg string) {
	http.SetCookie(w, &http.Cookie{Name: flashCookie, Value: b64.EncodeToString([]byte(kind + "|" + msg)),
		Path: "/", MaxAge: 60, HttpOnly: true, SameSite: http.SameSiteLaxMode})
}

func takeFlash(w http.ResponseWriter, r *http.Request) *flash {
	c, err := r.Cookie(flashCookie)
	if err != nil {
		return nil
	}
	http.SetCookie(w, &http.Cookie{Name: flashCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	raw, err := b64.DecodeString(c.Value)
	if err != nil {
		return nil
	}
	kind, msg, ok := strings.Cut(string(raw), "|")
	if !ok || (kind != "ok" && kind != "error") {
		return nil
	}
	return &flash{Kind: kind, Message: msg}
}
