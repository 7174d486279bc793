package cli

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/slipwayhq/slipway/internal/api"
)

func newNotifyCmd() *cobra.Command {
	var project string
	var asJSON bool
	list := func(cmd *cobra.Command, _ []string) error {
		return show(cmd, asJSON, "GET", projectPath(project)+"/notifications", nil, func(hs []api.Webhook) error {
			if len(hs) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "No webhooks.")
				return nil
			}
			w := table(cmd)
			fmt.Fprintln(w, "ID\tURL\tFORMAT\tEVENTS\tCREATED")
			for _, h := range hs {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", h.ID, h.URL, h.Format, strings.Join(h.Events, ","), since(h.CreatedAt))
			}
			return w.Flush()
		})
	}
	cmd := &cobra.Command{
		Use:   "notify",
		Short: "Manage a project's outgoing webhooks (deploy succeeded or failed, app crashed, …)",
		Long: `A webhook receives a POST for each event it subscribes to: deployment.succeeded,
deployment.failed, app.crashed and app.unhealthy by default; app.slept and app.woke
if asked. The body is JSON (or a Slack-compatible {"text": …} with --format slack).

Each request carries X-Slipway-Signature-256: sha256=HEX, the HMAC-SHA256 of the
exact request body under the webhook's secret (verify it over the raw bytes, as
GitHub's X-Hub-Signature-256), X-Slipway-Event, and X-Slipway-Delivery, an id
that stays the same on retries. Failed deliveries (no answer, 5xx, 408, 429) are
retried with backoff, 8 attempts over about 20 minutes, also across restarts of
the server.`,
		Args:              cobra.NoArgs,
		PersistentPreRunE: func(*cobra.Command, []string) error { return requireProject(project) },
		RunE:              list,
	}
	cmd.PersistentFlags().StringVarP(&project, "project", "p", os.Getenv("SLIPWAY_PROJECT"), "project (SLIPWAY_PROJECT)")
	cmd.PersistentFlags().BoolVar(&asJSON, "json", false, "print JSON")

	var req api.CreateWebhookRequest
	var events string
	add := &cobra.Command{
		Use:   "add URL",
		Short: "Add a webhook; prints its signing secret once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.URL = args[0]
			req.Events = nil
			for _, e := range strings.Split(events, ",") {
				if e = strings.TrimSpace(e); e != "" {
					req.Events = append(req.Events, e)
				}
			}
			return show(cmd, asJSON, "POST", projectPath(project)+"/notifications", req, func(h api.Webhook) error {
				out := cmd.OutOrStdout()
				fmt.Fprintf(out, "Added webhook %s (%s, %s): %s\n", h.ID, h.URL, h.Format, strings.Join(h.Events, ", "))
				fmt.Fprintf(out, "Signing secret (shown once): %s\n", h.Secret)
				return nil
			})
		},
	}
	add.Flags().StringVar(&req.Format, "format", "json", "body format: json or slack")
	add.Flags().StringVar(&events, "events", "", "comma-separated events (default: deployment.succeeded,deployment.failed,app.crashed,app.unhealthy; also app.slept, app.woke)")
	add.Flags().StringVar(&req.Secret, "secret", "", "signing secret (default: a random one, printed once)")

	remove := &cobra.Command{
		Use:   "remove ID",
		Short: "Remove a webhook and its delivery log",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := newClient().call(cmd.Context(), "DELETE", projectPath(project)+"/notifications/"+pathEscape(args[0]), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Removed webhook %s.\n", args[0])
			return nil
		},
	}
	test := &cobra.Command{
		Use:   "test ID",
		Short: "Send a test event to a webhook and print how it went",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var d api.WebhookDelivery
			if err := newClient().call(cmd.Context(), "POST", projectPath(project)+"/notifications/"+pathEscape(args[0])+"/test", nil, &d); err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd, d)
			}
			out := cmd.OutOrStdout()
			switch {
			case d.State == "delivered":
				fmt.Fprintf(out, "Delivered %s to webhook %s: HTTP %d\n", d.ID, d.Webhook, d.LastStatus)
				return nil
			case d.Attempts == 0:
				fmt.Fprintf(out, "Queued %s; its first attempt is still under way (see: slipway notify deliveries %s)\n", d.ID, d.Webhook)
				return nil
			}
			return fmt.Errorf("test delivery %s failed: %s", d.ID, orText(d.LastError, fmt.Sprintf("HTTP %d", d.LastStatus)))
		},
	}
	var limit int
	deliveries := &cobra.Command{
		Use:   "deliveries ID",
		Short: "Show a webhook's delivery log, newest first",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := fmt.Sprintf("%s/notifications/%s/deliveries?limit=%d", projectPath(project), pathEscape(args[0]), limit)
			return show(cmd, asJSON, "GET", path, nil, func(ds []api.WebhookDelivery) error {
				w := table(cmd)
				fmt.Fprintln(w, "ID\tEVENT\tSTATE\tATTEMPTS\tANSWER\tQUEUED")
				for _, d := range ds {
					answer := ""
					if d.LastStatus != 0 {
						answer = fmt.Sprintf("HTTP %d", d.LastStatus)
					}
					if d.LastError != "" && d.LastStatus == 0 {
						answer = d.LastError
					}
					if d.NextAttemptAt != nil {
						answer += " (retry at " + d.NextAttemptAt.Local().Format("15:04:05") + ")"
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\n", d.ID, d.Event, d.State, d.Attempts, dash(strings.TrimSpace(answer)), since(d.CreatedAt))
				}
				return w.Flush()
			})
		},
	}
	deliveries.Flags().IntVar(&limit, "limit", 20, "how many")
	cmd.AddCommand(&cobra.Command{Use: "list", Short: "List the project's webhooks", Args: cobra.NoArgs, RunE: list},
		add, remove, test, deliveries)
	return cmd
}

func newDrainsCmd() *cobra.Command {
	var project string
	var asJSON bool
	list := func(cmd *cobra.Command, _ []string) error {
		return show(cmd, asJSON, "GET", projectPath(project)+"/drains", nil, func(ds []api.LogDrain) error {
			if len(ds) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "No log drains.")
				return nil
			}
			w := table(cmd)
			fmt.Fprintln(w, "ID\tURL\tSTATE\tSENT\tDROPPED\tBUFFERED")
			for _, d := range ds {
				state := "idle"
				switch {
				case d.Connected:
					state = "sending"
				case d.LastError != "":
					state = "failing: " + d.LastError
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%d\n", d.ID, d.URL, state, d.Sent, d.Dropped, d.Buffered)
			}
			return w.Flush()
		})
	}
	cmd := &cobra.Command{
		Use:   "drains",
		Short: "Manage a project's log drains (runtime logs sent to syslog or HTTP)",
		Long: `A log drain receives every line the project's apps write (stdout, stderr, and
Slipway's own notices), as stored in the runtime log:

  syslog://HOST:PORT       RFC 5424 messages over TCP (octet-counting framing)
  syslog+tls://HOST:PORT   the same over TLS (RFC 5425)
  https://HOST/PATH        POSTed JSON arrays of {time, project, environment,
                           deployment, instance, stream, text}

A drain never slows an app down: while its endpoint is slow or unreachable it
buffers up to 10,000 lines (4 MiB), drops the rest and counts them (DROPPED), and
reconnects with backoff; the app's runtime log and the drain itself get a line
saying how many were dropped. The URL is stored encrypted (put a token in it)
and shown only by its host.`,
		Args:              cobra.NoArgs,
		PersistentPreRunE: func(*cobra.Command, []string) error { return requireProject(project) },
		RunE:              list,
	}
	cmd.PersistentFlags().StringVarP(&project, "project", "p", os.Getenv("SLIPWAY_PROJECT"), "project (SLIPWAY_PROJECT)")
	cmd.PersistentFlags().BoolVar(&asJSON, "json", false, "print JSON")
	var caFile string
	add := &cobra.Command{
		Use:   "add URL",
		Short: "Add a log drain",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := api.CreateLogDrainRequest{URL: args[0]}
			if caFile != "" {
				b, err := os.ReadFile(caFile)
				if err != nil {
					return err
				}
				req.CA = string(b)
			}
			return show(cmd, asJSON, "POST", projectPath(project)+"/drains", req, func(d api.LogDrain) error {
				fmt.Fprintf(cmd.OutOrStdout(), "Added log drain %s (%s): %s's runtime logs go there from now on.\n", d.ID, d.URL, project)
				return nil
			})
		},
	}
	add.Flags().StringVar(&caFile, "ca", "", "PEM file of the CA a TLS endpoint's certificate must chain to (default: the system's)")
	remove := &cobra.Command{
		Use:   "remove ID",
		Short: "Remove a log drain",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := newClient().call(cmd.Context(), "DELETE", projectPath(project)+"/drains/"+pathEscape(args[0]), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Removed log drain %s.\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(&cobra.Command{Use: "list", Short: "List the project's log drains and how they do", Args: cobra.NoArgs, RunE: list},
		add, remove)
	return cmd
}
