package server

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipwayhq/slipway/internal/store"
)

// TestAdminTokenNotPrinted checks that the first start says where the
// admin token is and never prints the token itself (the server's output
// is appended to a log file by scripts/run.sh).
func TestAdminTokenNotPrinted(t *testing.T) {
	for name, bootstrap := range map[string]string{"given": "sw_given_by_the_operator", "generated": ""} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			st, err := store.Open(filepath.Join(dir, "slipway.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			var out bytes.Buffer
			if err := bootstrapToken(context.Background(), st, Config{DataDir: dir, BootstrapToken: bootstrap, Out: &out}); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(filepath.Join(dir, "admin-token"))
			if err != nil {
				t.Fatal(err)
			}
			token := strings.TrimSpace(string(b))
			if _, err := st.CheckToken(context.Background(), token); err != nil || (bootstrap != "" && token != bootstrap) {
				t.Errorf("saved token %q does not authenticate (%v) or is not the one given", token, err)
			}
			if strings.Contains(out.String(), token) {
				t.Errorf("the admin token was printed:\n%s", out.String())
			}
			if !strings.Contains(out.String(), filepath.Join(dir, "admin-token")) {
				t.Errorf("the banner does not say where the token is:\n%s", out.String())
			}
		})
	}
}
