package deploy

import (
	"testing"
	"time"

	"github.com/slipwayhq/slipway/internal/store"
)

func TestSummary(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	later := t0.Add(time.Minute)
	for _, c := range []struct {
		name string
		d    store.Deployment
		want string
	}{
		{"pending", store.Deployment{Status: "PENDING"}, SummaryBuilding},
		{"initializing", store.Deployment{Status: "INITIALIZING"}, SummaryBuilding},
		{"building", store.Deployment{Status: "BUILDING"}, SummaryBuilding},
		{"deploying", store.Deployment{Status: "DEPLOYING"}, SummaryBuilding},
		{"running", store.Deployment{Status: "RUNNING", DeployEndedAt: t0}, SummarySuccessful},
		{"failed", store.Deployment{Status: "FAILED", DeployEndedAt: t0, FinishedAt: t0}, SummaryFailed},
		{"stopped after running", store.Deployment{Status: "STOPPED", DeployEndedAt: t0, FinishedAt: later}, SummarySuccessful},
		{"stopped while deploying", store.Deployment{Status: "STOPPED", DeployEndedAt: t0, FinishedAt: t0}, SummaryFailed},
		{"stopped while building", store.Deployment{Status: "STOPPED", BuildEndedAt: t0, FinishedAt: t0}, SummaryFailed},
		{"stopped while queued", store.Deployment{Status: "STOPPED", FinishedAt: t0}, SummaryFailed},
	} {
		if got := Summary(c.d); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}
