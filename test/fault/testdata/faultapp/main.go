// Command faultapp is the fault suite's test app. It serves HTTP/1.1 on
// $PORT with keep-alive and answers GET / with a line naming its
// deployment, its instance (the sandbox's hostname) and the time it
// started, so a test can tell a restarted process from the same one.
//
// Other paths try what an app must not be able to do and report, one
// "key: value" per line, what happened: /read, /find, /mknod, /mount,
// /dial, /procs, /mem, /fork, /disk. /log writes lines to stdout;
// /flood?bytes=N&times=K writes N bytes of newlines to stdout K times, a
// second apart, in the background (8 MiB once by default).
// /fetch?url=http://… fetches a URL (HTTP/1.0 GET, 5 s at most; &host=
// sends another Host) and /resolve?name=… resolves a name through the
// system resolver (/etc/resolv.conf; &server=IP:PORT asks that server
// instead), to show what the app's network reaches.
//
// It uses no net/http, so that a cold build compiles little of the
// standard library.
package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

var (
	started    = time.Now()
	deployment = os.Getenv("SLIPWAY_DEPLOYMENT_ID")
	hostname   string
	secret     string
)

func main() {
	if len(os.Args) > 1 {
		probe(os.Args[1:])
		return
	}
	hostname, _ = os.Hostname()
	secret = makeSecret()
	// An empty image has no /tmp; the root file system is writable.
	os.MkdirAll("/tmp", 0o1777)
	if err := os.WriteFile("/tmp/secret", []byte(secret), 0o600); err != nil {
		fmt.Fprintln(os.Stderr, "faultapp: writing /tmp/secret:", err)
	}
	port := os.Getenv("PORT")
	if port == "" {
		port = "3000"
	}
	ln, err := net.Listen("tcp", ":"+port)
	if err != nil {
		fmt.Fprintln(os.Stderr, "faultapp:", err)
		os.Exit(1)
	}
	fmt.Printf("faultapp: listening on :%s (deployment %s, instance %s)\n", port, deployment, hostname)
	for {
		c, err := ln.Accept()
		if err != nil {
			continue
		}
		go serve(c)
	}
}

// probe handles each argument, a request target such as
// "/dial?addr=1.2.3.4:80", as a GET, without serving: for a build step
// (RUN /faultapp ...) to show what the build's network reaches. Each line
// of the i-th report is printed as "probe[i] key: value".
func probe(targets []string) {
	for i, target := range targets {
		body := "error: bad request target\n"
		if u, err := url.ParseRequestURI(target); err == nil {
			_, body = handle("GET", u.Path, u.Query())
		}
		for _, line := range strings.Split(strings.TrimSuffix(body, "\n"), "\n") {
			fmt.Printf("probe[%d] %s\n", i, line)
		}
	}
}

func makeSecret() string {
	b := make([]byte, 16)
	if f, err := os.Open("/dev/urandom"); err == nil {
		io.ReadFull(f, b)
		f.Close()
	}
	return fmt.Sprintf("faultapp-secret-%x", b)
}

// serve handles the requests of one connection until it closes.
func serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		parts := strings.Fields(line)
		if len(parts) != 3 {
			return
		}
		method, target, proto := parts[0], parts[1], parts[2]
		keepAlive := proto == "HTTP/1.1"
		var bodyLen int64
		for {
			h, err := r.ReadString('\n')
			if err != nil {
				return
			}
			h = strings.TrimRight(h, "\r\n")
			if h == "" {
				break
			}
			k, v, _ := strings.Cut(h, ":")
			v = strings.TrimSpace(v)
			switch strings.ToLower(k) {
			case "connection":
				if strings.EqualFold(v, "close") {
					keepAlive = false
				} else if strings.EqualFold(v, "keep-alive") {
					keepAlive = true
				}
			case "content-length":
				bodyLen, _ = strconv.ParseInt(v, 10, 64)
			}
		}
		if bodyLen > 0 {
			io.CopyN(io.Discard, r, bodyLen)
		}
		u, err := url.ParseRequestURI(target)
		status, body := 400, "bad request target\n"
		if err == nil {
			status, body = handle(method, u.Path, u.Query())
		}
		fmt.Printf("%s %s %d\n", method, target, status)
		var resp bytes.Buffer
		fmt.Fprintf(&resp, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n", status, statusText(status), len(body))
		if !keepAlive {
			resp.WriteString("Connection: close\r\n")
		}
		resp.WriteString("\r\n")
		if method != "HEAD" {
			resp.WriteString(body)
		}
		if _, err := c.Write(resp.Bytes()); err != nil || !keepAlive {
			return
		}
	}
}

func statusText(code int) string {
	switch code {
	case 200:
		return "OK"
	case 400:
		return "Bad Request"
	case 404:
		return "Not Found"
	}
	return "Status"
}

// report collects "key: value" lines.
type report struct{ b strings.Builder }

func (r *report) set(k string, v any) {
	s := strings.NewReplacer("\n", " ", "\r", " ").Replace(fmt.Sprint(v))
	fmt.Fprintf(&r.b, "%s: %s\n", k, s)
}

func (r *report) err(k string, err error) {
	if err == nil {
		r.set(k, "ok")
	} else {
		r.set(k, "error "+err.Error())
	}
}

func handle(method, path string, q url.Values) (int, string) {
	var r report
	switch path {
	case "/":
		return 200, fmt.Sprintf("faultapp deployment=%s instance=%s started=%d\n", deployment, hostname, started.UnixNano())
	case "/secret":
		return 200, secret + "\n"
	case "/log":
		n, _ := strconv.Atoi(q.Get("n"))
		tag := q.Get("tag")
		for i := 1; i <= n && i <= 100000; i++ {
			fmt.Printf("log %s %d\n", tag, i)
		}
		r.set("logged", n)
	case "/flood":
		n, times := atoi(q.Get("bytes"), 8<<20), atoi(q.Get("times"), 1)
		go flood(n, times)
		r.set("flooding", n*times)
	case "/read":
		b, err := os.ReadFile(q.Get("path"))
		r.err("read", err)
		r.set("bytes", len(b))
		if len(b) > 64 {
			b = b[:64]
		}
		r.set("head", string(b))
	case "/find":
		find(&r, q.Get("needle"), atoi(q.Get("max"), 20000))
	case "/mknod":
		mknod(&r, atoi(q.Get("major"), 8), atoi(q.Get("minor"), 0))
	case "/mount":
		os.MkdirAll("/tmp/m1", 0o755)
		r.err("mount-tmpfs", syscall.Mount("tmpfs", "/tmp/m1", "tmpfs", 0, ""))
		r.err("mount-proc", syscall.Mount("proc", "/tmp/m1", "proc", 0, ""))
		r.err("unshare-user", syscall.Unshare(syscall.CLONE_NEWUSER))
	case "/dial":
		dial(&r, q.Get("addr"))
	case "/fetch":
		fetch(&r, q.Get("url"), q.Get("host"))
	case "/resolve":
		resolve(&r, q.Get("name"), q.Get("server"))
	case "/procs":
		procs(&r)
	case "/mem":
		mem(&r, atoi(q.Get("mb"), 1024))
	case "/fork":
		forkBomb(&r, atoi(q.Get("n"), 4096))
	case "/disk":
		disk(&r, q.Get("path"), atoi(q.Get("mb"), 1024))
	default:
		return 404, "not found\n"
	}
	return 200, r.b.String()
}

func atoi(s string, def int) int {
	if n, err := strconv.Atoi(s); err == nil {
		return n
	}
	return def
}

// find walks the visible file system (not /proc, /sys, /dev) looking for
// files that hold needle.
func find(r *report, needle string, max int) {
	if needle == "" {
		r.set("error", "no needle")
		return
	}
	files := 0
	var found []string
	filepath.WalkDir("/", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() && (p == "/proc" || p == "/sys" || p == "/dev") {
			return filepath.SkipDir
		}
		if !d.Type().IsRegular() || files >= max {
			return nil
		}
		files++
		if info, err := d.Info(); err != nil || info.Size() > 4<<20 {
			return nil
		}
		b, err := os.ReadFile(p)
		if err == nil && bytes.Contains(b, []byte(needle)) {
			found = append(found, p)
		}
		return nil
	})
	r.set("files", files)
	r.set("found", strings.Join(found, " "))
}

func mknod(r *report, major, minor int) {
	dev := (major << 8) | minor
	path := "/tmp/blockdev"
	os.Remove(path)
	err := syscall.Mknod(path, syscall.S_IFBLK|0o600, dev)
	r.err("mknod", err)
	f, err := os.Open(path)
	r.err("open", err)
	if err == nil {
		buf := make([]byte, 512)
		n, err := f.Read(buf)
		r.err("read", err)
		r.set("bytes", n)
		f.Close()
	}
	os.Remove(path)
}

func dial(r *report, addr string) {
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	r.err("connect", err)
	if err != nil {
		return
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	fmt.Fprintf(c, "GET /api/v1/projects HTTP/1.0\r\nHost: %s\r\n\r\n", addr)
	line, err := bufio.NewReader(c).ReadString('\n')
	r.err("response", err)
	r.set("status", strings.TrimSpace(line))
}

// fetch GETs an http:// URL over HTTP/1.0, within 5 seconds in all, with
// the URL's host in the Host header unless host is set, and reports the
// name's addresses (when it is not an IP address), the connection, the
// status line and the first 64 bytes of the body.
func fetch(r *report, raw, host string) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.Hostname() == "" {
		r.set("error", "want an http:// URL")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	name, port := u.Hostname(), u.Port()
	if port == "" {
		port = "80"
	}
	if host == "" {
		host = u.Host
	}
	if net.ParseIP(name) == nil {
		addrs, err := net.DefaultResolver.LookupHost(ctx, name)
		r.err("lookup", err)
		r.set("addrs", strings.Join(addrs, " "))
		if err != nil {
			return
		}
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(name, port))
	r.err("connect", err)
	if err != nil {
		return
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	path := u.RequestURI()
	fmt.Fprintf(c, "GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: faultapp\r\n\r\n", path, host)
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	r.err("response", err)
	r.set("status", strings.TrimSpace(line))
	if err != nil {
		return
	}
	for {
		h, err := br.ReadString('\n')
		if err != nil {
			r.err("headers", err)
			return
		}
		if strings.TrimRight(h, "\r\n") == "" {
			break
		}
	}
	body := make([]byte, 64)
	n, err := io.ReadFull(br, body)
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		err = nil
	}
	r.err("body", err)
	r.set("head", string(body[:n]))
}

// resolve looks name up, within 5 seconds, through the system resolver
// or, if server is set, by asking the DNS server at that IP:PORT.
func resolve(r *report, name, server string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res := net.DefaultResolver
	if server != "" {
		res = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, server)
		}}
	}
	addrs, err := res.LookupHost(ctx, name)
	r.err("resolve", err)
	r.set("addrs", strings.Join(addrs, " "))
}

// procs lists the processes this app can see.
func procs(r *report) {
	ents, _ := os.ReadDir("/proc")
	var pids, deps []string
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		pids = append(pids, e.Name())
		env, _ := os.ReadFile("/proc/" + e.Name() + "/environ")
		for _, kv := range strings.Split(string(env), "\x00") {
			if v, ok := strings.CutPrefix(kv, "SLIPWAY_DEPLOYMENT_ID="); ok {
				deps = append(deps, v)
			}
		}
	}
	r.set("self", os.Getpid())
	r.set("pids", strings.Join(pids, " "))
	r.set("deployments", strings.Join(deps, " "))
}

var hoard [][]byte

// mem allocates and touches mb MiB; past the memory limit the kernel kills
// the process and no answer comes.
func mem(r *report, mb int) {
	for i := 0; i < mb/16; i++ {
		b := make([]byte, 16<<20)
		for j := 0; j < len(b); j += 4096 {
			b[j] = 1
		}
		hoard = append(hoard, b)
	}
	r.set("allocated_mb", len(hoard)*16)
	hoard = nil
	runtime.GC()
}

// forkBomb forks children that only pause, until n or the first failure,
// reports how far it got, then kills them all.
func forkBomb(r *report, n int) {
	var kids []int
	var ferr error
	runtime.LockOSThread()
	for len(kids) < n {
		pid, _, errno := syscall.RawSyscall(syscall.SYS_FORK, 0, 0, 0)
		if errno != 0 {
			ferr = errno
			break
		}
		if pid == 0 {
			// The child: a copy of this one thread. Only raw system
			// calls are safe here.
			for {
				syscall.RawSyscall(syscall.SYS_PAUSE, 0, 0, 0)
			}
		}
		kids = append(kids, int(pid))
	}
	runtime.UnlockOSThread()
	r.set("forked", len(kids))
	r.err("fork", ferr)
	for _, pid := range kids {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	for _, pid := range kids {
		var ws syscall.WaitStatus
		syscall.Wait4(pid, &ws, 0, nil)
	}
}

// disk writes up to mb MiB to path, then removes it.
func disk(r *report, path string, mb int) {
	if path == "" {
		path = "/tmp/fill"
	}
	f, err := os.Create(path)
	if err != nil {
		r.err("create", err)
		return
	}
	chunk := bytes.Repeat([]byte{0xA5}, 1<<20)
	written := 0
	for written < mb {
		if _, err = f.Write(chunk); err != nil {
			break
		}
		written++
	}
	if err == nil {
		err = f.Sync()
	}
	f.Close()
	os.Remove(path)
	r.set("written_mb", written)
	r.err("write", err)
}

// flood writes n bytes of newlines to stdout, times times, a second apart.
func flood(n, times int) {
	buf := bytes.Repeat([]byte{'\n'}, 64<<10)
	for k := 0; k < times; k++ {
		if k > 0 {
			time.Sleep(time.Second)
		}
		for left := n; left > 0; left -= len(buf) {
			if _, err := os.Stdout.Write(buf[:min(left, len(buf))]); err != nil {
				return
			}
		}
	}
}
