package router_test

import (
	"strings"
	"testing"

	"github.com/slipwayhq/slipway/internal/router"
)

func TestCanonicalHost(t *testing.T) {
	tests := []struct {
		in   string
		want string // "" means invalid
	}{
		{"app.example.com", "app.example.com"},
		{"App.Example.COM", "app.example.com"},
		{"app.example.com:8080", "app.example.com"},
		{"app.example.com:", "app.example.com"},
		{"app.example.com.", "app.example.com"},
		{"APP.example.com.:443", "app.example.com"},
		{"localhost", "localhost"},
		{"my_host.example", "my_host.example"},
		{"127.0.0.1:80", "127.0.0.1"},
		{"[::1]", "[::1]"},
		{"[::1]:8080", "[::1]"},
		{"[FE80::1]", "[fe80::1]"},
		{"xn--bcher-kva.example", "xn--bcher-kva.example"},
		{strings.Repeat("a", 63) + ".com", strings.Repeat("a", 63) + ".com"},

		{"", ""},
		{".", ""},
		{":80", ""},
		{"app..example.com", ""},
		{".app.example.com", ""},
		{"app.example.com..", ""},
		{"app.example.com:80x", ""},
		{"app.example.com:123456", ""},
		{"app.example.com:80:80", ""},
		{"exa%mple.com", ""},
		{"user@app.example.com", ""},
		{"app example.com", ""},
		{"app/example.com", ""},
		{"ünïcode.example", ""},
		{"::1", ""},
		{"[::1", ""},
		{"[::1]x", ""},
		{"[::1]:x", ""},
		{"[]", ""},
		{"[1.2.3.4]", ""},
		{"[::g]", ""},
		{strings.Repeat("a", 64) + ".com", ""},
		{strings.Repeat("a.", 127) + "ab", ""}, // 255 bytes
	}
	for _, tt := range tests {
		got, ok := router.CanonicalHost(tt.in)
		if ok != (tt.want != "") || got != tt.want {
			t.Errorf("CanonicalHost(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.want != "")
		}
	}
}

func TestCanonicalHostAllocations(t *testing.T) {
	allocs := testing.AllocsPerRun(100, func() {
		router.CanonicalHost("d0123456789a.slipway.localhost:8080")
	})
	if allocs != 0 {
		t.Errorf("CanonicalHost of a lowercase host allocates %v times; want 0", allocs)
	}
}

func FuzzCanonicalHost(f *testing.F) {
	for _, s := range []string{"app.example.com", "App.Example.COM.:8080", "[::1]:80", "a..b", "", "x:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, ok := router.CanonicalHost(in)
		if !ok {
			if got != "" {
				t.Fatalf("CanonicalHost(%q) = %q, false; want empty", in, got)
			}
			return
		}
		if got == "" || got != strings.ToLower(got) || strings.HasSuffix(got, ".") {
			t.Fatalf("CanonicalHost(%q) = %q: not canonical", in, got)
		}
		if again, ok := router.CanonicalHost(got); !ok || again != got {
			t.Fatalf("CanonicalHost(%q) = %q, %v; want it unchanged", got, again, ok)
		}
	})
}
