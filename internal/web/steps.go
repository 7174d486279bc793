package web

import (
	"context"
	"regexp"
	"strconv"
	"strings"

	"github.com/slipwayhq/slipway/internal/store"
)

// buildStep is one step of a build (a BuildKit vertex: an instruction,
// a pull, the export) as its log lines tell: "#N name" when it starts,
// then "#N DONE 1.2s", "#N CACHED" or "#N ERROR: …". steps.js keeps the
// list up to date from the streamed log; this is the list at page load.
type buildStep struct {
	Num   int
	Name  string
	State string // "running", "done", "cached", "failed"
	Took  string // "1.2s", for done steps
}

var stepLine = regexp.MustCompile(`^#(\d+) (.*)$`)

// maxStepLines bounds the build log lines read for the steps.
const maxStepLines = 5000

// stepList is a build's steps in the order they started.
type stepList []buildStep

func (h *handler) buildSteps(ctx context.Context, id string) (stepList, error) {
	lines, err := h.store.ListLogs(ctx, store.LogQuery{DeploymentID: id, Kind: store.LogBuild, Limit: maxStepLines})
	if err != nil {
		return nil, err
	}
	return parseSteps(lines), nil
}

// parseSteps reads the steps from build log lines.
func parseSteps(lines []store.LogLine) stepList {
	var steps stepList
	index := map[int]int{}
	for _, l := range lines {
		if l.Stream == "slipway" {
			continue
		}
		m := stepLine.FindStringSubmatch(l.Text)
		if m == nil {
			continue
		}
		num, err := strconv.Atoi(m[1])
		if err != nil {
			continue
		}
		i, ok := index[num]
		if !ok {
			index[num] = len(steps)
			steps = append(steps, buildStep{Num: num, Name: m[2], State: "running"})
			continue
		}
		s := &steps[i]
		switch rest := m[2]; {
		case strings.HasPrefix(rest, "DONE"):
			s.State, s.Took = "done", strings.TrimSpace(strings.TrimPrefix(rest, "DONE"))
		case strings.HasPrefix(rest, "CACHED"):
			s.State = "cached"
		case strings.HasPrefix(rest, "ERROR"), strings.HasPrefix(rest, "CANCELED"):
			s.State = "failed"
		}
	}
	return steps
}

// Done counts the finished steps.
func (l stepList) Done() int {
	n := 0
	for _, s := range l {
		if s.State == "done" || s.State == "cached" {
			n++
		}
	}
	return n
}
