package gitserver

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync/atomic"
	"time"
)

const (
	receivePack = "git-receive-pack"
	uploadPack  = "git-upload-pack"
)

// ServeHTTP implements git's smart HTTP protocol (gitprotocol-http(5)) for
// the paths listed in the package documentation.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.cfg.Authorize(r) {
		w.Header().Set("WWW-Authenticate", `Basic realm="slipway"`)
		http.Error(w, "authentication required: use an API token as the password", http.StatusUnauthorized)
		return
	}
	project, rest, ok := splitPath(r.URL.Path)
	if !ok || validProject(project) != nil {
		http.NotFound(w, r)
		return
	}
	var service string
	switch {
	case rest == "info/refs":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			methodNotAllowed(w, "GET, HEAD")
			return
		}
		service = r.URL.Query().Get("service")
		if service != receivePack && service != uploadPack {
			// Only a dumb-protocol client asks without a service.
			http.Error(w, "only git's smart HTTP protocol is served", http.StatusForbidden)
			return
		}
	case rest == receivePack || rest == uploadPack:
		if r.Method != http.MethodPost {
			methodNotAllowed(w, "POST")
			return
		}
		service = rest
		if ct := r.Header.Get("Content-Type"); ct != "application/x-"+service+"-request" {
			http.Error(w, "unexpected content type "+ct, http.StatusUnsupportedMediaType)
			return
		}
	default:
		http.NotFound(w, r)
		return
	}
	if s.cfg.Exists != nil {
		ok, err := s.cfg.Exists(r.Context(), project)
		if err != nil {
			s.log.Error("git: looking up project", "project", project, "err", err)
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		if !ok {
			http.Error(w, fmt.Sprintf("project %q not found", project), http.StatusNotFound)
			return
		}
	}
	dir, err := s.Ensure(r.Context(), project)
	if err != nil {
		s.log.Error("git: creating repository", "project", project, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	// A push may stream a whole build: no server-wide read or write timeout
	// may cut it short. (Not every ResponseWriter supports deadlines.)
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
	// git may answer (progress on side band 2) before it has read the whole
	// pack; without full duplex an HTTP/1 server would discard the rest of
	// the body once the response starts.
	_ = rc.EnableFullDuplex()

	if rest == "info/refs" {
		s.advertise(w, r, dir, service)
		return
	}
	// MaxPushBytes bounds the body as sent and, for a compressed one, as
	// decompressed: a small gzip stream may inflate to any size.
	body := io.Reader(http.MaxBytesReader(w, r.Body, s.cfg.MaxPushBytes))
	switch r.Header.Get("Content-Encoding") {
	case "", "identity":
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(body)
		if err != nil {
			http.Error(w, "bad gzip request body", http.StatusBadRequest)
			return
		}
		defer zr.Close()
		body = &maxBytesReader{r: zr, limit: s.cfg.MaxPushBytes}
	default:
		http.Error(w, "unsupported content encoding", http.StatusUnsupportedMediaType)
		return
	}
	if service == uploadPack {
		s.upload(w, r, dir, body)
		return
	}
	s.receive(w, r, project, dir, body)
}

// splitPath splits "/<project>.git/<rest>" (".git" optional).
func splitPath(p string) (project, rest string, ok bool) {
	p = strings.TrimPrefix(p, "/")
	project, rest, ok = strings.Cut(p, "/")
	return strings.TrimSuffix(project, ".git"), rest, ok
}

func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
}

var gitProtocolHeader = regexp.MustCompile(`^[A-Za-z0-9=:._-]{1,256}$`)

// protocolEnv passes the client's Git-Protocol header to git, as
// git-http-backend does (it selects protocol v2 for fetches).
func protocolEnv(r *http.Request) []string {
	if v := r.Header.Get("Git-Protocol"); gitProtocolHeader.MatchString(v) {
		return []string{"GIT_PROTOCOL=" + v}
	}
	return nil
}

func noCache(h http.Header) {
	h.Set("Cache-Control", "no-cache, max-age=0, must-revalidate")
	h.Set("Pragma", "no-cache")
	h.Set("Expires", "Fri, 01 Jan 1980 00:00:00 GMT")
}

// advertise answers GET info/refs?service=…: the refs and capabilities,
// preceded by the "# service=" packet unless the client speaks protocol v2.
func (s *Server) advertise(w http.ResponseWriter, r *http.Request, dir, service string) {
	cmd := s.command(r.Context(), "", strings.TrimPrefix(service, "git-"), "--stateless-rpc", "--advertise-refs", dir)
	penv := protocolEnv(r)
	cmd.Env = append(cmd.Env, penv...)
	var stderr bytes.Buffer
	cmd.Stderr = &limitedBuffer{buf: &stderr, max: 4 << 10}
	out, err := cmd.Output()
	if err != nil {
		s.log.Error("git: advertising refs", "dir", dir, "service", service, "err", err, "stderr", strings.TrimSpace(stderr.String()))
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	noCache(w.Header())
	w.Header().Set("Content-Type", "application/x-"+service+"-advertisement")
	if len(penv) == 0 || !strings.Contains(penv[0], "version=2") {
		io.WriteString(w, pktLine("# service="+service+"\n"))
		io.WriteString(w, flushPkt)
	}
	w.Write(out)
}

// upload serves a fetch or clone: git upload-pack's output is streamed as
// it is produced.
func (s *Server) upload(w http.ResponseWriter, r *http.Request, dir string, body io.Reader) {
	cmd := s.command(r.Context(), "", "upload-pack", "--stateless-rpc", dir)
	cmd.Env = append(cmd.Env, protocolEnv(r)...)
	cmd.Stdin = body
	out := newFlushWriter(w, uploadPack)
	cmd.Stdout = out
	var stderr bytes.Buffer
	cmd.Stderr = &limitedBuffer{buf: &stderr, max: 4 << 10}
	if err := cmd.Run(); err != nil {
		s.log.Warn("git: upload-pack failed", "dir", dir, "err", err, "stderr", strings.TrimSpace(stderr.String()))
		if !out.started() {
			http.Error(w, "internal error", http.StatusInternalServerError)
		}
		return
	}
	out.start()
}

// receive serves a push: it runs receive-pack, relays its answer but for
// the final flush, tells the Pusher about the updated refs with their
// output on side band 2, and ends the response with the flush.
func (s *Server) receive(w http.ResponseWriter, r *http.Request, project, dir string, body io.Reader) {
	req, err := readCommands(body, maxCommandBytes)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			http.Error(w, "push too large", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "bad push request: "+err.Error(), http.StatusBadRequest)
		return
	}
	// receive-pack is not bound to the client's connection: once it has
	// the whole pack it finishes updating the refs even if the client
	// hangs up, so that every ref update is reported to the Pusher. A
	// client that goes away earlier ends the body, and receive-pack fails.
	ctx := context.WithoutCancel(r.Context())
	cmd := s.command(ctx, "", "receive-pack", "--stateless-rpc", dir)
	cmd.Stdin = io.MultiReader(bytes.NewReader(req.raw), body)
	var stderr bytes.Buffer
	cmd.Stderr = &limitedBuffer{buf: &stderr, max: 4 << 10}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		s.log.Error("git: starting receive-pack", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	if err := cmd.Start(); err != nil {
		s.log.Error("git: starting receive-pack", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	out := newFlushWriter(w, receivePack)
	// A body cut short by the limit leaves receive-pack reporting an
	// unpack error; before it has said anything, the client gets a clear
	// 413 instead.
	tooLarge := func() bool { m, ok := body.(*maxBytesReader); return ok && m.exceeded.Load() }
	held, tail, relayErr := relay(gateWriter{out, tooLarge}, stdout, req.band != 0)
	io.Copy(io.Discard, stdout) // after a failed write to the client
	waitErr := cmd.Wait()
	if tooLarge() {
		s.log.Warn("git: push too large", "project", project, "limit", s.cfg.MaxPushBytes)
		if !out.started() {
			w.Header().Set("Connection", "close") // the rest of the body stays unread
			http.Error(w, fmt.Sprintf("push too large: its body inflates to more than %d bytes", s.cfg.MaxPushBytes), http.StatusRequestEntityTooLarge)
			return
		}
	}
	if waitErr != nil {
		s.log.Warn("git: receive-pack failed", "project", project, "err", waitErr, "stderr", strings.TrimSpace(stderr.String()))
		if !out.started() {
			http.Error(w, "receive-pack failed", http.StatusInternalServerError)
			return
		}
	}
	out.start()

	events := s.events(ctx, project, dir, req.commands)
	if len(events) > 0 {
		// Now that the replaced commits have been looked at, they may go.
		if err := s.command(ctx, dir, "gc", "--auto", "--quiet").Run(); err != nil {
			s.log.Warn("git: gc", "project", project, "err", err)
		}
	}
	var bw *bandWriter
	var progress io.Writer = io.Discard
	if held && relayErr == nil {
		bw = newBandWriter(out, req.band)
		progress = bw
		stop := bw.keepAlive(s.cfg.KeepAlive)
		defer stop()
	}
	for _, ev := range events {
		if s.cfg.Pusher == nil {
			break
		}
		if err := s.cfg.Pusher.Push(r.Context(), ev, progress); err != nil {
			s.log.Warn("git: push handler", "project", project, "ref", ev.Ref, "err", err)
			fmt.Fprintf(progress, "error: %v\n", err)
		}
	}
	if bw != nil {
		bw.close()
	}
	if held {
		out.Write([]byte(flushPkt))
		out.Write(tail)
	}
}

// flushWriter writes to the client and flushes after every write, setting
// the response headers before the first byte.
type flushWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	service string
	begun   bool
}

func newFlushWriter(w http.ResponseWriter, service string) *flushWriter {
	return &flushWriter{w: w, rc: http.NewResponseController(w), service: service}
}

func (f *flushWriter) start() {
	if f.begun {
		return
	}
	f.begun = true
	noCache(f.w.Header())
	f.w.Header().Set("Content-Type", "application/x-"+f.service+"-result")
	f.w.WriteHeader(http.StatusOK)
}

func (f *flushWriter) started() bool { return f.begun }

func (f *flushWriter) Write(p []byte) (int, error) {
	f.start()
	n, err := f.w.Write(p)
	if err != nil {
		return n, err
	}
	if err := f.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return n, err
	}
	return n, nil
}

// maxBytesReader reads at most limit bytes from r; reading more fails
// with an *http.MaxBytesError, as http.MaxBytesReader does for a request
// body.
type maxBytesReader struct {
	r        io.Reader
	limit    int64
	read     int64
	exceeded atomic.Bool // read by the handler while exec copies the body
}

func (m *maxBytesReader) Read(p []byte) (int, error) {
	if m.exceeded.Load() {
		return 0, &http.MaxBytesError{Limit: m.limit}
	}
	left := m.limit - m.read
	if int64(len(p)) > left+1 {
		p = p[:left+1] // one byte more tells the end from an excess
	}
	n, err := m.r.Read(p)
	if int64(n) > left {
		m.read = m.limit
		m.exceeded.Store(true)
		return int(left), &http.MaxBytesError{Limit: m.limit}
	}
	m.read += int64(n)
	return n, err
}

// gateWriter writes to w unless stop reports true by the first write.
type gateWriter struct {
	w    *flushWriter
	stop func() bool
}

var errGated = errors.New("response withheld")

func (g gateWriter) Write(p []byte) (int, error) {
	if !g.w.started() && g.stop() {
		return 0, errGated
	}
	return g.w.Write(p)
}

// limitedBuffer keeps the first max bytes written to it (git's stderr, for
// logs) and discards the rest.
type limitedBuffer struct {
	buf *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.buf.Len(); room > 0 {
		l.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}
