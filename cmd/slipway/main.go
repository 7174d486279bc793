// Command slipway is Slipway's server and command line in one binary.
package main

import (
	"os"

	"github.com/slipwayhq/slipway/internal/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:])) }
