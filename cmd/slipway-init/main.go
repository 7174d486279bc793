// Command slipway-init is the init of Slipway's microVM instances (see
// package guest). Build it static (CGO_ENABLED=0) and put it beside the
// slipway binary, where the microvm driver looks for it.
package main

import (
	"fmt"
	"os"

	"github.com/slipwayhq/slipway/internal/runtime/microvm/guest"
)

func main() {
	if !guest.IsInit() {
		fmt.Fprintln(os.Stderr, "slipway-init runs as the first process of a Slipway microVM, not by hand")
		os.Exit(2)
	}
	guest.Main()
}
