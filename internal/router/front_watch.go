package router

import (
	"net"
	"sync"
	"syscall"
	"time"
)

// clientWatchDelay is how long a request waits on its app before the front
// starts watching the client's connection for a close, so that a client that
// gives up on a slow answer cancels the request at the app, as net/http's
// background read does. Quick answers never pay for the watch.
const clientWatchDelay = 50 * time.Millisecond

// clientWatch notices a client closing its connection while its request
// waits on the app, and then closes the connection to the app (which ends
// the wait). It starts watching only clientWatchDelay after start, and
// watches without reading anything (a pipelined request stays where it
// is), so quick requests cost one timer reset.
type clientWatch struct {
	c net.Conn

	mu      sync.Mutex
	timer   *time.Timer
	app     net.Conn // closed when the client goes
	state   uint8    // watchIdle, watchArmed, watchRunning
	gone    bool
	stopped chan struct{} // closed when a running watch returns
}

const (
	watchIdle = iota
	watchArmed
	watchRunning
)

// start arms the watch for a request forwarded on app.
func (w *clientWatch) start(app net.Conn) {
	if _, ok := w.c.(syscall.Conn); !ok {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.app, w.gone, w.state = app, false, watchArmed
	if w.timer == nil {
		w.timer = time.AfterFunc(clientWatchDelay, w.run)
	} else {
		w.timer.Reset(clientWatchDelay)
	}
}

// stop ends the watch and reports whether the client went away.
func (w *clientWatch) stop() bool {
	w.mu.Lock()
	switch w.state {
	case watchIdle:
		w.mu.Unlock()
		return false
	case watchArmed:
		w.timer.Stop()
		w.state = watchIdle
		gone := w.gone
		w.mu.Unlock()
		return gone
	}
	// Running: interrupt the wait for readability and wait for it to end.
	w.state = watchIdle
	stopped := w.stopped
	w.mu.Unlock()
	w.c.SetReadDeadline(aLongTimeAgo)
	<-stopped
	w.c.SetReadDeadline(time.Time{})
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.gone
}

var aLongTimeAgo = time.Unix(1, 0)

func (w *clientWatch) run() {
	w.mu.Lock()
	if w.state != watchArmed {
		w.mu.Unlock()
		return
	}
	w.state = watchRunning
	w.stopped = make(chan struct{})
	stopped, app := w.stopped, w.app
	// The read deadline of the head may still be set; the watch lasts as
	// long as the request does. Cleared under the lock, so that stop's
	// deadline, which ends the watch, always comes after.
	w.c.SetReadDeadline(time.Time{})
	w.mu.Unlock()
	defer close(stopped)

	rc, err := w.c.(syscall.Conn).SyscallConn()
	if err != nil {
		return
	}
	gone := false
	rerr := rc.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		if err == syscall.EAGAIN || err == syscall.EINTR {
			return false // nothing yet: wait for readability
		}
		// End of stream or an error: the client is gone. Data: a
		// pipelined request, and the client is still there.
		gone = n == 0 || err != nil
		return true
	})
	if rerr != nil {
		return // stopped
	}
	if gone {
		w.mu.Lock()
		w.gone = true
		w.mu.Unlock()
		app.Close()
	}
}
