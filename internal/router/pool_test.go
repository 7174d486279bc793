package router

import (
	"net"
	"testing"
	"time"
)

// A connection in use when its pool's idle connections are closed (its
// instance stopped) is closed, not pooled, when its request ends: a
// request that finished just after the stop would otherwise leave a
// connection to the stopped instance for the next request to wait on.
func TestPoolDropsAConnectionDialedBeforeCloseIdle(t *testing.T) {
	p := &connPool{max: 4, timeout: time.Minute}
	conn := func() (*backendConn, net.Conn) {
		c, peer := net.Pipe()
		t.Cleanup(func() { c.Close(); peer.Close() })
		_, epoch := p.get()
		return newBackendConn(c, epoch), peer
	}
	inUse, peer := conn()
	p.closeIdle()
	p.put(inUse)
	if bc, _ := p.get(); bc != nil {
		t.Fatal("a connection dialed before closeIdle was pooled after it")
	}
	if _, err := peer.Read(make([]byte, 1)); err == nil {
		t.Error("a connection dialed before closeIdle is still open after its request ended")
	}
	after, _ := conn()
	p.put(after)
	if bc, _ := p.get(); bc != after {
		t.Errorf("a connection dialed after closeIdle was not pooled: got %v", bc)
	}
}
