// Package testapp is the small HTTP app that every runtime driver runs in
// the conformance suite. The same handler runs as a static binary inside
// real sandboxes (see drivertest.BuildApp) and in-process in the fake driver.
//
// Protocol (all GET):
//
//	/                      200 "hello from <APP_ID>"
//	/env?name=K            200 and the value of K, 404 if unset
//	/stat?path=P           200 "exists uid=U gid=G" (P's owner) if P exists, 404 if not
//	/read?path=P           200 and the content of P
//	/write?path=P&data=D   creates P (and its directories) holding D
//	/log?msg=M[&stream=stderr]  writes M and a newline to stdout (or stderr)
//	/hold?ms=N             200 "holding" at once, "done" N ms later
//	/id                    200 "uid=U gid=G groups=A,B"
//	/count                 200 and how many times /count was asked, this one
//	                       included, since the process started (state kept in
//	                       memory only)
//	/exit?code=N           answers 200, then the process exits with code N
//	/syscall?name=P        200 and the outcome of probe P (see Probes), run in a
//	                       child process: "ok", "EPERM", ..., or "killed by SIG..."
//	/alloc?mb=N            allocates and touches N MiB more, kept until exit;
//	                       200 "allocated"
//	/fill?path=P&kb=N      creates P holding N KiB; 200 "written", 500 and the error
//	/dial?addr=A           200 "connected" if a TCP connection to A opens
//	                       within 2 s, else 200 "error: ..."
//	/procs                 200, a line "PID CMDLINE" per process the app can see
//	/spawn?n=N             starts up to N child processes (each sleeping), counts
//	                       those that started, ends them; 200 "spawned K" and, if
//	                       one failed to start, ": error"
//
// On start the app writes StartLine to stdout and to stderr. With
// TESTAPP_EXIT=N in its environment it then exits with code N at once.
package testapp

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// StartLine is the line the app writes to stdout and stderr when it starts.
const StartLine = "testapp: started"

// Env holds the names of environment variables the app reads.
const (
	EnvID          = "APP_ID"              // echoed by GET /
	EnvIgnoreTerm  = "TESTAPP_IGNORE_TERM" // "1": ignore SIGTERM (to test a stop's SIGKILL)
	EnvExit        = "TESTAPP_EXIT"        // N: exit with code N right after starting
	EnvDefaultPort = "3000"
)

// Config is what the handler needs from its environment.
type Config struct {
	// Getenv looks up an environment variable. If nil, os.LookupEnv.
	Getenv func(string) (string, bool)
	// Root is prepended to every path of /stat, /read and /write.
	// If empty, paths are used as they are.
	Root string
	// Stdout and Stderr receive /log messages. If nil, os.Stdout and os.Stderr.
	Stdout, Stderr io.Writer
	// Exit ends the app with a code after /exit has answered. If nil, os.Exit.
	Exit func(code int)
}

// Handler serves the protocol described in the package documentation.
func Handler(cfg Config) http.Handler {
	if cfg.Getenv == nil {
		cfg.Getenv = os.LookupEnv
	}
	if cfg.Stdout == nil {
		cfg.Stdout = os.Stdout
	}
	if cfg.Stderr == nil {
		cfg.Stderr = os.Stderr
	}
	if cfg.Exit == nil {
		cfg.Exit = os.Exit
	}
	path := func(r *http.Request) string {
		return filepath.Join(cfg.Root, filepath.Clean("/"+r.URL.Query().Get("path")))
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		id, _ := cfg.Getenv(EnvID)
		fmt.Fprintf(w, "hello from %s\n", id)
	})
	mux.HandleFunc("GET /env", func(w http.ResponseWriter, r *http.Request) {
		v, ok := cfg.Getenv(r.URL.Query().Get("name"))
		if !ok {
			http.Error(w, "unset", http.StatusNotFound)
			return
		}
		io.WriteString(w, v)
	})
	mux.HandleFunc("GET /stat", func(w http.ResponseWriter, r *http.Request) {
		fi, err := os.Lstat(path(r))
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		uid, gid := -1, -1
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			uid, gid = int(st.Uid), int(st.Gid)
		}
		fmt.Fprintf(w, "exists uid=%d gid=%d\n", uid, gid)
	})
	mux.HandleFunc("GET /read", func(w http.ResponseWriter, r *http.Request) {
		b, err := os.ReadFile(path(r))
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		w.Write(b)
	})
	mux.HandleFunc("GET /write", func(w http.ResponseWriter, r *http.Request) {
		p := path(r)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if err := os.WriteFile(p, []byte(r.URL.Query().Get("data")), 0o644); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "written\n")
	})
	mux.HandleFunc("GET /log", func(w http.ResponseWriter, r *http.Request) {
		out := cfg.Stdout
		if r.URL.Query().Get("stream") == "stderr" {
			out = cfg.Stderr
		}
		fmt.Fprintln(out, r.URL.Query().Get("msg"))
		io.WriteString(w, "logged\n")
	})
	mux.HandleFunc("GET /syscall", func(w http.ResponseWriter, r *http.Request) {
		out, err := probe(r.URL.Query().Get("name"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		io.WriteString(w, out)
	})
	mux.HandleFunc("GET /alloc", func(w http.ResponseWriter, r *http.Request) {
		mb, err := strconv.Atoi(r.URL.Query().Get("mb"))
		if err != nil || mb < 0 {
			http.Error(w, "bad mb", http.StatusBadRequest)
			return
		}
		for range mb {
			b := make([]byte, 1<<20)
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1
			}
			allocated = append(allocated, b)
		}
		io.WriteString(w, "allocated\n")
	})
	mux.HandleFunc("GET /hold", func(w http.ResponseWriter, r *http.Request) {
		// A long-lived answer: a first line at once, the rest after ms
		// milliseconds (at most a minute) unless the client goes first.
		ms, err := strconv.Atoi(r.URL.Query().Get("ms"))
		if err != nil || ms < 0 || ms > 60000 {
			http.Error(w, "bad ms", http.StatusBadRequest)
			return
		}
		io.WriteString(w, "holding\n")
		http.NewResponseController(w).Flush()
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
			io.WriteString(w, "done\n")
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("GET /fill", func(w http.ResponseWriter, r *http.Request) {
		kb, err := strconv.Atoi(r.URL.Query().Get("kb"))
		if err != nil || kb < 0 {
			http.Error(w, "bad kb", http.StatusBadRequest)
			return
		}
		if err := fill(path(r), kb); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "written\n")
	})
	mux.HandleFunc("GET /dial", func(w http.ResponseWriter, r *http.Request) {
		c, err := net.DialTimeout("tcp", r.URL.Query().Get("addr"), 2*time.Second)
		if err != nil {
			fmt.Fprintf(w, "error: %v\n", err)
			return
		}
		c.Close()
		io.WriteString(w, "connected\n")
	})
	mux.HandleFunc("GET /procs", func(w http.ResponseWriter, r *http.Request) {
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			if _, err := strconv.Atoi(e.Name()); err != nil {
				continue
			}
			b, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
			fmt.Fprintf(w, "%s %s\n", e.Name(), strings.ReplaceAll(string(b), "\x00", " "))
		}
	})
	mux.HandleFunc("GET /spawn", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.URL.Query().Get("n"))
		if err != nil || n < 0 || n > 1024 {
			http.Error(w, "bad n", http.StatusBadRequest)
			return
		}
		k, err := spawn(n)
		if err != nil {
			fmt.Fprintf(w, "spawned %d: %v\n", k, err)
			return
		}
		fmt.Fprintf(w, "spawned %d\n", k)
	})
	mux.HandleFunc("GET /id", func(w http.ResponseWriter, r *http.Request) {
		groups, _ := os.Getgroups()
		gs := make([]string, len(groups))
		for i, g := range groups {
			gs[i] = strconv.Itoa(g)
		}
		fmt.Fprintf(w, "uid=%d gid=%d groups=%s\n", os.Getuid(), os.Getgid(), strings.Join(gs, ","))
	})
	var count atomic.Int64
	mux.HandleFunc("GET /count", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%d\n", count.Add(1))
	})
	mux.HandleFunc("GET /exit", func(w http.ResponseWriter, r *http.Request) {
		code, err := strconv.Atoi(r.URL.Query().Get("code"))
		if err != nil {
			http.Error(w, "bad code", http.StatusBadRequest)
			return
		}
		// A known length and a flush put the whole answer on the wire
		// before the process ends.
		const msg = "exiting\n"
		w.Header().Set("Connection", "close")
		w.Header().Set("Content-Length", strconv.Itoa(len(msg)))
		io.WriteString(w, msg)
		w.(http.Flusher).Flush()
		cfg.Exit(code)
	})
	return mux
}

// fill writes kb KiB of zeros to path, syncing them to the file system.
func fill(path string, kb int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	block := make([]byte, 1<<10)
	for range kb {
		if _, err := f.Write(block); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// spawn starts up to n copies of the app that sleep (sleepArg), stops at
// the first that fails to start, then kills and reaps them all.
func spawn(n int) (int, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, err
	}
	var cmds []*exec.Cmd
	defer func() {
		for _, c := range cmds {
			c.Process.Kill()
			c.Wait()
		}
	}()
	for range n {
		c := exec.Command(exe, sleepArg)
		if err := c.Start(); err != nil {
			return len(cmds), err
		}
		cmds = append(cmds, c)
	}
	return len(cmds), nil
}

// sleepArg, as the only argument of the app, makes it sleep for a minute
// (a child of /spawn).
const sleepArg = "-sleep"

// allocated holds what /alloc allocated.
var allocated [][]byte

// Main runs the app as a process: it listens on $PORT (default 3000) on
// all addresses and serves Handler with the process's environment. Run
// as "app -probe NAME", it runs one probe instead (see Probes).
func Main() {
	if len(os.Args) == 3 && os.Args[1] == probeArg {
		runProbe(os.Args[2])
	}
	if len(os.Args) == 2 && os.Args[1] == sleepArg {
		time.Sleep(time.Minute)
		os.Exit(0)
	}
	port := os.Getenv("PORT")
	if port == "" {
		port = EnvDefaultPort
	}
	if os.Getenv(EnvIgnoreTerm) == "1" {
		signal.Ignore(syscall.SIGTERM)
	} else {
		term := make(chan os.Signal, 1)
		signal.Notify(term, syscall.SIGTERM)
		go func() {
			<-term
			fmt.Println("testapp: terminating")
			os.Exit(0)
		}()
	}
	fmt.Println(StartLine)
	fmt.Fprintln(os.Stderr, StartLine)
	if v := os.Getenv(EnvExit); v != "" {
		code, _ := strconv.Atoi(v)
		os.Exit(code)
	}
	err := http.ListenAndServe(":"+port, Handler(Config{}))
	fmt.Fprintln(os.Stderr, "testapp:", err)
	os.Exit(1)
}
