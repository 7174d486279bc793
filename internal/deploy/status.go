package deploy

import "fmt"

// Status is a deployment's place in its lifecycle (DESIGN.md, "Deployment
// statuses").
type Status string

// The seven statuses, in lifecycle order.
const (
	Pending      Status = "PENDING"
	Initializing Status = "INITIALIZING"
	Building     Status = "BUILDING"
	Deploying    Status = "DEPLOYING"
	Running      Status = "RUNNING"
	Failed       Status = "FAILED"
	Stopped      Status = "STOPPED"
)

// transitions lists the legal moves. FAILED and STOPPED are terminal.
var transitions = map[Status][]Status{
	Pending:      {Initializing, Failed, Stopped},
	Initializing: {Building, Failed, Stopped},
	Building:     {Deploying, Failed, Stopped},
	Deploying:    {Running, Failed, Stopped},
	Running:      {Stopped},
}

// CanMoveTo reports whether a deployment in status s may move to t.
func (s Status) CanMoveTo(t Status) bool {
	for _, next := range transitions[s] {
		if next == t {
			return true
		}
	}
	return false
}

// Terminal reports whether s is final.
func (s Status) Terminal() bool { return s == Failed || s == Stopped }

// Valid reports whether s is one of the seven statuses.
func (s Status) Valid() bool {
	switch s {
	case Pending, Initializing, Building, Deploying, Running, Failed, Stopped:
		return true
	}
	return false
}

// IllegalTransitionError reports an attempt to move along an edge that the
// lifecycle does not have.
type IllegalTransitionError struct {
	From, To Status
}

func (e *IllegalTransitionError) Error() string {
	return fmt.Sprintf("illegal deployment transition %s → %s", e.From, e.To)
}
