package main

// The plain-process baseline of an app that has no native build here (the
// Python app): its deployed image's filesystem unpacked into a plain
// directory, and its start command run as an ordinary host process
// chrooted into it — no namespaces, no cgroups, no overlay, no mounts.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/slipwayhq/slipway/bench/internal/stats"
	"github.com/slipwayhq/slipway/internal/runtime/oci"
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
	rootfs := filepath.Join(work, tag+"-rootfs")
	t0 := time.Now()
	cfg, err := unpackImage(ctx, image, token, rootfs)
	if err != nil {
		return nil, err
	}
	unpacked := time.Since(t0)
	argv, err := oci.Args(startCommandArgs(startCommand), cfg)
	if err != nil {
		return nil, err
	}
	cred, home, err := imageUser(rootfs, cfg.User)
	if err != nil {
		return nil, err
	}
	// The environment the runc driver would give the app, PORT aside.
	extra := []string{"SLIPWAY_DEPLOYMENT_ID=wakebench"}
	env := oci.Env(cfg.Env, extra, 0, "wakebench", home)
	if !strings.Contains(argv[0], "/") {
		p, err := lookPathIn(rootfs, envValue(env, "PATH"), argv[0])
		if err != nil {
			return nil, err
		}
		argv[0] = p
	}
	dir := cfg.WorkingDir
	if dir == "" {
		dir = "/"
	}
	logs := filepath.Join(work, tag+"-plain-logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return nil, err
	}
	se.Note = fmt.Sprintf("the image was pulled and unpacked into a plain directory in %s ms before the first sample (not counted); command %q, working directory %s",
		stats.MS(unpacked), argv, dir)
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
		cmd := &exec.Cmd{
			Path:   argv[0],
			Args:   argv,
			Env:    oci.Env(cfg.Env, extra, port, "wakebench", home),
			Dir:    dir,
			Stdout: out,
			Stderr: errf,
			SysProcAttr: &syscall.SysProcAttr{
				Chroot:     rootfs,
				Credential: cred,
			},
		}
		d, err := timeStart(cmd, "127.0.0.1:"+strconv.Itoa(port), time.Millisecond, 30*time.Second)
		out.Close()
		errf.Close()
		if err != nil {
			return 0, fmt.Errorf("sample %d: %w; stderr: %s", i, err, tail(errPath, 300))
		}
		return d, nil
	}}, nil
}

// startCommandArgs is the command line the control plane gives the driver
// for a deployment's start command (nil: the image's own).
func startCommandArgs(cmd string) []string {
	if strings.TrimSpace(cmd) == "" {
		return nil
	}
	return []string{"/bin/sh", "-c", cmd}
}

// envValue returns key's value in env.
func envValue(env []string, key string) string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, key+"="); ok {
			return v
		}
	}
	return ""
}

// lookPathIn finds an executable named file in the directories of pathList
// as seen from inside rootfs.
func lookPathIn(rootfs, pathList, file string) (string, error) {
	root, err := os.OpenRoot(rootfs)
	if err != nil {
		return "", err
	}
	defer root.Close()
	for _, dir := range filepath.SplitList(pathList) {
		if !path.IsAbs(dir) {
			continue
		}
		p := path.Join(dir, file)
		if fi, err := root.Stat(strings.TrimPrefix(p, "/")); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in the image's PATH (%s)", file, pathList)
}

// imageUser is the credential to run the image's command with (nil for
// root) and its home directory, resolved as the drivers resolve them.
func imageUser(rootfs, spec string) (*syscall.Credential, string, error) {
	u, err := oci.ResolveUser(rootfs, spec)
	if err != nil {
		return nil, "", err
	}
	if u.UID == 0 && u.GID == 0 && len(u.Groups) == 0 {
		return nil, u.Home, nil
	}
	return &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: append([]uint32{}, u.Groups...)}, u.Home, nil
}

// unpackImage pulls ref (authenticating as the server's registry expects)
// and writes its flattened filesystem into dir as the drivers unpack
// images (oci.Unpack), keeping ownership, modes and modification times
// (Python checks its bytecode caches against them).
func unpackImage(ctx context.Context, ref, token, dir string) (v1.Config, error) {
	img, err := oci.Pull(ctx, ref, remote.WithAuth(&authn.Basic{Username: "slipway", Password: token}))
	if err != nil {
		return v1.Config{}, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return v1.Config{}, fmt.Errorf("reading the config of image %s: %w", ref, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return v1.Config{}, err
	}
	if err := oci.Unpack(ctx, img, dir); err != nil {
		return v1.Config{}, fmt.Errorf("unpacking image %s: %w", ref, err)
	}
	return cf.Config, nil
}

// tail returns the last n bytes of a file, on one line.
func tail(p string, n int) string {
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
