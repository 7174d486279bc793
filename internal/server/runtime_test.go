package server

import (
	"errors"
	"strings"
	"testing"

	"github.com/slipwayhq/slipway/internal/project"
)

// --runtime is checked before the server starts: kubernetes needs a
// registry address, and a binary built with the nokubernetes tag refuses it
// with a message that says how to get the driver. scripts/test.sh runs this
// test in both builds.
func TestValidateRuntime(t *testing.T) {
	c := Config{Sandbox: project.SandboxRunc, Runtime: RuntimeKubernetes, RegistryURL: "http://10.0.0.5:7300"}
	err := c.validate()
	if kubernetesBuilt {
		if err != nil {
			t.Fatalf("validate with the kubernetes driver built: %v", err)
		}
		c.RegistryURL = ""
		if err := c.validate(); err == nil || !strings.Contains(err.Error(), "--registry-url") {
			t.Fatalf("validate without --registry-url = %v, want an error naming the flag", err)
		}
	} else if !errors.Is(err, errNoKubernetes) || !strings.Contains(err.Error(), "go build") {
		t.Fatalf("validate in a nokubernetes build = %v, want %v", err, errNoKubernetes)
	}
	c.Runtime = "nomad"
	if err := c.validate(); err == nil || !strings.Contains(err.Error(), "want local or kubernetes") {
		t.Fatalf("validate --runtime nomad = %v", err)
	}
	c.Runtime = RuntimeLocal
	if err := c.validate(); err != nil {
		t.Fatalf("validate --runtime local: %v", err)
	}
}
