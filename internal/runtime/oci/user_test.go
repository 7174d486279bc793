package oci

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestResolveUser(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\n# comment\nnode:x:1000:1000::/home/node:/bin/sh\nweb:x:33:33:www:/var/www:/bin/false\n"), 0o644)
	os.WriteFile(filepath.Join(root, "etc/group"), []byte("root:x:0:\nnode:x:1000:\nwww-data:x:33:\naudio:x:29:node,web\nstaff:x:50:node\n"), 0o644)
	for _, tc := range []struct {
		spec string
		want User
		err  bool
	}{
		{"", User{0, 0, nil, "/root"}, false},
		{"node", User{1000, 1000, []uint32{29, 50}, "/home/node"}, false},
		{"1000", User{1000, 1000, []uint32{29, 50}, "/home/node"}, false},
		{"web:staff", User{33, 50, nil, "/var/www"}, false},
		{"4242", User{4242, 0, nil, "/"}, false},
		{"4242:4343", User{4242, 4343, nil, "/"}, false},
		{"ghost", User{}, true},
		{"node:ghosts", User{}, true},
	} {
		t.Run(tc.spec, func(t *testing.T) {
			got, err := ResolveUser(root, tc.spec)
			if tc.err {
				if err == nil {
					t.Errorf("ResolveUser(%q) = %+v, want an error", tc.spec, got)
				}
				return
			}
			if err != nil || got.UID != tc.want.UID || got.GID != tc.want.GID || !slices.Equal(got.Groups, tc.want.Groups) || got.Home != tc.want.Home {
				t.Errorf("ResolveUser(%q) = %+v, %v, want %+v", tc.spec, got, err, tc.want)
			}
		})
	}
	t.Run("no /etc", func(t *testing.T) {
		got, err := ResolveUser(t.TempDir(), "")
		if err != nil || got.UID != 0 || got.Home != "/" {
			t.Errorf("ResolveUser without /etc = %+v, %v", got, err)
		}
	})
	t.Run("passwd is a symlink out of the image", func(t *testing.T) {
		r := t.TempDir()
		os.MkdirAll(filepath.Join(r, "etc"), 0o755)
		os.Symlink(filepath.Join(root, "etc/passwd"), filepath.Join(r, "etc/passwd"))
		if _, err := ResolveUser(r, "node"); err == nil {
			t.Errorf("ResolveUser read a passwd file outside the image")
		}
	})
}
