package runc

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/slipwayhq/slipway/internal/runtime"
)

// ListeningPorts reports the TCP ports something listens on inside the
// instance's network namespace, read from the instance process's view of
// /proc/net/tcp and tcp6. The control plane uses it to tell a user whose
// app never answered on $PORT which port it chose instead.
func (d *Driver) ListeningPorts(ctx context.Context, h *runtime.Handle) ([]int, error) {
	st, err := d.Inspect(ctx, h)
	if err != nil {
		return nil, err
	}
	if !st.Running || st.PID <= 0 {
		return nil, fmt.Errorf("instance %s is not running", h.ID)
	}
	seen := map[int]bool{}
	for _, f := range []string{"tcp", "tcp6"} {
		ports, err := listening(fmt.Sprintf("/proc/%d/net/%s", st.PID, f))
		if err != nil {
			continue
		}
		for _, p := range ports {
			seen[p] = true
		}
	}
	var out []int
	for p := range seen {
		out = append(out, p)
	}
	sort.Ints(out)
	return out, nil
}

// listening parses a /proc/net/tcp table for sockets in state LISTEN (0A).
func listening(path string) ([]int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []int
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || fields[3] != "0A" {
			continue
		}
		local := fields[1]
		i := strings.LastIndexByte(local, ':')
		if i < 0 {
			continue
		}
		port, err := strconv.ParseUint(local[i+1:], 16, 16)
		if err == nil {
			out = append(out, int(port))
		}
	}
	return out, sc.Err()
}
