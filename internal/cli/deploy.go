package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipwayhq/slipway/internal/api"
	"github.com/slipwayhq/slipway/internal/source"
)

func newDeployCmd() *cobra.Command {
	var (
		project, environment      string
		root, sandbox             string
		noCreate, detach, noPromo bool
		asJSON                    bool
		image                     string
	)
	cmd := &cobra.Command{
		Use:   "deploy [DIR] | deploy --image REF -p NAME",
		Short: "Upload a folder (or name a prebuilt image), build and run it, and print its URLs",
		Long: `Pack DIR (default: the current directory) honouring .gitignore and
.slipwayignore, upload it as a new deployment of the project, follow the build
log, and print the preview URL and the project's default hostname once the
deployment is RUNNING. Exits non-zero with the reason when it FAILED.

Inside a git checkout the deployment records the branch, commit SHA, message
and author; a work tree with uncommitted changes is deployed as it is, with a
warning, and the deployment is marked dirty. The project is created when it
does not exist (unless --no-create); its name defaults to the folder's name.

The project root (the subdirectory that holds the app) is detected when the
folder's root holds no app and exactly one subdirectory does. --root DIR saves
DIR as the project's root directory setting (rootDirectory) before deploying,
for this and later deployments; --root "" clears it, so it is detected again.
--sandbox KIND likewise saves the project's sandbox (runc, gvisor or microvm:
the isolation its instances run in); --sandbox "" clears it, back to the
server's default.

--image REF deploys a prebuilt image instead of a folder, with the same
lifecycle and nothing to build. A reference without a registry host is in
Slipway's own registry (where you may push with docker or crane, an API token
as the password): PROJECT:TAG, PROJECT/NAME:TAG, or a public library/NAME:TAG;
a project deploys only its own repositories there. A reference with a host
(ghcr.io/org/app:1, docker.io/library/nginx:1.27) is pulled from that registry,
with the project's credential for it if one is set (PUT
/api/v1/projects/NAME/registry-credentials/HOST), and copied into Slipway's
registry: the deployment records the digest and keeps running it when the tag
moves. The image runs its own ENTRYPOINT/CMD unless the project has a custom
start command, and must listen on $PORT (3000).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if image != "" {
				if len(args) > 0 {
					return fmt.Errorf("give either DIR or --image, not both")
				}
				if project == "" {
					return fmt.Errorf("--image needs a project: -p NAME")
				}
				if cmd.Flags().Changed("root") {
					return fmt.Errorf("--root applies to a folder, not to --image")
				}
			}
			dir := "."
			if len(args) == 1 {
				dir = args[0]
			}
			abs, err := filepath.Abs(dir)
			if err != nil {
				return err
			}
			if st, err := os.Stat(abs); image == "" && (err != nil || !st.IsDir()) {
				return fmt.Errorf("%s is not a directory", dir)
			}
			if project == "" {
				project = projectName(filepath.Base(abs))
			}
			out := cmd.OutOrStdout()
			logf := func(format string, a ...any) {
				if !asJSON {
					fmt.Fprintf(out, format, a...)
				}
			}
			c := newClient()
			if err := c.call(ctx, "GET", projectPath(project), nil, nil); err != nil {
				if !isNotFound(err) {
					return err
				}
				if noCreate {
					return fmt.Errorf("project %q does not exist (and --no-create was given)", project)
				}
				if err := c.call(ctx, "POST", "/api/v1/projects", api.CreateProjectRequest{Name: project}, nil); err != nil {
					return fmt.Errorf("creating project %q: %w", project, err)
				}
				logf("Created project %s\n", project)
			}

			if cmd.Flags().Changed("root") {
				if err := c.call(ctx, "PATCH", projectPath(project)+"/settings", map[string]string{"rootDirectory": root}, nil); err != nil {
					return fmt.Errorf("setting the project root: %w", err)
				}
				if root == "" {
					logf("Project root of %s cleared: it is detected\n", project)
				} else {
					logf("Project root of %s set to %s\n", project, root)
				}
			}

			if cmd.Flags().Changed("sandbox") {
				if err := c.call(ctx, "PATCH", projectPath(project)+"/settings", map[string]string{"sandbox": sandbox}, nil); err != nil {
					return fmt.Errorf("setting the project's sandbox: %w", err)
				}
				if sandbox == "" {
					logf("Sandbox of %s cleared: the server's default\n", project)
				} else {
					logf("Sandbox of %s set to %s\n", project, sandbox)
				}
			}

			var d api.Deployment
			start := time.Now()
			if image != "" {
				req := api.CreateImageDeploymentRequest{Image: image, Environment: environment}
				if noPromo {
					f := false
					req.Promote = &f
				}
				logf("Deploying image %s to %s (project %s)\n", image, c.cfg.URL, project)
				if err := c.call(ctx, http.MethodPost, projectPath(project)+"/deployments", req, &d); err != nil {
					return err
				}
				logf("Deployment %s\n", d.ID)
			} else {
				q := url.Values{}
				if environment != "" {
					q.Set("environment", environment)
				}
				if noPromo {
					q.Set("promote", "false")
				}
				if info, ok := source.GitInfo(ctx, abs); ok {
					q.Set("branch", info.Branch)
					q.Set("commit", info.Commit)
					q.Set("message", info.Message)
					q.Set("author", info.Author)
					if info.Dirty {
						q.Set("dirty", "true")
						fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s has uncommitted changes: they are deployed, and the deployment is marked dirty (its source is not exactly commit %s)\n",
							dir, short(info.Commit, 7))
					}
				}
				pr, pw := io.Pipe()
				counter := &countWriter{w: pw}
				go func() { pw.CloseWithError(source.Pack(abs, counter)) }()
				logf("Uploading %s to %s (project %s)\n", abs, c.cfg.URL, project)
				resp, err := c.request(ctx, http.MethodPost, projectPath(project)+"/deployments?"+q.Encode(), pr, "application/gzip")
				pr.Close()
				if err != nil {
					return err
				}
				err = json.NewDecoder(resp.Body).Decode(&d)
				resp.Body.Close()
				if err != nil {
					return err
				}
				logf("Uploaded %s in %s; deployment %s\n", source.FormatBytes(counter.n), time.Since(start).Round(time.Millisecond), d.ID)
			}
			if detach {
				if asJSON {
					return printJSON(cmd, d)
				}
				logf("Preview URL: %s\n", d.URL)
				return nil
			}

			final := &d
			err = c.follow(ctx, deploymentPath(d.ID)+"/build-logs?follow=true", func(ev sseEvent) bool {
				switch ev.Event {
				case "line":
					var l api.LogLine
					if json.Unmarshal([]byte(ev.Data), &l) == nil {
						logf("%s %s\n", dim(fmt.Sprintf("[%6.1fs]", l.Time.Sub(start).Seconds())), l.Text)
					}
				case "status":
					var s struct{ Status string }
					json.Unmarshal([]byte(ev.Data), &s)
					logf("==> %s\n", s.Status)
				case "end":
					var fd api.Deployment
					if json.Unmarshal([]byte(ev.Data), &fd) == nil {
						final = &fd
					}
					return false
				}
				return true
			})
			if err != nil {
				return err
			}
			if ctx.Err() != nil {
				return fmt.Errorf("interrupted; deployment %s continues on the server", d.ID)
			}
			if asJSON {
				printJSON(cmd, final)
			}
			switch final.Status {
			case "RUNNING":
				logf("\nDeployment %s is RUNNING (%s from request)\n", final.ID, time.Since(start).Round(100*time.Millisecond))
				logf("  Preview URL: %s\n", final.URL)
				for _, u := range final.URLs {
					if u != final.URL {
						logf("  %s\n", u)
					}
				}
				return nil
			default:
				if !asJSON {
					fmt.Fprintf(cmd.ErrOrStderr(), "\nDeployment %s %s: %s\n", final.ID, final.Status, final.FailureReason)
				}
				return exitCode(1)
			}
		},
	}
	f := cmd.Flags()
	f.StringVarP(&project, "project", "p", os.Getenv("SLIPWAY_PROJECT"), "project name (default: the folder's name)")
	f.StringVarP(&environment, "environment", "e", "", "environment (default: production)")
	f.BoolVar(&noCreate, "no-create", false, "fail instead of creating a missing project")
	f.StringVar(&sandbox, "sandbox", "", `save the project's sandbox (runc, gvisor or microvm) as its setting, for this and later deployments; "" clears it (the server's default)`)
	f.StringVar(&root, "root", "", `save the project root (the subdirectory of DIR that holds the app) as the project's setting; "" clears it`)
	f.BoolVar(&detach, "detach", false, "return once uploaded, without waiting for the deployment")
	f.BoolVar(&noPromo, "no-promote", false, "do not make the deployment current on its environment")
	f.BoolVar(&asJSON, "json", false, "print only the final deployment as JSON")
	f.StringVar(&image, "image", "", "deploy this prebuilt image (PROJECT:TAG in Slipway's registry, or HOST/REPOSITORY:TAG) instead of a folder")
	return cmd
}

var notLabel = regexp.MustCompile(`[^a-z0-9-]+`)

// projectName turns a folder name into a valid project name.
func projectName(base string) string {
	n := notLabel.ReplaceAllString(strings.ToLower(base), "-")
	n = strings.Trim(n, "-")
	if len(n) > 63 {
		n = strings.Trim(n[:63], "-")
	}
	if n == "" {
		n = "app"
	}
	return n
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func dim(s string) string {
	if os.Getenv("NO_COLOR") != "" || !isTerminal(os.Stdout) {
		return s
	}
	return "\x1b[2m" + s + "\x1b[0m"
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
