package deploy

import (
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestParseImageRef(t *testing.T) {
	const reg = "127.0.0.1:8080"
	const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, tc := range []struct {
		ref  string
		want string // the reference pulled; "" for an error
		own  bool
		err  string // part of the error
	}{
		{ref: "web:v1", want: reg + "/web:v1", own: true},
		{ref: "web", want: reg + "/web:latest", own: true},
		{ref: "web/api:2", want: reg + "/web/api:2", own: true},
		{ref: "web@" + digest, want: reg + "/web@" + digest, own: true},
		{ref: "library/node:22", want: reg + "/library/node:22", own: true},
		{ref: reg + "/web:v1", want: reg + "/web:v1", own: true},
		{ref: "localhost:8080/web:v1", want: reg + "/web:v1", own: true},
		{ref: "ghcr.io/org/app:1", want: "ghcr.io/org/app:1"},
		{ref: "ghcr.io/org/app", want: "ghcr.io/org/app:latest"},
		{ref: "docker.io/library/nginx:1.27", want: "index.docker.io/library/nginx:1.27"},
		{ref: "127.0.0.1:5000/team/app:v1", want: "127.0.0.1:5000/team/app:v1"},
		{ref: "localhost:5000/app@" + digest, want: "localhost:5000/app@" + digest},
		{ref: "", err: "empty"},
		{ref: "  ", err: "empty"},
		{ref: "other:v1", err: "own repositories"},
		{ref: "webx:v1", err: "own repositories"},
		{ref: "web-production:v1", err: "own repositories"},
		{ref: reg + "/other:v1", err: "own repositories"},
		{ref: "https://ghcr.io/org/app:1", err: "without a scheme"},
		{ref: "Web:v1", err: "invalid image reference"},
		{ref: "web:bad tag", err: "invalid image reference"},
		{ref: "ghcr.io/org/app:bad tag", err: "invalid image reference"},
		{ref: "web@sha256:short", err: "invalid image reference"},
	} {
		got, err := ParseImageRef("web", tc.ref, reg)
		if tc.want == "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseImageRef(%q) = %v, %v; want an error with %q", tc.ref, got.Ref, err, tc.err)
			} else if tc.ref != "" && strings.TrimSpace(tc.ref) != "" && !strings.Contains(err.Error(), strings.TrimSpace(tc.ref)) {
				t.Errorf("ParseImageRef(%q): error %q does not name the reference", tc.ref, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseImageRef(%q): %v", tc.ref, err)
			continue
		}
		if got.Ref.Name() != tc.want || got.Own != tc.own {
			t.Errorf("ParseImageRef(%q) = %s own=%v; want %s own=%v", tc.ref, got.Ref.Name(), got.Own, tc.want, tc.own)
		}
	}
}

func TestImageCommand(t *testing.T) {
	for _, tc := range []struct {
		ep, cmd []string
		want    string
	}{
		{[]string{"/app"}, nil, "/app"},
		{nil, []string{"node", "server.js"}, "node server.js"},
		{[]string{"/bin/sh", "-c"}, []string{"exec app --port $PORT"}, "/bin/sh -c 'exec app --port $PORT'"},
		{nil, []string{"echo", "it's"}, `echo 'it'\''s'`},
		{nil, nil, ""},
	} {
		got := imageCommand(&v1.ConfigFile{Config: v1.Config{Entrypoint: tc.ep, Cmd: tc.cmd}})
		if got != tc.want {
			t.Errorf("imageCommand(%q, %q) = %q, want %q", tc.ep, tc.cmd, got, tc.want)
		}
	}
}
