// Command pause is the pod sandbox process of ktest's clusters: it holds
// the pod's namespaces and waits for a signal, as Kubernetes' own pause
// image does. The cluster builds it into an image, since there is no
// registry to pull that one from.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGINT, syscall.SIGTERM)
	<-c
}
