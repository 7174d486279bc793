package oci

import (
	"slices"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestEnv(t *testing.T) {
	for _, tc := range []struct {
		name        string
		image, spec []string
		want        []string
	}{
		{
			name:  "spec overrides image, PORT overrides both",
			image: []string{"PATH=/bin", "A=image", "PORT=1"},
			spec:  []string{"A=spec", "B=x=y", "PORT=2"},
			want:  []string{"PATH=/bin", "A=spec", "PORT=3000", "B=x=y", "HOSTNAME=host", "HOME=/home/u"},
		},
		{
			name: "defaults",
			want: []string{"PORT=3000", "PATH=" + defaultPath, "HOSTNAME=host", "HOME=/home/u"},
		},
		{
			name:  "set values are kept",
			image: []string{"HOME=/data", "HOSTNAME=mine"},
			want:  []string{"HOME=/data", "HOSTNAME=mine", "PORT=3000", "PATH=" + defaultPath},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Env(tc.image, tc.spec, 3000, "host", "/home/u")
			if !slices.Equal(got, tc.want) {
				t.Errorf("Env = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestArgs(t *testing.T) {
	img := v1.Config{Entrypoint: []string{"/bin/sh", "-c"}, Cmd: []string{"serve"}}
	for _, tc := range []struct {
		name    string
		command []string
		cfg     v1.Config
		want    []string
	}{
		{"image", nil, img, []string{"/bin/sh", "-c", "serve"}},
		{"command replaces both", []string{"node", "app.js"}, img, []string{"node", "app.js"}},
		{"cmd only", nil, v1.Config{Cmd: []string{"python3", "main.py"}}, []string{"python3", "main.py"}},
		{"none", nil, v1.Config{}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Args(tc.command, tc.cfg)
			if tc.want == nil {
				if err == nil {
					t.Errorf("Args = %q, want an error", got)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("Args = %q, %v, want %q", got, err, tc.want)
			}
		})
	}
}
