package runtime

import (
	"context"
	"time"
)

// Usage is what one instance uses at a point in time, as its sandbox
// accounts it.
type Usage struct {
	// CPU is the CPU time (user and system) the instance's processes have
	// used since it started. It starts from zero with every new instance.
	CPU time.Duration
	// MemoryBytes is the memory charged to the instance now, page cache
	// included, as its memory limit counts it.
	MemoryBytes int64
	// MemoryLimitBytes is the instance's memory limit; zero if it has none.
	MemoryLimitBytes int64
	// Pids is how many processes and threads the instance has.
	Pids int64
}

// UsageReader is implemented by drivers that can tell what an instance
// uses (the runc driver reads its cgroup). It is optional: callers check
// for it with a type assertion.
//
// Usage reports the instance's usage now. It returns ErrNotFound when the
// instance is gone. It is cheap enough to call for every instance at
// every metrics scrape.
type UsageReader interface {
	Usage(ctx context.Context, h *Handle) (Usage, error)
}
