package runc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/slipwayhq/slipway/internal/runtime"
)

// This file wraps the runc command line.

// tool is the runtime's command name (runc, runsc), for messages.
func (d *Driver) tool() string { return filepath.Base(d.runcPath) }

// runcState is the output of `runc state`.
type runcState struct {
	ID      string    `json:"id"`
	Pid     int       `json:"pid"`
	Status  string    `json:"status"` // created, running, paused, stopped
	Bundle  string    `json:"bundle"`
	Created time.Time `json:"created"`
}

// command returns a runc command with the driver's state root.
func (d *Driver) command(ctx context.Context, args ...string) *exec.Cmd {
	global := append([]string{"--root", d.runcRoot()}, d.args...)
	cmd := exec.CommandContext(ctx, d.runcPath, append(global, args...)...)
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// runcRun runs `runc run --detach` for the bundle with the container's
// stdout and stderr on the given files, or with create `runc create`,
// which makes the container and leaves its process waiting in runc's init
// for runcStart. runc passes its own stdio to the container when no
// terminal is asked for, so the files stay the app's output after runc and
// the server are gone. runc runs in a session of its own so that signals
// aimed at the server's terminal never reach apps.
func (d *Driver) runcRun(ctx context.Context, id, bundle string, stdout, stderr *os.File, create bool) error {
	logPath := filepath.Join(bundle, "runc.log")
	verb := []string{"run", "--detach"}
	if create {
		verb = []string{"create"}
	}
	cmd := d.command(ctx, append(append([]string{"--log", logPath, "--log-format", "json"}, verb...),
		"--pid-file", filepath.Join(bundle, "pid"), "--bundle", bundle, id)...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Run(); err != nil {
		if msg := lastRuncError(logPath); msg != "" {
			return fmt.Errorf("%s %s: %w: %s", d.tool(), verb[0], err, msg)
		}
		return fmt.Errorf("%s %s: %w", d.tool(), verb[0], err)
	}
	return nil
}

// runcStart runs `runc start`: the process of a container runcRun created
// execs the app.
func (d *Driver) runcStart(ctx context.Context, id string) error {
	return d.runtimeCmd(ctx, "start", id)
}

// runtimeCmd runs one command of the runtime's (start, pause, resume,
// checkpoint, restore) on its state root, its error carrying the
// runtime's stderr.
func (d *Driver) runtimeCmd(ctx context.Context, args ...string) error {
	var stderr bytes.Buffer
	cmd := d.command(ctx, args...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", d.tool(), args[0], err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// lastRuncError returns the last error message of a JSON runc log.
func lastRuncError(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	var msg string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l struct{ Level, Msg string }
		if json.Unmarshal(sc.Bytes(), &l) == nil && (l.Level == "error" || l.Level == "fatal") {
			msg = l.Msg
		}
	}
	return msg
}

// runcStateOf returns runc's view of container id, or ErrNotFound.
func (d *Driver) runcStateOf(ctx context.Context, id string) (*runcState, error) {
	if !d.gvisor() { // runsc keeps its state in files named otherwise
		if _, err := os.Stat(filepath.Join(d.runcRoot(), id)); errors.Is(err, os.ErrNotExist) {
			return nil, runtime.ErrNotFound
		}
	}
	var stderr bytes.Buffer
	cmd := d.command(ctx, "state", id)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if notExist(stderr.String()) {
			return nil, runtime.ErrNotFound
		}
		return nil, fmt.Errorf("%s state: %w: %s", d.tool(), err, strings.TrimSpace(stderr.String()))
	}
	var st runcState
	if err := json.Unmarshal(out, &st); err != nil {
		return nil, fmt.Errorf("%s state: %w", d.tool(), err)
	}
	return &st, nil
}

// runcKill sends sig to the container's processes. A container that is
// gone or not running is not an error.
func (d *Driver) runcKill(ctx context.Context, id, sig string) error {
	var stderr bytes.Buffer
	cmd := d.command(ctx, "kill", "--all", id, sig)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		msg := stderr.String()
		if notExist(msg) || strings.Contains(msg, "not running") || strings.Contains(msg, "process already finished") {
			return nil
		}
		return fmt.Errorf("%s kill %s: %w: %s", d.tool(), sig, err, strings.TrimSpace(msg))
	}
	return nil
}

// runcDelete deletes the container (killing what is left of it). A
// container that does not exist is not an error.
func (d *Driver) runcDelete(ctx context.Context, id string) error {
	var stderr bytes.Buffer
	cmd := d.command(ctx, "delete", "--force", id)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		if notExist(stderr.String()) {
			return nil
		}
		return fmt.Errorf("%s delete: %w: %s", d.tool(), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

func notExist(msg string) bool {
	return strings.Contains(msg, "does not exist") || strings.Contains(msg, "not exist")
}
