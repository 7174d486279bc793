// Command sweep removes what Slipway servers left behind in data
// directories once they are gone: runc containers, mounts, network
// namespaces and buildkitd (serverproc.Sweep). bench/run.sh calls it on
// exit, so an interrupted benchmark leaves nothing running.
//
//	sweep DIR...
package main

import (
	"fmt"
	"os"

	"github.com/slipwayhq/slipway/test/fault/serverproc"
)

func main() {
	code := 0
	for _, dir := range os.Args[1:] {
		if err := serverproc.Sweep(dir); err != nil {
			fmt.Fprintf(os.Stderr, "sweep %s: %v\n", dir, err)
			code = 1
		}
	}
	os.Exit(code)
}
