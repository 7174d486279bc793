package appstart

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/slipwayhq/slipway/internal/runtime/oci"
)

// Chroot is an app without a native build here (a Python app): its
// deployed image's filesystem unpacked into a plain directory, and its
// start command run as an ordinary host process chrooted into it, with
// the image config's Env, WorkingDir and User — no namespaces, no
// cgroups, no overlay, no mounts.
type Chroot struct {
	Rootfs string
	Argv   []string // the command line, its program resolved in the image's PATH
	Dir    string   // the working directory
	// Unpacked is how long pulling and unpacking the image took.
	Unpacked time.Duration

	cfgEnv []string
	extra  []string
	id     string
	home   string
	cred   *syscall.Credential
}

// NewChroot pulls image from the server's registry (authenticating with
// token as the password) and unpacks it into rootfs. Its commands run
// startCommand as the control plane runs it (/bin/sh -c), or else the
// image's entrypoint and cmd; id names the instance in the environment
// (SLIPWAY_DEPLOYMENT_ID and the hostname variables the drivers set).
func NewChroot(ctx context.Context, image, token, rootfs, startCommand, id string) (*Chroot, error) {
	t0 := time.Now()
	cfg, err := unpackImage(ctx, image, token, rootfs)
	if err != nil {
		return nil, err
	}
	c := &Chroot{Rootfs: rootfs, Unpacked: time.Since(t0), cfgEnv: cfg.Env, id: id,
		extra: []string{"SLIPWAY_DEPLOYMENT_ID=" + id}}
	if c.Argv, err = oci.Args(StartCommandArgs(startCommand), cfg); err != nil {
		return nil, err
	}
	if c.cred, c.home, err = imageUser(rootfs, cfg.User); err != nil {
		return nil, err
	}
	if !strings.Contains(c.Argv[0], "/") {
		env := oci.Env(cfg.Env, c.extra, 0, id, c.home)
		p, err := lookPathIn(rootfs, envValue(env, "PATH"), c.Argv[0])
		if err != nil {
			return nil, err
		}
		c.Argv[0] = p
	}
	if c.Dir = cfg.WorkingDir; c.Dir == "" {
		c.Dir = "/"
	}
	return c, nil
}

// Command is the app's command with PORT set to port (the environment
// the drivers would give it, PORT aside).
func (c *Chroot) Command(port int, stdout, stderr io.Writer) *exec.Cmd {
	return &exec.Cmd{
		Path:   c.Argv[0],
		Args:   c.Argv,
		Env:    oci.Env(c.cfgEnv, c.extra, port, c.id, c.home),
		Dir:    c.Dir,
		Stdout: stdout,
		Stderr: stderr,
		SysProcAttr: &syscall.SysProcAttr{
			Chroot:     c.Rootfs,
			Credential: c.cred,
		},
	}
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
