package netns

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
)

// stateFile is the name of the leases file in Config.StateDir.
const stateFile = "leases.json"

// state is what the network keeps on disk: the prefix it chose, the
// leases, and each group's egress. It is written before the kernel is
// changed (for Attach and SetEgress), so that after a crash the kernel
// never holds an address or a policy that the next start cannot find.
type state struct {
	Prefix netip.Prefix `json:"prefix"`
	// Last is the address leased last: the next lease starts after it,
	// so a freed address is not handed out again at once (a stale
	// neighbour or conntrack entry elsewhere then has time to expire).
	Last   netip.Addr        `json:"last,omitzero"`
	Leases map[string]lease  `json:"leases"`
	Egress map[string]Egress `json:"egress,omitempty"`
}

type lease struct {
	Group string     `json:"group"`
	Addr  netip.Addr `json:"addr"`
	Veth  string     `json:"veth"`
}

func loadState(path string) (*state, error) {
	st := &state{Leases: map[string]lease{}, Egress: map[string]Egress{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && len(b) == 0) {
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading leases: %w", err)
	}
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("reading leases %s: %w", path, err)
	}
	if st.Leases == nil {
		st.Leases = map[string]lease{}
	}
	if st.Egress == nil {
		st.Egress = map[string]Egress{}
	}
	return st, nil
}

// save writes st atomically (a temporary file renamed over the old one).
// It does not fsync: the kernel state it describes does not survive a
// reboot either, and a rename is atomic against a crash of the process.
func (st *state) save(path string) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("writing leases: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing leases: %w", err)
	}
	return nil
}

func statePath(dir string) string { return filepath.Join(dir, stateFile) }
