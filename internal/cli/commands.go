package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipwayhq/slipway/internal/api"
)

func table(cmd *cobra.Command) *tabwriter.Writer {
	return tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
}

func newProjectsCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "projects",
		Short: "List projects",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return show(cmd, asJSON, "GET", "/api/v1/projects", nil, func(ps []api.Project) error {
				w := table(cmd)
				fmt.Fprintln(w, "NAME\tCURRENT\tURL\tCREATED")
				for _, p := range ps {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", p.Name, dash(p.CurrentDeployment), p.URL, since(p.CreatedAt))
				}
				return w.Flush()
			})
		},
	}
	jsonFlag(cmd, &asJSON)
	create := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a project (with a production environment)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return show(cmd, asJSON, "POST", "/api/v1/projects", api.CreateProjectRequest{Name: args[0]}, func(p api.Project) error {
				fmt.Fprintf(cmd.OutOrStdout(), "Created project %s: %s\n", p.Name, p.URL)
				return nil
			})
		},
	}
	jsonFlag(create, &asJSON)
	cmd.AddCommand(create)
	return cmd
}

func newDeploymentsCmd() *cobra.Command {
	var (
		project, environment, status string
		limit                        int
		asJSON                       bool
	)
	cmd := &cobra.Command{
		Use:   "deployments [ID]",
		Short: "List a project's deployments, or show one deployment",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				return show(cmd, asJSON, "GET", deploymentPath(args[0]), nil, func(d api.Deployment) error {
					printDeployment(cmd, d)
					return nil
				})
			}
			if project == "" {
				return fmt.Errorf("--project is required to list deployments")
			}
			q := url.Values{}
			if environment != "" {
				q.Set("environment", environment)
			}
			if status != "" {
				q.Set("status", status)
			}
			q.Set("limit", strconv.Itoa(limit))
			return show(cmd, asJSON, "GET", projectPath(project)+"/deployments?"+q.Encode(), nil, func(ds []api.Deployment) error {
				w := table(cmd)
				fmt.Fprintln(w, "ID\tSTATUS\tSUMMARY\tENV\tBRANCH\tCOMMIT\tMESSAGE\tTRIGGER\tCREATED")
				for _, d := range ds {
					status := d.Status
					if d.Current {
						status += "*"
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.ID, status, dash(d.Summary), d.Environment, dash(d.Commit.Branch),
						dash(short(d.Commit.SHA, 7)), dash(short(firstLine(d.Commit.Message), 40)), d.Trigger, since(d.CreatedAt))
				}
				return w.Flush()
			})
		},
	}
	f := cmd.Flags()
	f.StringVarP(&project, "project", "p", os.Getenv("SLIPWAY_PROJECT"), "project")
	f.StringVarP(&environment, "environment", "e", "", "only this environment")
	f.StringVar(&status, "status", "", "only these statuses (comma-separated)")
	f.IntVar(&limit, "limit", 20, "how many to list")
	jsonFlag(cmd, &asJSON)
	return cmd
}

func printDeployment(cmd *cobra.Command, d api.Deployment) {
	w := table(cmd)
	fmt.Fprintf(w, "ID\t%s\n", d.ID)
	fmt.Fprintf(w, "Project\t%s (%s)\n", d.Project, d.Environment)
	status := d.Status
	if d.Summary != "" {
		status += " (" + d.Summary + ")"
	}
	fmt.Fprintf(w, "Status\t%s\n", status)
	if d.FailureReason != "" {
		fmt.Fprintf(w, "Reason\t%s\n", d.FailureReason)
	}
	fmt.Fprintf(w, "Trigger\t%s\n", d.Trigger)
	fmt.Fprintf(w, "URLs\t%s\n", strings.Join(d.URLs, " "))
	if d.Commit.SHA != "" {
		fmt.Fprintf(w, "Commit\t%s on %s by %s\n", short(d.Commit.SHA, 12), dash(d.Commit.Branch), dash(d.Commit.Author))
		fmt.Fprintf(w, "Message\t%s\n", firstLine(d.Commit.Message))
	}
	if d.Dirty {
		fmt.Fprintf(w, "Dirty\tyes: uploaded with uncommitted changes, so the source is not exactly the commit\n")
	}
	fmt.Fprintf(w, "Start command\t%s\n", orText(d.StartCommand, "(the image's own)"))
	if d.Sandbox != "" {
		fmt.Fprintf(w, "Sandbox\t%s\n", d.Sandbox)
	}
	printDetected(w, d)
	if d.Image != "" {
		fmt.Fprintf(w, "Image\t%s\n", d.Image)
	}
	fmt.Fprintf(w, "Created\t%s (%s)\n", d.CreatedAt.Local().Format(time.DateTime), since(d.CreatedAt))
	for _, p := range d.Phases {
		state := ""
		if p.EndedAt == nil {
			state = " (running)"
		}
		fmt.Fprintf(w, "  %s\t%s%s\n", p.Name, (time.Duration(p.DurationMS) * time.Millisecond).String(), state)
	}
	printRuntime(w, d)
	w.Flush()
}

func newLogsCmd() *cobra.Command {
	var (
		build, followFlag, asJSON bool
		limit                     int
	)
	cmd := &cobra.Command{
		Use:   "logs DEPLOYMENT",
		Short: "Print a deployment's runtime logs (or its build log with --build)",
		Long: `Print the newest runtime log lines of a deployment (what its app wrote to
stdout and stderr), oldest first; --follow keeps printing new lines. With
--build, print the end of the build log instead (--follow streams it until the
deployment is RUNNING or FAILED). --lines (-n) says how many lines: the last
200 unless told.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := newClient()
			out := cmd.OutOrStdout()
			print := func(l api.LogLine) {
				if asJSON {
					b, _ := json.Marshal(l)
					fmt.Fprintln(out, string(b))
					return
				}
				fmt.Fprintf(out, "%s %s\n", dim(l.Time.Local().Format("15:04:05.000")), l.Text)
			}
			path := deploymentPath(args[0]) + "/logs"
			if build {
				path = deploymentPath(args[0]) + "/build-logs"
			}
			if followFlag {
				return c.follow(cmd.Context(), path+"?follow=true&limit="+strconv.Itoa(limit), func(ev sseEvent) bool {
					if ev.Event == "line" {
						var l api.LogLine
						if json.Unmarshal([]byte(ev.Data), &l) == nil {
							print(l)
						}
					}
					return ev.Event != "end"
				})
			}
			// Both logs are read from the end, newest first: the last lines.
			var page api.LogPage
			if err := c.call(cmd.Context(), "GET", path+"?direction=backward&limit="+strconv.Itoa(limit), nil, &page); err != nil {
				return err
			}
			lines := page.Lines
			for i, j := 0, len(lines)-1; i < j; i, j = i+1, j-1 {
				lines[i], lines[j] = lines[j], lines[i]
			}
			for _, l := range lines {
				print(l)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&build, "build", false, "the build log instead of runtime logs")
	f.BoolVarP(&followFlag, "follow", "f", false, "keep printing new lines")
	f.IntVarP(&limit, "lines", "n", 200, "how many lines: the last ones (with --follow, the last ones before following)")
	f.IntVar(&limit, "limit", 200, "the same as --lines")
	f.MarkHidden("limit")
	f.BoolVar(&asJSON, "json", false, "print each line as JSON")
	return cmd
}

func newStopCmd() *cobra.Command {
	return newDeploymentActionCmd("stop", "Stop a deployment (its URLs then answer with a 'stopped' page)",
		func(w io.Writer, d api.Deployment) {
			fmt.Fprintf(w, "Deployment %s is %s\n", d.ID, d.Status)
		})
}

// newDeploymentActionCmd is the command "ACTION DEPLOYMENT": it POSTs the
// action to the deployment and prints the deployment it answers with, with
// text or as JSON (--json).
func newDeploymentActionCmd(action, short string, text func(io.Writer, api.Deployment)) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   action + " DEPLOYMENT",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return show(cmd, asJSON, "POST", deploymentPath(args[0])+"/"+action, nil, func(d api.Deployment) error {
				text(cmd.OutOrStdout(), d)
				return nil
			})
		},
	}
	jsonFlag(cmd, &asJSON)
	return cmd
}

func dash(s string) string { return orText(s, "-") }

func orText(s, alt string) string {
	if s == "" {
		return alt
	}
	return s
}

func short(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// printDetected prints what detection found for d, with where and why.
func printDetected(w io.Writer, d api.Deployment) {
	det := d.Detected
	if det == nil {
		return
	}
	if d.DetectedStartCommand != d.StartCommand {
		fmt.Fprintf(w, "Detected start\t%s\n", orText(d.DetectedStartCommand, "(none: the image's own)"))
	}
	fmt.Fprintf(w, "Detected\t%s plan\n", det.Provider)
	for _, f := range []struct {
		name string
		fact *api.Fact
	}{{"project root", det.ProjectRoot}, {"dockerfile", det.Dockerfile}, {"language", det.Language}, {"version", det.LanguageVersion},
		{"package manager", det.PackageManager}, {"framework", det.Framework}, {"entry point", det.EntryPoint}, {"output", det.OutputDir}} {
		if f.fact == nil {
			continue
		}
		where := ""
		if f.fact.File != "" {
			where = " (" + f.fact.File
			if f.fact.Line > 0 {
				where += ":" + strconv.Itoa(f.fact.Line)
			}
			where += ")"
		}
		fmt.Fprintf(w, "  %s\t%s%s: %s\n", f.name, f.fact.Value, where, f.fact.Reason)
	}
	for _, warn := range det.Warnings {
		fmt.Fprintf(w, "  warning\t%s\n", warn)
	}
}
