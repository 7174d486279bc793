package baseimage

import "fmt"

// BuildkitdConfig returns a buildkitd.toml that makes BuildKit resolve
// docker.io images (FROM golang:1.23 is docker.io/library/golang:1.23)
// through the registry at host ("127.0.0.1:7300"), spoken to over plain
// HTTP, where Seed put the stand-ins. Pulls of library/ images from that
// registry need no credentials. Workers are chosen by buildkitd's flags.
func BuildkitdConfig(host string) string {
	return fmt.Sprintf(`[registry."docker.io"]
  mirrors = [%[1]q]

[registry.%[1]q]
  http = true
`, host)
}
