package cli

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/slipwayhq/slipway/internal/api"
)

// projectFlag adds the --project flag (default SLIPWAY_PROJECT) to cmd.
func projectFlag(cmd *cobra.Command, p *string) {
	cmd.Flags().StringVarP(p, "project", "p", os.Getenv("SLIPWAY_PROJECT"), "project (SLIPWAY_PROJECT)")
}

func requireProject(p string) error {
	if p == "" {
		return fmt.Errorf("--project is required (or set SLIPWAY_PROJECT)")
	}
	return nil
}

func newPromoteCmd() *cobra.Command {
	return newDeploymentActionCmd("promote", "Make a RUNNING deployment current on its environment (rollback), without a rebuild",
		func(w io.Writer, d api.Deployment) {
			fmt.Fprintf(w, "Deployment %s is now current on %s:\n  %s\n", d.ID, d.Environment, strings.Join(d.URLs, "\n  "))
		})
}

func newRedeployCmd() *cobra.Command {
	var rebuild, asJSON bool
	var project string
	cmd := &cobra.Command{
		Use:   "redeploy [DEPLOYMENT]",
		Short: "Deploy the same source and commit again (reusing its image unless --rebuild)",
		Long: `Create a new deployment of the same source and commit as DEPLOYMENT (default:
the current production deployment of --project). The image already built is
reused unless --rebuild. The new deployment becomes current once RUNNING.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := ""
			if len(args) == 1 {
				id = args[0]
			} else {
				if err := requireProject(project); err != nil {
					return err
				}
				var p api.Project
				if err := newClient().call(cmd.Context(), "GET", projectPath(project), nil, &p); err != nil {
					return err
				}
				if p.CurrentDeployment == "" {
					return fmt.Errorf("project %s has no current deployment; name one", project)
				}
				id = p.CurrentDeployment
			}
			return show(cmd, asJSON, "POST", deploymentPath(id)+"/redeploy", api.RedeployRequest{Rebuild: rebuild}, func(d api.Deployment) error {
				fmt.Fprintf(cmd.OutOrStdout(), "Deployment %s created from %s; follow it with: slipway logs --build --follow %s\n", d.ID, id, d.ID)
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&rebuild, "rebuild", false, "build the image again instead of reusing it")
	jsonFlag(cmd, &asJSON)
	projectFlag(cmd, &project)
	return cmd
}

func newStartCommandCmd() *cobra.Command {
	var project string
	cmd := &cobra.Command{
		Use:   "start-command",
		Short: "Set or clear the project's custom start command",
		Long: `The start command of a new deployment is the project's custom command when one
is set, else the detected default. Changing it never touches existing
deployments.`,
		PersistentPreRunE: func(*cobra.Command, []string) error { return requireProject(project) },
	}
	set := &cobra.Command{
		Use:   "set COMMAND",
		Short: "Run COMMAND (with /bin/sh -c) in new deployments",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := newClient().call(cmd.Context(), "PUT", projectPath(project)+"/start-command", api.StartCommandRequest{Command: args[0]}, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "New deployments of %s start with: %s\n", project, args[0])
			redeployHint(cmd, project)
			return nil
		},
	}
	clear := &cobra.Command{
		Use:   "clear",
		Short: "Use the detected default again",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := newClient().call(cmd.Context(), "DELETE", projectPath(project)+"/start-command", nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "New deployments of %s use the detected start command\n", project)
			redeployHint(cmd, project)
			return nil
		},
	}
	projectFlag(set, &project)
	projectFlag(clear, &project)
	cmd.AddCommand(set, clear)
	return cmd
}

func newEnvCmd() *cobra.Command {
	var project string
	var asJSON bool
	envPath := func(env string) string {
		return projectPath(project) + "/environments/" + pathEscape(env)
	}
	cmd := &cobra.Command{
		Use:   "env",
		Short: "List and manage a project's environments, variables and domains",
		Args:  cobra.NoArgs,
		// Every subcommand needs the project.
		PersistentPreRunE: func(*cobra.Command, []string) error { return requireProject(project) },
		RunE: func(cmd *cobra.Command, _ []string) error {
			return show(cmd, asJSON, "GET", projectPath(project)+"/environments", nil, func(envs []api.EnvironmentDetail) error {
				w := table(cmd)
				fmt.Fprintln(w, "NAME\tCURRENT\tBRANCHES\tURL\tDOMAINS")
				for _, e := range envs {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", e.Name, dash(e.CurrentDeployment), dash(strings.Join(e.Branches, ",")), e.URL, dash(strings.Join(e.Domains, " ")))
				}
				return w.Flush()
			})
		},
	}
	projectFlag(cmd, &project)
	cmd.PersistentFlags().BoolVar(&asJSON, "json", false, "print JSON")
	var branches []string
	create := &cobra.Command{
		Use: "create NAME", Short: "Create an environment", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var e api.EnvironmentDetail
			if err := newClient().call(cmd.Context(), "POST", projectPath(project)+"/environments",
				api.CreateEnvironmentRequest{Name: args[0], Branches: branches}, &e); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Created environment %s (%s)\n", e.Name, e.URL)
			return nil
		},
	}
	create.Flags().StringSliceVar(&branches, "branch", nil, "git branch whose pushes deploy here (repeatable)")
	setBranches := &cobra.Command{
		Use: "branches ENV BRANCH...", Short: "Set the git branches mapped to an environment", Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return newClient().call(cmd.Context(), "PATCH", envPath(args[0]), api.UpdateEnvironmentRequest{Branches: args[1:]}, nil)
		},
	}
	del := &cobra.Command{
		Use: "delete NAME", Short: "Stop an environment's deployments and delete it", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := newClient().call(cmd.Context(), "DELETE", envPath(args[0]), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Deleted environment %s\n", args[0])
			return nil
		},
	}
	var secret bool
	vars := &cobra.Command{
		Use: "vars ENV", Short: "List an environment's variables (secrets masked)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return show(cmd, asJSON, "GET", envPath(args[0])+"/variables", nil, func(vs []api.Variable) error {
				for _, v := range vs {
					fmt.Fprintf(cmd.OutOrStdout(), "%s=%s\n", v.Name, v.Value)
				}
				return nil
			})
		},
	}
	set := &cobra.Command{
		Use: "set ENV NAME=VALUE...", Short: "Set variables (for deployments created from now on)", Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, kv := range args[1:] {
				name, value, ok := strings.Cut(kv, "=")
				if !ok {
					return fmt.Errorf("%q is not NAME=VALUE", kv)
				}
				if err := newClient().call(cmd.Context(), "PUT", envPath(args[0])+"/variables/"+pathEscape(name),
					api.SetVariableRequest{Value: value, Secret: secret}, nil); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "Set %s on %s\n", name, args[0])
			}
			redeployHint(cmd, project, args[0])
			return nil
		},
	}
	set.Flags().BoolVar(&secret, "secret", false, "never show the value back in full")
	unset := &cobra.Command{
		Use: "unset ENV NAME...", Short: "Remove variables", Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, name := range args[1:] {
				if err := newClient().call(cmd.Context(), "DELETE", envPath(args[0])+"/variables/"+pathEscape(name), nil, nil); err != nil {
					return err
				}
			}
			redeployHint(cmd, project, args[0])
			return nil
		},
	}
	domain := &cobra.Command{Use: "domain", Short: "Add or remove an environment's custom domains"}
	domainAdd := &cobra.Command{
		Use: "add ENV DOMAIN", Short: "Route DOMAIN to the environment's current deployment", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := newClient().call(cmd.Context(), "POST", envPath(args[0])+"/domains", api.DomainRequest{Name: args[1]}, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s now follows %s's current deployment\n", args[1], args[0])
			return nil
		},
	}
	domainRemove := &cobra.Command{
		Use: "remove ENV DOMAIN", Short: "Unassign a custom domain", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return newClient().call(cmd.Context(), "DELETE", envPath(args[0])+"/domains/"+pathEscape(args[1]), nil, nil)
		},
	}
	domain.AddCommand(domainAdd, domainRemove)
	for _, sub := range []*cobra.Command{create, setBranches, del, vars, set, unset, domainAdd, domainRemove} {
		projectFlag(sub, &project)
	}
	cmd.AddCommand(create, setBranches, del, vars, set, unset, domain)
	return cmd
}
