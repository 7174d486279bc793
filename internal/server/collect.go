package server

import (
	"context"
	"time"

	"github.com/slipwayhq/slipway/internal/deploy"
)

// retention is the lifecycle's retention policy: the server's flags, and
// the registry's garbage collection.
func (s *server) retention() deploy.Retention {
	return deploy.Retention{
		StoppedFor:  s.cfg.KeepStopped,
		MinFreeDisk: max(s.cfg.MinFreeDisk, 0),
		CollectImages: func(keep func(repo, digest string) bool, before time.Time) (int, int64, error) {
			st, err := s.registry.CollectGarbage(keep, before)
			return st.Manifests, st.Bytes, err
		},
	}
}

// startCollection runs the retention policy once now and then every
// CollectInterval, in the background, until shutdown (see
// deploy.Controller.Collect); each run logs what it freed.
func (s *server) startCollection(context.Context) error {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.ctl.RunCollection(ctx, s.cfg.CollectInterval)
	}()
	s.onStop(func(context.Context) {
		cancel()
		<-done
	})
	return nil
}
