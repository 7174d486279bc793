package main

// The plain-process baseline of an app that has no native build here (the
// Python app): its deployed image's filesystem unpacked into a plain
// directory, and its start command run as an ordinary host process
// chrooted into it — no namespaces, no cgroups, no overlay, no mounts.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/slipwayhq/slipway/bench/internal/appstart"
	"github.com/slipwayhq/slipway/bench/internal/stats"
	"github.com/slipwayhq/slipway/test/fault/serverproc"
)

// chrootSampler pulls image from the server's registry and unpacks it into
// work/<tag>-rootfs. Each of its samples starts the app there as a plain
// process: the deployment's start command (startCommand, run as the control
// plane runs it: /bin/sh -c) or else the image's entrypoint and cmd, with the
// image config's Env, WorkingDir and User, PORT set to a free loopback
// port, chrooted into the unpacked tree, and times exec → first 200 on that
// port; the process group is killed after each one.
func chrootSampler(ctx context.Context, se *series, work, tag, image, token, startCommand string) (*sampler, error) {
	c, err := appstart.NewChroot(ctx, image, token, filepath.Join(work, tag+"-rootfs"), startCommand, "wakebench")
	if err != nil {
		return nil, err
	}
	logs := filepath.Join(work, tag+"-plain-logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return nil, err
	}
	se.Note = fmt.Sprintf("the image was pulled and unpacked into a plain directory in %s ms before the first sample (not counted); command %q, working directory %s",
		stats.MS(c.Unpacked), c.Argv, c.Dir)
	return &sampler{se: se, sample: func(i int) (time.Duration, error) {
		port, err := serverproc.FreePort()
		if err != nil {
			return 0, err
		}
		errPath := filepath.Join(logs, fmt.Sprintf("%d.err", i))
		out, err := os.Create(filepath.Join(logs, fmt.Sprintf("%d.out", i)))
		if err != nil {
			return 0, err
		}
		errf, err := os.Create(errPath)
		if err != nil {
			out.Close()
			return 0, err
		}
		d, err := appstart.Time(c.Command(port, out, errf), "127.0.0.1:"+strconv.Itoa(port), time.Millisecond, 30*time.Second)
		out.Close()
		errf.Close()
		if err != nil {
			return 0, fmt.Errorf("sample %d: %w; stderr: %s", i, err, appstart.Tail(errPath, 300))
		}
		return d, nil
	}}, nil
}
