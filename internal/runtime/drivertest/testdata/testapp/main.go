// Command testapp is the conformance suite's test app as a process; see
// package testapp.
package main

import "github.com/slipwayhq/slipway/internal/runtime/drivertest/testapp"

func main() { testapp.Main() }
