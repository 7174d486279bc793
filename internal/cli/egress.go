package cli

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/slipwayhq/slipway/internal/api"
)

func newEgressCmd() *cobra.Command {
	var project string
	var asJSON bool
	printPolicy := func(w io.Writer, p api.EgressPolicy) {
		switch {
		case p.None:
			fmt.Fprintln(w, "egress: none (nothing beyond Slipway's resolver and private network)")
		default:
			fmt.Fprintln(w, "egress: the public internet")
		}
		for _, r := range p.Allow {
			fmt.Fprintf(w, "allow %s\n", r)
		}
	}
	list := func(cmd *cobra.Command, _ []string) error {
		return show(cmd, asJSON, "GET", projectPath(project)+"/egress", nil, func(p api.EgressPolicy) error {
			printPolicy(cmd.OutOrStdout(), p)
			return nil
		})
	}
	change := func(method, path string, body any) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			if r, ok := body.(*api.EgressRuleRequest); ok {
				r.Rule = args[0]
			}
			var p api.EgressPolicy
			if err := newClient().call(cmd.Context(), method, projectPath(project)+path, body, &p); err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd, p)
			}
			printPolicy(cmd.OutOrStdout(), p)
			return nil
		}
	}
	cmd := &cobra.Command{
		Use:   "egress",
		Short: "Show and change what a project's apps may reach besides the public internet",
		Long: `By default an app reaches the public internet and nothing else: not this host
(API, registry, SSH, local databases), link-local addresses (cloud metadata), other
instances, private and reserved ranges or the host's LAN. Changes apply at once,
to running deployments too.`,
		Args:              cobra.NoArgs,
		PersistentPreRunE: func(*cobra.Command, []string) error { return requireProject(project) },
		RunE:              list,
	}
	cmd.PersistentFlags().StringVarP(&project, "project", "p", os.Getenv("SLIPWAY_PROJECT"), "project (SLIPWAY_PROJECT)")
	cmd.PersistentFlags().BoolVar(&asJSON, "json", false, "print JSON")
	subs := []*cobra.Command{
		{Use: "list", Short: "Show the project's egress policy", Args: cobra.NoArgs, RunE: list},
		{Use: "allow CIDR[:PORT]", Short: "Let the project's apps reach a destination the default denies (e.g. 10.1.2.3:5432)",
			Args: cobra.ExactArgs(1), RunE: change("POST", "/egress/allow", &api.EgressRuleRequest{})},
		{Use: "deny CIDR[:PORT]", Short: "Remove an allow rule", Args: cobra.ExactArgs(1),
			RunE: change("POST", "/egress/deny", &api.EgressRuleRequest{})},
		{Use: "none", Short: "Close egress: nothing beyond Slipway's resolver and private network", Args: cobra.NoArgs,
			RunE: change("PATCH", "/egress", &api.EgressNoneRequest{None: true})},
		{Use: "open", Short: "Reopen egress to the public internet (and the allow rules)", Args: cobra.NoArgs,
			RunE: change("PATCH", "/egress", &api.EgressNoneRequest{None: false})},
	}
	cmd.AddCommand(subs...)
	return cmd
}
