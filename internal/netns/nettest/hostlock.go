package nettest

import (
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"
)

// The rules RouteFromHost and Unreachable add steer the host's own packets,
// for the whole machine: two test processes doing so at once (go test runs
// packages in parallel) would steer each other's. They hold a machine-wide
// lock while their rules exist; inside one process it is counted, so one
// test process may hold several such rules.

// HostLockPath is the lock file. Its directory is created if needed.
const HostLockPath = "/run/lock/slipway-nettest-host.lock"

// HostLockWait bounds how long a test waits for another process's rules.
const HostLockWait = 30 * time.Minute

var hostLock struct {
	sync.Mutex
	n int
	f *os.File
}

// lockHost takes the machine-wide lock (or counts one more use of it in
// this process) and returns its release.
func lockHost() (release func(), err error) {
	hostLock.Lock()
	defer hostLock.Unlock()
	if hostLock.n == 0 {
		if err := os.MkdirAll("/run/lock", 0o755); err != nil {
			return nil, fmt.Errorf("nettest: %w", err)
		}
		f, err := os.OpenFile(HostLockPath, os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			return nil, fmt.Errorf("nettest: %w", err)
		}
		deadline := time.Now().Add(HostLockWait)
		for {
			err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
			if err == nil {
				break
			}
			if err != syscall.EWOULDBLOCK || time.Now().After(deadline) {
				f.Close()
				return nil, fmt.Errorf("nettest: waiting %s for %s (another test process steers the host's packets): %w", HostLockWait, HostLockPath, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		hostLock.f = f
	}
	hostLock.n++
	var once sync.Once
	return func() {
		once.Do(func() {
			hostLock.Lock()
			defer hostLock.Unlock()
			if hostLock.n--; hostLock.n == 0 {
				hostLock.f.Close() // releases the flock
				hostLock.f = nil
			}
		})
	}, nil
}
