package cli

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/slipwayhq/slipway/internal/build/plan"
)

func newPlanCmd() *cobra.Command {
	var (
		opts          plan.Options
		dockerfileOut string
	)
	cmd := &cobra.Command{
		Use:   "plan [DIR]",
		Short: "Print the build plan detected for a folder, without building",
		Long: `Detect how DIR (default: the current directory) would be built and print
the plan as JSON: the provider (dockerfile, python, node, go or static), base
images, steps with their inputs and caches, environment, start command, and
the facts detected with where they came from. Nothing is built or uploaded.

With --dockerfile-out FILE the Dockerfile generated from the plan is also
written to FILE ("-": printed instead of the JSON). A project with its own
Dockerfile is built with that one, so there is nothing to generate.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := "."
			if len(args) == 1 {
				dir = args[0]
			}
			if st, err := os.Stat(dir); err != nil || !st.IsDir() {
				return fmt.Errorf("%s is not a directory", dir)
			}
			p, err := plan.Detect(dir, opts)
			if err != nil {
				return err
			}
			if dockerfileOut != "" {
				text, err := p.Dockerfile()
				if errors.Is(err, plan.ErrUsesDockerfile) {
					return fmt.Errorf("nothing generated: the project is built with its own Dockerfile (%s)", p.DockerfilePath)
				}
				if err != nil {
					return err
				}
				if dockerfileOut == "-" {
					_, err := fmt.Fprint(cmd.OutOrStdout(), text)
					return err
				}
				if err := os.WriteFile(dockerfileOut, []byte(text), 0o644); err != nil {
					return fmt.Errorf("writing the Dockerfile: %w", err)
				}
			}
			return printJSON(cmd, p)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Root, "root", "", "project root: the subdirectory of DIR that holds the app (monorepos)")
	f.StringVar(&opts.DockerfilePath, "dockerfile", "", "Dockerfile to use, relative to the project root (default: Dockerfile when present)")
	f.StringVar(&opts.StartCommand, "start-command", "", "custom start command, in place of the detected one")
	f.StringVar(&dockerfileOut, "dockerfile-out", "", `also write the generated Dockerfile to this file ("-": print it instead of the JSON)`)
	f.Bool("json", true, "print JSON (always; accepted like on the other commands)")
	return cmd
}
