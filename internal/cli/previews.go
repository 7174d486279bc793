package cli

import (
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/slipwayhq/slipway/internal/api"
)

func newPreviewsCmd() *cobra.Command {
	var project string
	var asJSON bool
	printPreviews := func(w io.Writer, p api.Previews) {
		if p.Enabled {
			fmt.Fprintln(w, "pull-request previews: on")
		} else {
			fmt.Fprintln(w, "pull-request previews: off")
		}
		if len(p.PullRequests) == 0 {
			return
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PR\tENVIRONMENT\tSTATE\tCOMMIT\tFROM\tURL")
		for _, pr := range p.PullRequests {
			from := "this repository"
			if pr.Fork {
				from = "fork " + pr.HeadRepository + " (no project variables)"
			}
			fmt.Fprintf(tw, "#%d\t%s\t%s\t%.7s\t%s\t%s\n", pr.Number, pr.Environment, pr.State, pr.HeadSHA, from, pr.URL)
		}
		tw.Flush()
	}
	list := func(cmd *cobra.Command, _ []string) error {
		return show(cmd, asJSON, "GET", projectPath(project)+"/previews", nil, func(p api.Previews) error {
			printPreviews(cmd.OutOrStdout(), p)
			return nil
		})
	}
	set := func(on bool) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			c := newClient()
			if err := c.call(cmd.Context(), "PATCH", projectPath(project)+"/settings", map[string]bool{"previews": on}, nil); err != nil {
				return err
			}
			return list(cmd, args)
		}
	}
	cmd := &cobra.Command{
		Use:   "previews",
		Short: "Show, turn on or off a project's pull-request previews",
		Long: `With previews on, each pull request of the project's linked GitHub repository
(webhook event "pull_request") deploys its head commit into an environment of
its own, pr-<number>, at <project>-pr-<number>.<base-domain>; new commits
redeploy it, closing the pull request deletes it. With a clone token, each
deployment sets a commit status and one comment on the pull request gives the
URL. A pull request from a branch of the repository gets production's variables
(under those set on pr-<number>); one from a fork never does: only the variables
set on its pr-<number> environment.`,
		Args:              cobra.NoArgs,
		PersistentPreRunE: func(*cobra.Command, []string) error { return requireProject(project) },
		RunE:              list,
	}
	cmd.PersistentFlags().StringVarP(&project, "project", "p", os.Getenv("SLIPWAY_PROJECT"), "project (SLIPWAY_PROJECT)")
	cmd.PersistentFlags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(
		&cobra.Command{Use: "list", Short: "Show the setting and the pull requests with previews", Args: cobra.NoArgs, RunE: list},
		&cobra.Command{Use: "on", Short: "Deploy pull requests into previews from now on", Args: cobra.NoArgs, RunE: set(true)},
		&cobra.Command{Use: "off", Short: "Ignore pull requests from now on (existing previews stay until closed or deleted)", Args: cobra.NoArgs, RunE: set(false)},
	)
	return cmd
}
