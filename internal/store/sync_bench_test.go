package store

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkCommit measures what durable commits cost, side by side: a
// deployment's status change (one small transaction, as the lifecycle
// makes a handful per deployment), one log line alone and a batch of 100
// log lines, with
// synchronous=NORMAL (commits synced only at checkpoints) and FULL (each
// commit synced), on the file system of the temporary directory.
//
//	go test -run '^$' -bench BenchmarkCommit -benchtime 2s ./internal/store/
func BenchmarkCommit(b *testing.B) {
	for _, sync := range []string{"NORMAL", "FULL"} {
		s, err := openSync(filepath.Join(b.TempDir(), "slipway.db"), sync)
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		p, _ := s.CreateProject(ctx, Project{Name: "web"})
		env, _ := s.GetEnvironment(ctx, p.ID, ProductionEnvironment)
		d, _ := s.CreateDeployment(ctx, Deployment{ProjectID: p.ID, EnvironmentID: env.ID, Status: "PENDING", Trigger: "upload"})
		b.Run("status/"+sync, func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				reason := fmt.Sprint(i)
				if _, err := s.UpdateDeployment(ctx, d.ID, "", DeploymentPatch{FailureReason: &reason}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("log1/"+sync, func(b *testing.B) {
			// One line per transaction, as a build log is written today.
			for b.Loop() {
				l := []LogLine{{DeploymentID: d.ID, Kind: LogBuild, Time: time.Now(), Text: "#5 [2/4] RUN go build"}}
				if err := s.AppendLogs(ctx, l); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("logs100/"+sync, func(b *testing.B) {
			lines := make([]LogLine, 100)
			for b.Loop() {
				for i := range lines {
					lines[i] = LogLine{DeploymentID: d.ID, Kind: LogRuntime, Stream: "stdout", Time: time.Now(), Text: "a line of an app's output"}
				}
				if err := s.AppendLogs(ctx, lines); err != nil {
					b.Fatal(err)
				}
			}
		})
		s.Close()
	}
}
