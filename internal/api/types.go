package api

import (
	"time"

	"github.com/slipwayhq/slipway/internal/store"
)

// The JSON documents of the API. docs/API.md describes them; a test keeps
// the two in step.

// Project is a project as the API shows it.
type Project struct {
	Name              string        `json:"name"`
	CreatedAt         time.Time     `json:"createdAt"`
	URL               string        `json:"url"`
	Environments      []Environment `json:"environments"`
	CurrentDeployment string        `json:"currentDeployment,omitempty"`
}

// Environment is one of a project's environments.
type Environment struct {
	Name              string `json:"name"`
	URL               string `json:"url"`
	CurrentDeployment string `json:"currentDeployment,omitempty"`
}

// Commit is the source metadata of a deployment.
type Commit struct {
	Branch  string `json:"branch,omitempty"`
	SHA     string `json:"sha,omitempty"`
	Message string `json:"message,omitempty"`
	Author  string `json:"author,omitempty"`
}

// Phase is the timing of one lifecycle phase. EndedAt is absent while the
// phase runs.
type Phase struct {
	Name       string     `json:"name"`
	StartedAt  time.Time  `json:"startedAt"`
	EndedAt    *time.Time `json:"endedAt,omitempty"`
	DurationMS int64      `json:"durationMs"`
}

// Deployment is a deployment with all its metadata.
type Deployment struct {
	ID                   string     `json:"id"`
	Project              string     `json:"project"`
	Environment          string     `json:"environment"`
	Status               string     `json:"status"`
	Summary              string     `json:"summary"` // building, successful or failed (deploy.Summary)
	Trigger              string     `json:"trigger"`
	Promote              bool       `json:"promote"`
	Current              bool       `json:"current"`
	URL                  string     `json:"url"`
	URLs                 []string   `json:"urls"`
	Commit               Commit     `json:"commit"`
	Dirty                bool       `json:"dirty"`            // uploaded with uncommitted changes
	Source               *Source    `json:"source,omitempty"` // a prebuilt image's reference and digest
	StartCommand         string     `json:"startCommand"`
	DetectedStartCommand string     `json:"detectedStartCommand"`
	Detected             *Detected  `json:"detected,omitempty"` // absent until INITIALIZING is over
	Builder              string     `json:"builder,omitempty"`
	Image                string     `json:"image,omitempty"`
	ImageDigest          string     `json:"imageDigest,omitempty"`
	FailureReason        string     `json:"failureReason,omitempty"`
	CreatedAt            time.Time  `json:"createdAt"`
	UpdatedAt            time.Time  `json:"updatedAt"`
	FinishedAt           *time.Time `json:"finishedAt,omitempty"`
	BuildDurationMS      int64      `json:"buildDurationMs"`
	Phases               []Phase    `json:"phases"`

	// What it runs with (see runtime.go).
	Sandbox         string     `json:"sandbox"` // runc, gvisor or microvm
	SettingsChanged bool       `json:"settingsChanged"`
	ChangedSettings []string   `json:"changedSettings,omitempty"`
	Health          string     `json:"health,omitempty"`
	Instances       []Instance `json:"instances,omitempty"`
	LastExit        *Exit      `json:"lastExit,omitempty"`
}

// Exit is how the most recent of a deployment's instances that ended
// ended: its exit code (128+N for a signal N, -1 if unknown) and whether
// the out-of-memory killer ended it (its memory limit was reached).
type Exit struct {
	Instance  string     `json:"instance"`
	Code      int        `json:"code"`
	OOMKilled bool       `json:"oomKilled"`
	At        *time.Time `json:"at,omitempty"`
}

// LogLine is one line of a build or runtime log. ID is the cursor.
type LogLine struct {
	ID       int64     `json:"id"`
	Time     time.Time `json:"time"`
	Stream   string    `json:"stream,omitempty"`
	Instance string    `json:"instance,omitempty"`
	Text     string    `json:"text"`
}

// LogPage is a page of log lines. Next is the cursor to pass to get the
// following page (0 when there is none).
type LogPage struct {
	Lines []LogLine `json:"lines"`
	Next  int64     `json:"next,omitempty"`
}

// CreateProjectRequest is the body of POST /api/v1/projects.
type CreateProjectRequest struct {
	Name string `json:"name"`
}

// ToLogLines converts stored log lines to the API's documents.
func ToLogLines(in []store.LogLine) []LogLine {
	out := make([]LogLine, 0, len(in))
	for _, l := range in {
		out = append(out, LogLine{ID: l.ID, Time: l.Time, Stream: l.Stream, Instance: l.InstanceID, Text: l.Text})
	}
	return out
}

func phases(d store.Deployment) []Phase {
	var out []Phase
	add := func(name string, start, end time.Time) {
		if start.IsZero() {
			return
		}
		p := Phase{Name: name, StartedAt: start}
		if !end.IsZero() {
			e := end
			p.EndedAt = &e
			p.DurationMS = end.Sub(start).Milliseconds()
		} else {
			p.DurationMS = time.Since(start).Milliseconds()
		}
		out = append(out, p)
	}
	add("INITIALIZING", d.InitializingAt, d.InitEndedAt)
	add("BUILDING", d.BuildingAt, d.BuildEndedAt)
	add("DEPLOYING", d.DeployingAt, d.DeployEndedAt)
	return out
}
