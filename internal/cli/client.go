package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/slipwayhq/slipway/internal/api"
)

// clientConfig is where the CLI finds the server: SLIPWAY_URL and
// SLIPWAY_TOKEN, else what `slipway login` saved.
type clientConfig struct {
	URL   string `json:"url"`
	Token string `json:"token"`
}

func configPath() string {
	dir, err := os.UserConfigDir()
	if err != nil {
		dir = "."
	}
	return filepath.Join(dir, "slipway", "config.json")
}

func loadClientConfig() clientConfig {
	var c clientConfig
	if b, err := os.ReadFile(configPath()); err == nil {
		json.Unmarshal(b, &c)
	}
	if v := os.Getenv("SLIPWAY_URL"); v != "" {
		c.URL = v
	}
	if v := os.Getenv("SLIPWAY_TOKEN"); v != "" {
		c.Token = v
	}
	if c.URL == "" {
		c.URL = "http://127.0.0.1:7300"
	}
	if c.Token == "" {
		// On the server's own machine, the admin token file is a fallback.
		for _, dir := range []string{os.Getenv("SLIPWAY_DATA"), "/var/lib/slipway"} {
			if dir == "" {
				continue
			}
			if b, err := os.ReadFile(filepath.Join(dir, "admin-token")); err == nil {
				c.Token = strings.TrimSpace(string(b))
				break
			}
		}
	}
	c.URL = strings.TrimRight(c.URL, "/")
	return c
}

// client talks to the API.
type client struct {
	cfg  clientConfig
	http *http.Client
}

func newClient() *client {
	return &client{cfg: loadClientConfig(), http: &http.Client{}}
}

// apiError is an error answer from the server.
type apiError struct {
	Status  int
	Code    string
	Message string
}

func (e *apiError) Error() string { return e.Message }

func (c *client) request(ctx context.Context, method, path string, body io.Reader, contentType string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.cfg.URL+path, body)
	if err != nil {
		return nil, err
	}
	if c.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the Slipway server at %s (set SLIPWAY_URL or run `slipway login`): %w", c.cfg.URL, err)
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		var env struct {
			Error *api.Error `json:"error"`
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(b, &env) == nil && env.Error != nil {
			return nil, &apiError{Status: resp.StatusCode, Code: env.Error.Code, Message: env.Error.Message}
		}
		return nil, &apiError{Status: resp.StatusCode, Code: "http", Message: fmt.Sprintf("%s %s: %s", method, path, resp.Status)}
	}
	return resp, nil
}

// call sends a JSON request (in may be nil) and decodes the JSON answer
// into out (which may be nil).
func (c *client) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	ct := ""
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body, ct = bytes.NewReader(b), "application/json"
	}
	resp, err := c.request(ctx, method, path, body, ct)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func isNotFound(err error) bool {
	var ae *apiError
	return errors.As(err, &ae) && ae.Code == api.CodeNotFound
}

// sseEvent is one server-sent event.
type sseEvent struct {
	ID    string
	Event string
	Data  string
}

// follow reads server-sent events from path and calls fn for each until
// the stream ends, fn returns false, or ctx ends.
func (c *client) follow(ctx context.Context, path string, fn func(sseEvent) bool) error {
	resp, err := c.request(ctx, http.MethodGet, path, nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var ev sseEvent
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if ev.Event != "" || ev.Data != "" {
				if !fn(ev) {
					return nil
				}
			}
			ev = sseEvent{}
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "id: "):
			ev.ID = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "event: "):
			ev.Event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			if ev.Data != "" {
				ev.Data += "\n"
			}
			ev.Data += strings.TrimPrefix(line, "data: ")
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return sc.Err()
}

func pathEscape(s string) string { return url.PathEscape(s) }

// projectPath is the API path of a project, deploymentPath of a deployment;
// callers append the sub-resource.
func projectPath(project string) string { return "/api/v1/projects/" + pathEscape(project) }

func deploymentPath(id string) string { return "/api/v1/deployments/" + pathEscape(id) }

func since(t time.Time) string {
	d := time.Since(t)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}
