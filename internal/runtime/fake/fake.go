// Package fake is an in-memory runtime.Driver for tests of the control
// plane. It passes the same conformance suite (runtime/drivertest) as the
// real drivers.
//
// Every instance is an in-process HTTP server on its own loopback port
// serving the test app's protocol (package drivertest/testapp) whatever the
// image, so Dial, health checks and logs work for real; like the test app,
// an instance whose environment holds TESTAPP_EXIT=N exits with code N as
// soon as it starts. Tests can make an
// instance crash (Driver.Crash) or accept connections and never answer
// (Config.NeverAnswer, Driver.SetNeverAnswer). Instances live on a Machine,
// which outlives driver values: a new Driver on the same Machine plays a
// restarted server.
package fake

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/slipwayhq/slipway/internal/runtime"
	"github.com/slipwayhq/slipway/internal/runtime/drivertest/testapp"
)

// Name is the driver's name, as stored in Handle.Driver, unless its
// Config names it otherwise.
const Name = "fake"

// ExitStopped is the exit code of an instance stopped by Stop, as if it
// had died of SIGTERM.
const ExitStopped = 128 + int(syscall.SIGTERM)

// Machine holds instances the way a host holds processes: they outlive the
// driver values that started them. An instance made by Prepare is there,
// its app not serving, until StartPrepared or Stop.
type Machine struct {
	mu        sync.Mutex
	instances map[string]*instance
	nextPID   int
}

// NewMachine returns a machine with no instances.
func NewMachine() *Machine {
	return &Machine{instances: make(map[string]*instance), nextPID: 10000}
}

// Config configures a Driver. The zero value works.
type Config struct {
	// Machine holds the instances. If nil, New gives the driver a machine of
	// its own. Drivers on one machine see each other's instances.
	Machine *Machine
	// NeverAnswer reports whether an instance accepts connections but never
	// answers a request. If nil, every instance answers.
	NeverAnswer func(spec runtime.Spec) bool
	// StartError, if set, makes Start fail with the error it returns for a
	// spec (when not nil).
	StartError func(spec runtime.Spec) error
	// Name is the driver's name, for tests that run several drivers (one
	// per sandbox kind) side by side. If empty, "fake".
	Name string
}

// Driver is the fake runtime driver.
type Driver struct {
	cfg Config
	m   *Machine
}

// New returns a fake driver.
func New(cfg Config) *Driver {
	m := cfg.Machine
	if m == nil {
		m = NewMachine()
	}
	if cfg.Name == "" {
		cfg.Name = Name
	}
	return &Driver{cfg: cfg, m: m}
}

type instance struct {
	spec      runtime.Spec
	env       map[string]string
	pid       int
	startedAt time.Time
	dir       string // the instance's own filesystem root
	ln        net.Listener
	srv       *http.Server
	out, errw io.WriteCloser
	hang      atomic.Bool
	done      chan struct{} // closed when the process has exited

	mu       sync.Mutex
	prepared bool // made by Prepare, not yet started
	starting bool // StartPrepared was called
	exited   bool
	exitCode int
	exitedAt time.Time
}

func (in *instance) status() runtime.Status {
	in.mu.Lock()
	defer in.mu.Unlock()
	return runtime.Status{
		Running:   !in.exited,
		PID:       in.pid,
		StartedAt: in.startedAt,
		ExitCode:  in.exitCode,
		ExitedAt:  in.exitedAt,
	}
}

// exit ends the instance's "process" with code; later calls do nothing.
func (in *instance) exit(code int) {
	in.mu.Lock()
	if in.exited {
		in.mu.Unlock()
		return
	}
	in.exited, in.exitCode, in.exitedAt = true, code, time.Now()
	in.mu.Unlock()
	if in.srv != nil {
		in.srv.Close()
	} else if in.ln != nil {
		in.ln.Close()
	}
	in.out.Close()
	in.errw.Close()
	close(in.done)
}

// Name implements runtime.Driver.
func (d *Driver) Name() string { return d.cfg.Name }

// Start implements runtime.Driver.
func (d *Driver) Start(ctx context.Context, spec runtime.Spec) (*runtime.Handle, error) {
	return d.start(ctx, spec, false)
}

// Prepare implements runtime.Preparer: the instance exists, with its log
// files open, and serves nothing until StartPrepared.
func (d *Driver) Prepare(ctx context.Context, spec runtime.Spec) (*runtime.Handle, error) {
	return d.start(ctx, spec, true)
}

func (d *Driver) start(ctx context.Context, spec runtime.Spec, prepare bool) (*runtime.Handle, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if spec.ID == "" {
		return nil, errors.New("fake: starting instance: empty ID")
	}
	if d.cfg.StartError != nil {
		if err := d.cfg.StartError(spec); err != nil {
			return nil, err
		}
	}
	if spec.Port == 0 {
		spec.Port = 3000
	}
	in := &instance{spec: spec, env: make(map[string]string), startedAt: time.Now(), prepared: prepare, done: make(chan struct{})}
	for _, kv := range spec.Env {
		k, v, _ := strings.Cut(kv, "=")
		in.env[k] = v
	}
	in.env["PORT"] = strconv.Itoa(spec.Port)
	if d.cfg.NeverAnswer != nil && d.cfg.NeverAnswer(spec) {
		in.hang.Store(true)
	}

	d.m.mu.Lock()
	if _, ok := d.m.instances[spec.ID]; ok {
		d.m.mu.Unlock()
		return nil, fmt.Errorf("fake: starting instance %s: already exists", spec.ID)
	}
	d.m.nextPID++
	in.pid = d.m.nextPID
	d.m.instances[spec.ID] = in
	d.m.mu.Unlock()

	err := in.open()
	if err == nil && !prepare {
		err = in.serve()
	}
	if err != nil {
		d.m.mu.Lock()
		delete(d.m.instances, spec.ID)
		d.m.mu.Unlock()
		in.cleanup()
		return nil, fmt.Errorf("fake: starting instance %s: %w", spec.ID, err)
	}
	return in.handle(d.cfg.Name), nil
}

func (in *instance) handle(name string) *runtime.Handle {
	addr := ""
	if in.ln != nil {
		addr = in.ln.Addr().String()
	}
	state, _ := json.Marshal(struct {
		PID  int    `json:"pid"`
		Addr string `json:"addr"`
	}{in.pid, addr})
	return &runtime.Handle{ID: in.spec.ID, Driver: name, State: state}
}

// StartPrepared implements runtime.Preparer.
func (d *Driver) StartPrepared(ctx context.Context, h *runtime.Handle) (*runtime.Handle, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	in, err := d.lookup(h)
	if err != nil {
		return nil, err
	}
	in.mu.Lock()
	ok := in.prepared && !in.exited && !in.starting
	in.starting = true
	in.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("fake: starting prepared instance %s: it was started already", h.ID)
	}
	if err := in.serve(); err != nil {
		in.exit(1)
		return nil, fmt.Errorf("fake: starting prepared instance %s: %w", h.ID, err)
	}
	// Dial reads the listener once prepared is false.
	in.mu.Lock()
	in.prepared, in.startedAt = false, time.Now()
	in.mu.Unlock()
	return in.handle(d.cfg.Name), nil
}

// Prepared returns the IDs of the machine's instances made by Prepare and
// not yet started.
func (m *Machine) Prepared() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ids []string
	for id, in := range m.instances {
		in.mu.Lock()
		if in.prepared {
			ids = append(ids, id)
		}
		in.mu.Unlock()
	}
	return ids
}

// open makes what an instance has before its app serves: its log files.
func (in *instance) open() error {
	// The instance's filesystem is made on the first write, so that
	// instances that never write leave nothing behind even if never stopped.
	b := make([]byte, 6)
	rand.Read(b)
	in.dir = filepath.Join(os.TempDir(), "slipway-fake-"+in.spec.ID+"-"+hex.EncodeToString(b))
	var err error
	if in.out, err = openLog(in.spec.StdoutPath); err != nil {
		return err
	}
	if in.errw, err = openLog(in.spec.StderrPath); err != nil {
		return err
	}
	return nil
}

// serve starts the app.
func (in *instance) serve() error {
	var err error
	if in.ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return err
	}
	app := testapp.Handler(testapp.Config{
		Getenv: func(k string) (string, bool) { v, ok := in.env[k]; return v, ok },
		Root:   in.dir,
		Stdout: in.out,
		Stderr: in.errw,
		Exit:   func(code int) { go in.exit(code) },
	})
	in.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if in.hang.Load() {
			select {
			case <-r.Context().Done():
			case <-in.done:
			}
			return
		}
		app.ServeHTTP(w, r)
	})}
	fmt.Fprintln(in.out, testapp.StartLine)
	fmt.Fprintln(in.errw, testapp.StartLine)
	go in.srv.Serve(in.ln)
	if v, ok := in.env[testapp.EnvExit]; ok {
		code, _ := strconv.Atoi(v)
		in.exit(code)
	}
	return nil
}

// cleanup frees what a failed start acquired.
func (in *instance) cleanup() {
	if in.ln != nil {
		in.ln.Close()
	}
	if in.out != nil {
		in.out.Close()
	}
	if in.errw != nil {
		in.errw.Close()
	}
	if in.dir != "" {
		os.RemoveAll(in.dir)
	}
}

// openLog opens a log file for appending; an empty path discards output.
func openLog(path string) (io.WriteCloser, error) {
	if path == "" {
		return nopCloser{io.Discard}, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, err
	}
	return f, nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

func (d *Driver) lookup(h *runtime.Handle) (*instance, error) {
	d.m.mu.Lock()
	defer d.m.mu.Unlock()
	in, ok := d.m.instances[h.ID]
	if !ok {
		return nil, fmt.Errorf("fake: instance %s: %w", h.ID, runtime.ErrNotFound)
	}
	return in, nil
}

// Inspect implements runtime.Driver.
func (d *Driver) Inspect(ctx context.Context, h *runtime.Handle) (runtime.Status, error) {
	in, err := d.lookup(h)
	if err != nil {
		return runtime.Status{}, err
	}
	return in.status(), nil
}

// Wait implements runtime.Driver.
func (d *Driver) Wait(ctx context.Context, h *runtime.Handle) (runtime.Status, error) {
	in, err := d.lookup(h)
	if err != nil {
		return runtime.Status{}, err
	}
	select {
	case <-in.done:
		return in.status(), nil
	case <-ctx.Done():
		return runtime.Status{}, ctx.Err()
	}
}

// Dial implements runtime.Driver. Only the instance's Spec.Port accepts
// connections; any other port, or an instance that has exited, refuses.
func (d *Driver) Dial(ctx context.Context, h *runtime.Handle, port int) (net.Conn, error) {
	in, err := d.lookup(h)
	if err != nil {
		return nil, err
	}
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	if port != in.spec.Port {
		return nil, refused
	}
	select {
	case <-in.done:
		return nil, refused
	default:
	}
	in.mu.Lock()
	prepared := in.prepared
	in.mu.Unlock()
	if prepared {
		return nil, refused
	}
	var dl net.Dialer
	return dl.DialContext(ctx, "tcp", in.ln.Addr().String())
}

// Stop implements runtime.Driver. A running instance exits with
// ExitStopped.
func (d *Driver) Stop(ctx context.Context, h *runtime.Handle) error {
	d.m.mu.Lock()
	in, ok := d.m.instances[h.ID]
	delete(d.m.instances, h.ID)
	d.m.mu.Unlock()
	if !ok {
		return nil
	}
	in.exit(ExitStopped)
	return os.RemoveAll(in.dir)
}

// Recover implements runtime.Driver.
func (d *Driver) Recover(ctx context.Context, h *runtime.Handle) error {
	_, err := d.lookup(h)
	return err
}

// Crash makes the instance's process exit with code, as if it crashed.
func (d *Driver) Crash(id string, code int) error {
	in, err := d.lookup(&runtime.Handle{ID: id})
	if err != nil {
		return err
	}
	in.exit(code)
	return nil
}

// SetNeverAnswer makes the instance accept connections and never answer
// (true) or answer again (false).
func (d *Driver) SetNeverAnswer(id string, never bool) error {
	in, err := d.lookup(&runtime.Handle{ID: id})
	if err != nil {
		return err
	}
	in.hang.Store(never)
	return nil
}

var (
	_ runtime.Driver   = (*Driver)(nil)
	_ runtime.Preparer = (*Driver)(nil)
)
