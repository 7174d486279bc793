package runc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/slipwayhq/slipway/internal/runtime"
	"github.com/slipwayhq/slipway/internal/runtime/linuxns"
)

// netnsPool keeps network namespaces wired ahead: created, with lo up, and
// attached to the Network under an id of their own with no group. A start
// that finds one bind-mounts it at the instance's path and has the Network
// hand its lease over (Claim), which leaves no veth, address or route to
// make on the start or wake path; a background loop makes the next.
//
// Pooled namespaces are held as open files only, never mounted, so a
// crash of the server frees them with the process (the kernel removes
// their veths); their leases are then not among the live instances the
// server reconciles the Network with, and go.
type netnsPool struct {
	nw    runtime.Network
	ready chan pooledNetns // at most size, ready to claim
	kick  chan struct{}    // a claim happened: make another
	stop  context.CancelFunc
	done  chan struct{}
}

type pooledNetns struct {
	id string   // its lease's id until claimed
	ns *os.File // the namespace
}

// poolIDPrefix starts the lease ids of pooled namespaces.
const poolIDPrefix = "pool-"

func newNetnsPool(nw runtime.Network, size int) *netnsPool {
	ctx, cancel := context.WithCancel(context.Background())
	p := &netnsPool{nw: nw, ready: make(chan pooledNetns, size), kick: make(chan struct{}, 1), stop: cancel, done: make(chan struct{})}
	go p.fill(ctx)
	return p
}

// fill keeps the pool full until ctx ends. A failure is logged and tried
// again after a pause, never returned: starts then wire their own.
func (p *netnsPool) fill(ctx context.Context) {
	defer close(p.done)
	pause := time.Second
	for {
		for len(p.ready) < cap(p.ready) {
			pn, err := p.prepare(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				slog.Warn("preparing a network namespace ahead; starts wire their own meanwhile", "err", err, "retry_in", pause)
				select {
				case <-ctx.Done():
					return
				case <-time.After(pause):
				}
				pause = min(2*pause, time.Minute)
				continue
			}
			pause = time.Second
			select {
			case p.ready <- pn:
			default: // cannot happen: only fill adds
				p.discard(pn)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-p.kick:
		}
	}
}

func (p *netnsPool) prepare(ctx context.Context) (pooledNetns, error) {
	b := make([]byte, 4)
	rand.Read(b)
	id := poolIDPrefix + hex.EncodeToString(b)
	ns, err := linuxns.New()
	if err != nil {
		return pooledNetns{}, err
	}
	if _, err := p.nw.Attach(ctx, id, "", linuxns.FdPath(ns)); err != nil {
		ns.Close()
		p.nw.Detach(context.WithoutCancel(ctx), id)
		return pooledNetns{}, fmt.Errorf("attaching %s: %w", id, err)
	}
	return pooledNetns{id: id, ns: ns}, nil
}

// take returns a pooled namespace if one is ready, and asks for another.
func (p *netnsPool) take() (pooledNetns, bool) {
	defer func() {
		select {
		case p.kick <- struct{}{}:
		default:
		}
	}()
	select {
	case pn := <-p.ready:
		return pn, true
	default:
		return pooledNetns{}, false
	}
}

func (p *netnsPool) discard(pn pooledNetns) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.nw.Detach(ctx, pn.id); err != nil {
		slog.Warn("detaching a network namespace prepared ahead", "id", pn.id, "err", err)
	}
	pn.ns.Close()
}

// close stops the loop and releases what is pooled.
func (p *netnsPool) close() {
	p.stop()
	<-p.done
	for {
		select {
		case pn := <-p.ready:
			p.discard(pn)
		default:
			return
		}
	}
}

// claim makes pooled namespace pn the instance id's, at path, in group.
// pn's file is closed either way; on failure its lease is released too
// (the caller's teardown removes path and id's lease).
func (p *netnsPool) claim(ctx context.Context, pn pooledNetns, id, group, path string) (runtime.Lease, error) {
	defer pn.ns.Close()
	if err := linuxns.Bind(pn.ns, path); err != nil {
		p.nw.Detach(context.WithoutCancel(ctx), pn.id)
		return runtime.Lease{}, err
	}
	l, err := p.nw.Claim(ctx, pn.id, id, group)
	if err != nil {
		p.nw.Detach(context.WithoutCancel(ctx), pn.id)
		return runtime.Lease{}, fmt.Errorf("claiming a network namespace prepared ahead: %w", err)
	}
	return l, nil
}
