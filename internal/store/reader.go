package store

import "context"

// Reader is the read-only part of the Store: what the HTTP layers (API,
// dashboard) are given, so that every write goes through the rules that
// guard it (package project, the deployment lifecycle) and the compiler
// says so. Environment variables are left out: their values are read
// only through the rules that unseal and mask them.
type Reader interface {
	GetProject(ctx context.Context, name string) (Project, error)
	GetProjectByID(ctx context.Context, id string) (Project, error)
	ListProjects(ctx context.Context) ([]Project, error)

	GetEnvironment(ctx context.Context, projectID, name string) (Environment, error)
	GetEnvironmentByID(ctx context.Context, id string) (Environment, error)
	ListEnvironments(ctx context.Context, projectID string) ([]Environment, error)
	ListDomains(ctx context.Context, envID string) ([]Domain, error)

	GetDeployment(ctx context.Context, id string) (Deployment, error)
	ListDeployments(ctx context.Context, f DeploymentFilter) ([]Deployment, error)
	ListWakes(ctx context.Context, deploymentID string, limit int) ([]Wake, error)
	ListInstances(ctx context.Context, deploymentID string) ([]Instance, error)
	ListLogs(ctx context.Context, q LogQuery) ([]LogLine, error)
	LastExit(ctx context.Context, deploymentID string) (Exit, error)
	MetricPoints(ctx context.Context, projectID, deploymentID string, step, since int64) ([]MetricPoint, error)
	ListPullRequests(ctx context.Context, projectID string) ([]PullRequest, error)

	CheckToken(ctx context.Context, secret string) (Token, error)
}

var _ Reader = (*Store)(nil)
