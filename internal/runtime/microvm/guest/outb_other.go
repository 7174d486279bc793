//go:build !amd64

package guest

import "errors"

// debugExit is for x86's I/O ports only.
func debugExit() error { return errors.New("no isa-debug-exit on this architecture") }
