package oci

import (
	"errors"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// defaultPath is PATH when neither the image nor the spec sets it.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Args returns the command line of an app's process: command if set, else
// the image's Entrypoint followed by its Cmd.
func Args(command []string, cfg v1.Config) ([]string, error) {
	args := command
	if len(args) == 0 {
		args = append(append([]string{}, cfg.Entrypoint...), cfg.Cmd...)
	}
	if len(args) == 0 || args[0] == "" {
		return nil, errors.New("no command: the spec has none and the image has neither entrypoint nor cmd")
	}
	return args, nil
}

// Env is the environment of an app's process: the image's environment,
// the spec's (which overrides it) and PORT (which overrides both), in the
// order in which keys first appear. PATH, HOSTNAME and HOME get defaults
// when nobody sets them.
func Env(image, spec []string, port int, hostname, home string) []string {
	var keys []string
	vals := make(map[string]string)
	set := func(kv string) {
		k, v, _ := strings.Cut(kv, "=")
		if k == "" {
			return
		}
		if _, ok := vals[k]; !ok {
			keys = append(keys, k)
		}
		vals[k] = v
	}
	for _, kv := range image {
		set(kv)
	}
	for _, kv := range spec {
		set(kv)
	}
	set("PORT=" + strconv.Itoa(port))
	for _, kv := range []string{"PATH=" + defaultPath, "HOSTNAME=" + hostname, "HOME=" + home} {
		if k, _, _ := strings.Cut(kv, "="); vals[k] == "" {
			set(kv)
		}
	}
	env := make([]string, len(keys))
	for i, k := range keys {
		env[i] = k + "=" + vals[k]
	}
	return env
}
