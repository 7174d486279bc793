package deploy

import (
	"context"
	"errors"
	"sync"
)

// buildQueue holds the deployments waiting to initialize and build, and
// hands them to the build workers fairly: first come, first served within
// a project, projects in turn, and at most perProject builds of one
// project at a time, so that one project's queue (or its builds that never
// end) can't hold every worker while other projects wait.
type buildQueue struct {
	perProject int
	capacity   int // deployments waiting, at most

	mu      sync.Mutex
	waiting map[string][]string // project → deployment ids, oldest first
	turn    []string            // projects with waiting deployments, next in turn first
	running map[string]int      // project → builds in progress
	queued  map[string]bool     // deployment ids waiting or building
	size    int                 // deployments waiting
	changed chan struct{}       // closed at the next push or done
}

var errQueueFull = errors.New("build queue full")

func newBuildQueue(perProject, capacity int) *buildQueue {
	return &buildQueue{perProject: perProject, capacity: capacity,
		waiting: map[string][]string{}, running: map[string]int{}, queued: map[string]bool{},
		changed: make(chan struct{})}
}

// push queues deployment id of project. A deployment already waiting or
// building is not queued again.
func (q *buildQueue) push(id, project string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.queued[id] {
		return nil
	}
	if q.size >= q.capacity {
		return errQueueFull
	}
	q.queued[id] = true
	q.size++
	if len(q.waiting[project]) == 0 {
		q.turn = append(q.turn, project)
	}
	q.waiting[project] = append(q.waiting[project], id)
	q.wake()
	return nil
}

// next waits until a deployment may start building and returns it, or
// returns false when ctx ends. The caller calls done when the build ends.
func (q *buildQueue) next(ctx context.Context) (id, project string, ok bool) {
	for {
		q.mu.Lock()
		for i, p := range q.turn {
			if q.running[p] >= q.perProject {
				continue
			}
			ids := q.waiting[p]
			id = ids[0]
			q.turn = append(q.turn[:i], q.turn[i+1:]...)
			if len(ids) == 1 {
				delete(q.waiting, p)
			} else {
				q.waiting[p] = ids[1:]
				q.turn = append(q.turn, p) // its next one waits for the others' turn
			}
			q.running[p]++
			q.size--
			q.mu.Unlock()
			return id, p, true
		}
		changed := q.changed
		q.mu.Unlock()
		select {
		case <-ctx.Done():
			return "", "", false
		case <-changed:
		}
	}
}

// done records the end of a build that next handed out.
func (q *buildQueue) done(id, project string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.queued, id)
	if q.running[project]--; q.running[project] <= 0 {
		delete(q.running, project)
	}
	q.wake()
}

// len reports how many deployments wait.
func (q *buildQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.size
}

func (q *buildQueue) wake() {
	close(q.changed)
	q.changed = make(chan struct{})
}
