package notify

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/slipwayhq/slipway/internal/store"
)

// Events a webhook can subscribe to.
const (
	// DeploymentSucceeded: a deployment passed its health check and is
	// RUNNING (live at its URLs).
	DeploymentSucceeded = "deployment.succeeded"
	// DeploymentFailed: a deployment is FAILED (build, start, or not
	// healthy within its window); the reason says which.
	DeploymentFailed = "deployment.failed"
	// AppCrashed: a running app's process exited; it is being restarted.
	AppCrashed = "app.crashed"
	// AppUnhealthy: a running app failed its health checks in a row; it
	// is being restarted.
	AppUnhealthy = "app.unhealthy"
	// AppSlept: an idle app was scaled to zero.
	AppSlept = "app.slept"
	// AppWoke: a request woke an app from zero (or failed to).
	AppWoke = "app.woke"
	// Test: sent on request (POST …/notifications/{id}/test), whatever the
	// webhook subscribes to.
	Test = "test"
)

// Events lists the events a webhook may subscribe to.
var Events = []string{DeploymentSucceeded, DeploymentFailed, AppCrashed, AppUnhealthy, AppSlept, AppWoke}

// DefaultEvents are those of a webhook created without a list.
var DefaultEvents = []string{DeploymentSucceeded, DeploymentFailed, AppCrashed, AppUnhealthy}

// Formats of a webhook's body.
const (
	// FormatJSON is a Payload.
	FormatJSON = "json"
	// FormatSlack is a Slack incoming-webhook message ({"text": …}),
	// which Mattermost, Rocket.Chat, Discord (at …/slack) and others take
	// too.
	FormatSlack = "slack"
)

// Request headers of a delivery.
const (
	// SignatureHeader carries "sha256=" and the hex HMAC-SHA256 of the
	// exact request body under the webhook's secret, as GitHub's
	// X-Hub-Signature-256 does. Verify it over the raw bytes received,
	// before parsing them, with a constant-time comparison.
	SignatureHeader = "X-Slipway-Signature-256"
	// EventHeader names the event.
	EventHeader = "X-Slipway-Event"
	// DeliveryHeader is the delivery's id, the same on every retry of
	// it: deliveries are at least once, so a receiver drops ids it has
	// seen.
	DeliveryHeader = "X-Slipway-Delivery"
)

// Sign returns the value of SignatureHeader for body under secret.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify reports whether signature (SignatureHeader's value) is body's
// under secret.
func Verify(secret, body []byte, signature string) bool {
	return hmac.Equal([]byte(Sign(secret, body)), []byte(signature))
}

// Payload is the body of a delivery in the JSON format.
type Payload struct {
	// ID is the delivery's id (DeliveryHeader).
	ID    string `json:"id"`
	Event string `json:"event"`
	// Time is when the event happened.
	Time        time.Time   `json:"time"`
	Project     string      `json:"project"`
	Environment string      `json:"environment,omitempty"`
	Deployment  *Deployment `json:"deployment,omitempty"`
	// Message says what happened, in a sentence.
	Message string `json:"message"`
	// Reason says why, for deployment.failed, app.crashed,
	// app.unhealthy and a failed app.woke.
	Reason string `json:"reason,omitempty"`
	// WakeMS is how long app.woke took, in milliseconds.
	WakeMS int64 `json:"wakeMs,omitempty"`
}

// Deployment is what a payload says about the deployment concerned.
type Deployment struct {
	ID            string `json:"id"`
	Status        string `json:"status"`
	URL           string `json:"url,omitempty"`
	Trigger       string `json:"trigger,omitempty"`
	Branch        string `json:"branch,omitempty"`
	Commit        string `json:"commit,omitempty"`
	CommitMessage string `json:"commitMessage,omitempty"`
	Author        string `json:"author,omitempty"`
	FailureReason string `json:"failureReason,omitempty"`
}

// slackMessage is the body of a delivery in the Slack format.
type slackMessage struct {
	Text string `json:"text"`
}

// body encodes p in format.
func body(format string, p Payload) ([]byte, error) {
	if format != FormatSlack {
		return json.Marshal(p)
	}
	return json.Marshal(slackMessage{Text: slackText(p)})
}

var slackEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// slackText is p's message in Slack's mrkdwn: escaped, with a mark for
// the event and the deployment's URL as a link.
func slackText(p Payload) string {
	mark := map[string]string{
		DeploymentSucceeded: ":white_check_mark:", DeploymentFailed: ":x:", AppCrashed: ":boom:",
		AppUnhealthy: ":warning:", AppSlept: ":zzz:", AppWoke: ":sunrise:", Test: ":wave:",
	}[p.Event]
	text := slackEscaper.Replace(p.Message)
	if p.Deployment != nil && p.Deployment.URL != "" {
		text += " <" + slackEscaper.Replace(p.Deployment.URL) + "|open>"
	}
	return strings.TrimSpace(mark + " " + text)
}

// payloadFor is the payload of event about d, without its delivery id.
func payloadFor(event string, d store.Deployment, url string, at time.Time) Payload {
	p := Payload{Event: event, Time: at.UTC(), Project: d.ProjectName, Environment: d.EnvironmentName,
		Deployment: &Deployment{ID: d.ID, Status: d.Status, URL: url, Trigger: d.Trigger, Branch: d.Branch,
			Commit: d.CommitSHA, CommitMessage: firstLine(d.CommitMessage), Author: d.CommitAuthor, FailureReason: d.FailureReason}}
	what := fmt.Sprintf("deployment %s (%s", d.ID, d.EnvironmentName)
	if d.CommitSHA != "" {
		what += ", " + short(d.CommitSHA)
		if d.Branch != "" {
			what = fmt.Sprintf("deployment %s (%s, %s@%s", d.ID, d.EnvironmentName, d.Branch, short(d.CommitSHA))
		}
	}
	what += ")"
	switch event {
	case DeploymentSucceeded:
		p.Message = fmt.Sprintf("%s: %s is live", d.ProjectName, what)
		if url != "" {
			p.Message += " at " + url
		}
	case DeploymentFailed:
		p.Reason = d.FailureReason
		p.Message = fmt.Sprintf("%s: %s failed: %s", d.ProjectName, what, d.FailureReason)
	case AppCrashed:
		p.Message = fmt.Sprintf("%s: the app of %s crashed", d.ProjectName, what)
	case AppUnhealthy:
		p.Message = fmt.Sprintf("%s: the app of %s is unhealthy", d.ProjectName, what)
	case AppSlept:
		p.Message = fmt.Sprintf("%s: the app of %s was scaled to zero after its idle timeout", d.ProjectName, what)
	case AppWoke:
		p.Message = fmt.Sprintf("%s: the app of %s woke", d.ProjectName, what)
	}
	return p
}

func short(sha string) string {
	if len(sha) > 7 {
		return sha[:7]
	}
	return sha
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return strings.TrimSpace(s)
}
