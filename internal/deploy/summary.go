package deploy

import "github.com/slipwayhq/slipway/internal/store"

// The three words that sum a deployment up for people used to Phemeral's
// vocabulary, shown beside the seven statuses (never instead of them).
const (
	// SummaryBuilding: PENDING, INITIALIZING, BUILDING or DEPLOYING — on
	// its way, not serving yet.
	SummaryBuilding = "building"
	// SummarySuccessful: RUNNING (asleep while idle included), or STOPPED
	// after it had been RUNNING (stopped by a user or retired later).
	SummarySuccessful = "successful"
	// SummaryFailed: FAILED, or STOPPED before it was ever RUNNING (a
	// build or deploy cancelled by a user): it never served.
	SummaryFailed = "failed"
)

// Summary returns d's summary: SummaryBuilding, SummarySuccessful or
// SummaryFailed.
func Summary(d store.Deployment) string {
	switch Status(d.Status) {
	case Running:
		return SummarySuccessful
	case Failed:
		return SummaryFailed
	case Stopped:
		if ranBeforeStopping(d) {
			return SummarySuccessful
		}
		return SummaryFailed
	}
	return SummaryBuilding
}

// ranBeforeStopping reports whether a STOPPED deployment had been RUNNING.
// The move DEPLOYING → RUNNING ends the deploy phase; a stop while
// DEPLOYING ends the phase and the deployment in one transition, at the
// same instant (transition), so the deployment ran exactly when its deploy
// phase ended before it finished.
func ranBeforeStopping(d store.Deployment) bool {
	return !d.DeployEndedAt.IsZero() && d.DeployEndedAt.Before(d.FinishedAt)
}
