package serverproc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/slipwayhq/slipway/internal/api"
	"github.com/slipwayhq/slipway/internal/source"
)

// Client talks to a server's API and router.
type Client struct {
	API    string // base URL of the API
	Token  string
	Router string // host:port of the router
	// BaseDomain is the suffix of app hostnames. If empty,
	// "slipway.localhost".
	BaseDomain string
	HTTP       *http.Client // for the API
	Apps       *http.Client // for requests through the router
}

// NewClient returns a client with a one-minute timeout for API calls and a
// keep-alive pool for requests through the router.
func NewClient(apiURL, token, router string) *Client {
	return &Client{
		API: apiURL, Token: token, Router: router,
		HTTP: &http.Client{Timeout: time.Minute},
		Apps: &http.Client{Timeout: time.Minute, Transport: &http.Transport{
			MaxIdleConnsPerHost: 256, IdleConnTimeout: 30 * time.Second, DisableCompression: true,
		}},
	}
}

// APIError is a non-2xx answer of the API.
type APIError struct {
	Method, Path string
	Status       int
	Body         string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%s %s: %d %s", e.Method, e.Path, e.Status, e.Body)
}

// Do sends an authenticated request to the API and returns the status and
// body.
func (c *Client) Do(ctx context.Context, method, path string, body io.Reader, contentType string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.API+path, body)
	if err != nil {
		return 0, nil, err
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// JSON sends in (if not nil) as JSON and decodes a 2xx answer into out (if
// not nil). A non-2xx answer is an *APIError.
func (c *Client) JSON(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	code, b, err := c.Do(ctx, method, path, body, "application/json")
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if code/100 != 2 {
		return &APIError{Method: method, Path: path, Status: code, Body: string(b)}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: decoding %q: %w", method, path, b, err)
		}
	}
	return nil
}

// CreateProject creates a project.
func (c *Client) CreateProject(ctx context.Context, name string) error {
	return c.JSON(ctx, "POST", "/api/v1/projects", api.CreateProjectRequest{Name: name}, nil)
}

// Project returns a project.
func (c *Client) Project(ctx context.Context, name string) (api.Project, error) {
	var p api.Project
	err := c.JSON(ctx, "GET", "/api/v1/projects/"+name, nil, &p)
	return p, err
}

// Projects lists the projects.
func (c *Client) Projects(ctx context.Context) ([]api.Project, error) {
	var ps []api.Project
	err := c.JSON(ctx, "GET", "/api/v1/projects", nil, &ps)
	return ps, err
}

// Pack packs dir as the CLI does (gitignore and slipwayignore honoured).
func Pack(dir string) ([]byte, error) {
	var buf bytes.Buffer
	if err := source.Pack(dir, &buf); err != nil {
		return nil, fmt.Errorf("packing %s: %w", dir, err)
	}
	return buf.Bytes(), nil
}

// Upload packs dir and creates a deployment of it in project. query holds
// the optional metadata (branch, commit, ...).
func (c *Client) Upload(ctx context.Context, project, dir string, query url.Values) (api.Deployment, error) {
	tgz, err := Pack(dir)
	if err != nil {
		return api.Deployment{}, err
	}
	return c.UploadTarball(ctx, project, bytes.NewReader(tgz), query)
}

// UploadTarball creates a deployment from a gzip-compressed tar.
func (c *Client) UploadTarball(ctx context.Context, project string, tgz io.Reader, query url.Values) (api.Deployment, error) {
	path := "/api/v1/projects/" + project + "/deployments"
	if len(query) > 0 {
		path += "?" + query.Encode()
	}
	code, b, err := c.Do(ctx, "POST", path, tgz, "application/gzip")
	if err != nil {
		return api.Deployment{}, fmt.Errorf("uploading to %s: %w", project, err)
	}
	if code != http.StatusCreated {
		return api.Deployment{}, &APIError{Method: "POST", Path: path, Status: code, Body: string(b)}
	}
	var d api.Deployment
	if err := json.Unmarshal(b, &d); err != nil {
		return d, fmt.Errorf("decoding the created deployment: %w", err)
	}
	return d, nil
}

// Deployment returns a deployment.
func (c *Client) Deployment(ctx context.Context, id string) (api.Deployment, error) {
	var d api.Deployment
	err := c.JSON(ctx, "GET", "/api/v1/deployments/"+id, nil, &d)
	return d, err
}

// Deployments lists all of a project's deployments, newest first.
func (c *Client) Deployments(ctx context.Context, project string) ([]api.Deployment, error) {
	var all []api.Deployment
	before := ""
	for {
		path := "/api/v1/projects/" + project + "/deployments?limit=500"
		if before != "" {
			path += "&before=" + url.QueryEscape(before)
		}
		var page []api.Deployment
		if err := c.JSON(ctx, "GET", path, nil, &page); err != nil {
			return nil, err
		}
		all = append(all, page...)
		if len(page) < 500 {
			return all, nil
		}
		before = page[len(page)-1].CreatedAt.Format(time.RFC3339Nano)
	}
}

// Settled reports whether a status is RUNNING or terminal.
func Settled(status string) bool {
	switch status {
	case "RUNNING", "FAILED", "STOPPED":
		return true
	}
	return false
}

// WaitSettled polls a deployment until it is RUNNING, FAILED or STOPPED,
// or ctx ends. Transient errors (a server restarting) are retried.
func (c *Client) WaitSettled(ctx context.Context, id string) (api.Deployment, error) {
	var last error
	for {
		d, err := c.Deployment(ctx, id)
		if err == nil && Settled(d.Status) {
			return d, nil
		}
		if err != nil {
			last = err
		} else {
			last = fmt.Errorf("deployment %s is still %s", id, d.Status)
		}
		select {
		case <-ctx.Done():
			return d, fmt.Errorf("waiting for deployment %s: %w (last: %v)", id, ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// BuildLogs returns a deployment's whole build log, oldest first.
func (c *Client) BuildLogs(ctx context.Context, id string) ([]api.LogLine, error) {
	var all []api.LogLine
	var after int64
	for {
		var page api.LogPage
		path := "/api/v1/deployments/" + id + "/build-logs?limit=5000&after=" + strconv.FormatInt(after, 10)
		if err := c.JSON(ctx, "GET", path, nil, &page); err != nil {
			return nil, err
		}
		all = append(all, page.Lines...)
		if page.Next == 0 || len(page.Lines) == 0 {
			return all, nil
		}
		after = page.Next
	}
}

// RuntimeLogs returns a deployment's whole runtime log, oldest first.
func (c *Client) RuntimeLogs(ctx context.Context, id string) ([]api.LogLine, error) {
	var all []api.LogLine
	var cursor int64
	for {
		var page api.LogPage
		path := "/api/v1/deployments/" + id + "/logs?direction=forward&limit=5000&cursor=" + strconv.FormatInt(cursor, 10)
		if err := c.JSON(ctx, "GET", path, nil, &page); err != nil {
			return nil, err
		}
		all = append(all, page.Lines...)
		if page.Next == 0 || len(page.Lines) == 0 {
			return all, nil
		}
		cursor = page.Next
	}
}

// StopDeployment stops a deployment.
func (c *Client) StopDeployment(ctx context.Context, id string) error {
	return c.JSON(ctx, "POST", "/api/v1/deployments/"+id+"/stop", nil, nil)
}

// StopAll stops every deployment of every project that is not FAILED or
// STOPPED yet, so that no sandbox outlives the server.
func (c *Client) StopAll(ctx context.Context) error {
	ps, err := c.Projects(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range ps {
		ds, err := c.Deployments(ctx, p.Name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, d := range ds {
			if d.Status == "FAILED" || d.Status == "STOPPED" {
				continue
			}
			if err := c.StopDeployment(ctx, d.ID); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// Host returns the hostname of a deployment id or project name.
func (c *Client) Host(label string) string {
	base := c.BaseDomain
	if base == "" {
		base = "slipway.localhost"
	}
	return label + "." + base
}

// Get sends GET path to host through the router and returns the status and
// body.
func (c *Client) Get(ctx context.Context, host, path string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+c.Router+path, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Host = host
	resp, err := c.Apps.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// InstanceOf returns the id of the instance that wrote the newest stdout
// or stderr line of a deployment's runtime log, or "" if none did.
func InstanceOf(lines []api.LogLine) string {
	for i := len(lines) - 1; i >= 0; i-- {
		if lines[i].Instance != "" && (lines[i].Stream == "stdout" || lines[i].Stream == "stderr") {
			return lines[i].Instance
		}
	}
	return ""
}

// RouterDialer returns a dialer bound to the router's address whatever the
// URL says; it lets plain http.Clients address apps by hostname.
func (c *Client) RouterDialer() func(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	return func(ctx context.Context, network, _ string) (net.Conn, error) {
		return d.DialContext(ctx, network, c.Router)
	}
}
