package dns

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
)

// Upstreams returns the nameservers of a resolv.conf(5) file as IP:PORT
// addresses on port 53, in the file's order. Comments ('#' or ';', whole
// lines or the rest of a line), options, search and domain lines are
// ignored, and so is a nameserver that is not an IP address. Loopback
// addresses are kept (127.0.0.53 is systemd-resolved). A file without
// nameservers gives none, and no error.
func Upstreams(resolvConf string) ([]string, error) {
	f, err := os.Open(resolvConf)
	if err != nil {
		return nil, fmt.Errorf("reading resolv.conf: %w", err)
	}
	defer f.Close()
	var ups []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexAny(line, "#;"); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) < 2 || fields[0] != "nameserver" {
			continue
		}
		addr, err := netip.ParseAddr(fields[1])
		if err != nil {
			continue
		}
		ups = append(ups, net.JoinHostPort(addr.String(), "53"))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", resolvConf, err)
	}
	return ups, nil
}
