package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/slipwayhq/slipway/internal/api"
)

// printRuntime prints, in printDeployment's table, what d runs with: its
// instances' health and last checks, and whether its project changed since
// it was created.
func printRuntime(w io.Writer, d api.Deployment) {
	if d.Health != "" {
		fmt.Fprintf(w, "Health\t%s\n", d.Health)
	}
	for i, in := range d.Instances {
		label := ""
		if i == 0 {
			label = "Instances"
		}
		line := fmt.Sprintf("%s %s, %s", in.ID, in.Status, in.Health)
		if in.ConsecutiveFailures > 0 {
			line += fmt.Sprintf(", %d failed checks in a row", in.ConsecutiveFailures)
		}
		if in.LastProbeAt != nil {
			line += fmt.Sprintf("; last check %s: %s", since(*in.LastProbeAt), in.LastProbeResult)
		}
		fmt.Fprintf(w, "%s\t%s\n", label, line)
	}
	if d.SettingsChanged {
		fmt.Fprintf(w, "Settings\tchanged since it was created (%s); redeploy to apply: slipway redeploy %s\n",
			strings.Join(d.ChangedSettings, ", "), d.ID)
	}
}

// redeployHint tells, after a change of project's settings or variables,
// which current deployments of its environments (all when envs is empty)
// now run with something else than the project says, and how to apply the
// change. It is a hint: a failure to read prints nothing.
func redeployHint(cmd *cobra.Command, project string, envs ...string) {
	c := newClient()
	var list []api.EnvironmentDetail
	if err := c.call(cmd.Context(), "GET", projectPath(project)+"/environments", nil, &list); err != nil {
		return
	}
	for _, e := range list {
		if e.CurrentDeployment == "" || (len(envs) > 0 && !contains(envs, e.Name)) {
			continue
		}
		var d api.Deployment
		if err := c.call(cmd.Context(), "GET", deploymentPath(e.CurrentDeployment), nil, &d); err != nil || !d.SettingsChanged || d.Status != "RUNNING" {
			continue
		}
		fmt.Fprintf(cmd.OutOrStdout(), "Deployment %s (current on %s) keeps running as it was created; redeploy to apply: slipway redeploy %s\n",
			d.ID, e.Name, d.ID)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
