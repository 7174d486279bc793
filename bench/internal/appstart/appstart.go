// Package appstart starts an app as a plain host process — the baseline
// that benchmarks set a sandbox beside — and times exec → its first 200:
// a natively built binary exec'd with PORT set, or an image's start
// command chrooted into the image's filesystem unpacked into a plain
// directory (Chroot). No namespaces, no cgroups, no overlay, no proxy.
package appstart

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Proc is an app started as a plain process, in a process group of its
// own.
type Proc struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

// PID is the process's id (the leader of its group).
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Stop kills the process group and waits for the process.
func (p *Proc) Stop() {
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.exited
}

// Start starts cmd in a process group of its own and waits for the first
// 200 on addr, probing every interval for at most limit; it returns the
// running process and the time from exec to that 200. On an error the
// process group is killed.
func Start(cmd *exec.Cmd, addr string, interval, limit time.Duration) (*Proc, time.Duration, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, 0, err
	}
	p := &Proc{cmd: cmd, exited: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(p.exited)
	}()
	for time.Since(t0) < limit {
		if Get200(func() (net.Conn, error) { return net.Dial("tcp", addr) }) {
			return p, time.Since(t0), nil
		}
		select {
		case <-p.exited:
			p.Stop()
			return nil, 0, fmt.Errorf("exited (%s) before answering", cmd.ProcessState)
		case <-time.After(interval):
		}
	}
	p.Stop()
	return nil, 0, fmt.Errorf("no 200 on %s within %s", addr, limit)
}

// Time starts cmd as Start does, kills it, and returns exec → first 200.
func Time(cmd *exec.Cmd, addr string, interval, limit time.Duration) (time.Duration, error) {
	p, d, err := Start(cmd, addr, interval, limit)
	if err != nil {
		return 0, err
	}
	p.Stop()
	return d, nil
}

// Native is the command that runs a natively built app binary with PORT
// set to port.
func Native(binary string, port int) *exec.Cmd {
	cmd := exec.Command(binary)
	cmd.Env = append(os.Environ(), "PORT="+strconv.Itoa(port))
	return cmd
}

// Get200 sends GET / on a new connection and reports whether it got 200.
func Get200(dial func() (net.Conn, error)) bool {
	conn, err := dial()
	if err != nil {
		return false
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	fmt.Fprint(conn, "GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == 200
}

// StartCommandArgs is the command line the control plane gives a driver
// for a deployment's start command (nil: the image's own).
func StartCommandArgs(cmd string) []string {
	if strings.TrimSpace(cmd) == "" {
		return nil
	}
	return []string{"/bin/sh", "-c", cmd}
}

// Tail returns the last n bytes of a file, on one line.
func Tail(p string, n int) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	s := strings.Join(strings.Fields(string(b)), " ")
	if s == "" {
		return "(empty)"
	}
	return s
}
