package cli

import (
	"context"
	"fmt"
	"io"
	"strconv"

	"mailtrigger/internal/client"
)

// flowsCmd is "mailtrigger flows ACTION": the process flows over the API.
func flowsCmd(ctx context.Context, args []string, env Env) error {
	action, rest, err := subcommand(env, "flows", args, "Manage the process flows of a running service.\n\n"+remoteHelp,
		"list", "get", "create", "edit", "delete")
	if err != nil {
		return err
	}
	var argsHelp, purpose string
	want := 1
	switch action {
	case "list":
		argsHelp, purpose, want = "[flags]", "List the flows: trigger, match and activities.", 0
	case "get":
		argsHelp, purpose = "[flags] NAME", "Show the flow NAME."
	case "create":
		argsHelp, purpose, want = "[flags] -f FILE", "Create a flow from FILE (JSON or YAML, the API's body; - reads standard input).\nA webhook secret left out is generated and printed once.", 0
	case "edit":
		argsHelp, purpose = "[flags] NAME -f FILE", "Replace the flow NAME by FILE (JSON or YAML; - reads standard input). A webhook\nsecret or header value left out keeps the stored one while the webhook's URL keeps its\nscheme, host and port; otherwise a secret is generated and printed once, and a header\nvalue must be given again."
	case "delete":
		argsHelp, purpose = "[flags] NAME", "Delete the flow NAME (its runs stay in the history)."
	}
	fs := newFlags("flows "+action, argsHelp, purpose+"\n\n"+remoteHelp, env)
	r := addRemoteFlags(fs, env, true)
	var file *string
	if action == "create" || action == "edit" {
		file = fs.String("f", "", "the request body: a JSON or YAML file, - for standard input")
	}
	pos, err := parseArgs(fs, env, rest, want, "NAME")
	if err != nil {
		return err
	}
	if file != nil && *file == "" {
		return usageErr(fs, env, "-f FILE is required (JSON or YAML; - for standard input)")
	}
	c, err := r.client(fs)
	if err != nil {
		return err
	}
	name := ""
	if len(pos) > 0 {
		name = pos[0]
	}
	what := "flows " + action
	switch action {
	case "list":
		fs, err := c.AllFlows(ctx)
		if err != nil {
			return explain(what, err)
		}
		return r.print(client.List[client.Flow]{Items: fs}, func(w io.Writer) error { return flowTable(w, fs) })
	case "get":
		f, err := c.GetFlow(ctx, name)
		if err != nil {
			return explain(what, err)
		}
		return r.print(f, func(w io.Writer) error { return printDoc(w, f) })
	case "create", "edit":
		body, err := readBody(env, *file)
		if err != nil {
			return err
		}
		var f client.Flow
		if action == "create" {
			f, err = c.CreateFlow(ctx, body)
		} else {
			f, err = c.EditFlow(ctx, name, body)
		}
		if err != nil {
			return explain(what, err)
		}
		return r.print(f, func(w io.Writer) error {
			fmt.Fprintf(w, "flow %q %sd\n", f.Name, action)
			for i, a := range f.Activities {
				if a.Secret != "" {
					fmt.Fprintf(w, "webhook signing secret of activities[%d] (shown once): %s\n", i, a.Secret)
				}
			}
			return nil
		})
	case "delete":
		if err := c.DeleteFlow(ctx, name); err != nil {
			return explain(what, err)
		}
		if r.json() {
			return printJSON(env.Stdout, map[string]any{"deleted": name})
		}
		fmt.Fprintf(env.Stdout, "flow %q deleted\n", name)
	}
	return nil
}

func flowTable(w io.Writer, fs []client.Flow) error {
	rows := [][]string{}
	for _, f := range fs {
		t := f.Start.EmailTrigger
		rows = append(rows, []string{f.Name, t.IMAP, t.Match, t.Subject, yesNo(f.Enabled), strconv.Itoa(len(f.Activities))})
	}
	return table(w, "NAME\tIMAP\tMATCH\tSUBJECT\tENABLED\tACTIVITIES", rows)
}

// runsCmd is "mailtrigger runs ACTION": the runs of the flows.
func runsCmd(ctx context.Context, args []string, env Env) error {
	action, rest, err := subcommand(env, "runs", args, "Show and retry the runs of the flows.\n\n"+remoteHelp, "list", "get", "retry")
	if err != nil {
		return err
	}
	var argsHelp, purpose string
	want := 1
	switch action {
	case "list":
		argsHelp, purpose, want = "[flags]", "List runs, newest first, one page (--limit, then --cursor from the last line).", 0
	case "get":
		argsHelp, purpose = "[flags] ID", "Show the run ID with its delivery attempts."
	case "retry":
		argsHelp, purpose = "[flags] ID", "Deliver the failed run ID again."
	}
	fs := newFlags("runs "+action, argsHelp, purpose+"\n\n"+remoteHelp, env)
	r := addRemoteFlags(fs, env, true)
	var f client.RunFilter
	var limit int
	var cursor string
	if action == "list" {
		fs.StringVar(&f.Flow, "flow", "", "only the runs of this flow")
		fs.StringVar(&f.IMAP, "imap", "", "only the runs of messages of this IMAP configuration")
		fs.StringVar(&f.Status, "status", "", "only runs in this status: pending, delivering, retrying, delivered or failed")
		fs.IntVar(&limit, "limit", 50, "at most this many runs")
		fs.StringVar(&cursor, "cursor", "", "the page after the one that printed this cursor")
	}
	pos, err := parseArgs(fs, env, rest, want, "ID")
	if err != nil {
		return err
	}
	c, err := r.client(fs)
	if err != nil {
		return err
	}
	what := "runs " + action
	switch action {
	case "list":
		l, err := c.ListRuns(ctx, f, limit, cursor)
		if err != nil {
			return explain(what, err)
		}
		return r.print(l, func(w io.Writer) error {
			rows := [][]string{}
			for _, run := range l.Items {
				rows = append(rows, []string{run.ID, run.Flow, run.IMAP, strconv.FormatInt(run.MessageID, 10), run.Status,
					strconv.Itoa(run.AttemptCount), timeText(&run.CreatedAt), run.LastError})
			}
			if err := table(w, "ID\tFLOW\tIMAP\tMESSAGE\tSTATUS\tATTEMPTS\tCREATED\tLAST ERROR", rows); err != nil {
				return err
			}
			if l.NextCursor != "" {
				fmt.Fprintf(w, "more: --cursor %s\n", l.NextCursor)
			}
			return nil
		})
	case "get":
		run, err := c.GetRun(ctx, pos[0])
		if err != nil {
			return explain(what, err)
		}
		return r.print(run, func(w io.Writer) error { return printDoc(w, run) })
	case "retry":
		run, err := c.RetryRun(ctx, pos[0])
		if err != nil {
			return explain(what, err)
		}
		return r.print(run, func(w io.Writer) error {
			_, err := fmt.Fprintf(w, "run %s queued again (status %s)\n", run.ID, run.Status)
			return err
		})
	}
	return nil
}
