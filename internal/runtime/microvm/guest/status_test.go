package guest

import (
	"slices"
	"testing"
)

func TestParseStatusAndSteps(t *testing.T) {
	out := []byte("step ports\nstep network\nstep root\nstep exec\nstarted\nexit 3\n")
	if got, want := ParseSteps(out), []string{"ports", "network", "root", "exec"}; !slices.Equal(got, want) {
		t.Errorf("ParseSteps = %q, want %q", got, want)
	}
	if started, exited, code := ParseStatus(out); !started || !exited || code != 3 {
		t.Errorf("ParseStatus = %v %v %d, want started, exited 3", started, exited, code)
	}
	if got := ParseSteps([]byte("step\nstarted\n")); len(got) != 0 {
		t.Errorf("ParseSteps of no step = %q", got)
	}
}
