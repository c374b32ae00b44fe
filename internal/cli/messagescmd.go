package cli

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"

	"mailtrigger/internal/client"
	"mailtrigger/internal/mail"
)

// messagesCmd is "mailtrigger messages ACTION": the recorded messages.
func messagesCmd(ctx context.Context, args []string, env Env) error {
	action, rest, err := subcommand(env, "messages", args, "Show recorded messages and trigger them again.\n\n"+remoteHelp,
		"list", "get", "raw", "retrigger")
	if err != nil {
		return err
	}
	var argsHelp, purpose string
	want := 1
	switch action {
	case "list":
		argsHelp, purpose, want = "[flags]", "List recorded messages, newest first, one page (--limit, then --cursor from the last line).", 0
	case "get":
		argsHelp, purpose = "[flags] ID", "Show the message ID: headers, text, attachments and, per flow, whether it matched and why not."
	case "raw":
		argsHelp, purpose = "[flags] ID", "Write the message ID as it was received (RFC 5322) to standard output."
	case "retrigger":
		argsHelp, purpose = "[flags] ID", "Match the message ID against the flows again and start a run for each flow that matches\nand has none for it yet (--force: for every flow that matches)."
	}
	fs := newFlags("messages "+action, argsHelp, purpose+"\n\n"+remoteHelp, env)
	r := addRemoteFlags(fs, env, action != "raw")
	var imap, cursor string
	var limit int
	var force bool
	switch action {
	case "list":
		fs.StringVar(&imap, "imap", "", "only the messages of this IMAP configuration")
		fs.IntVar(&limit, "limit", 50, "at most this many messages")
		fs.StringVar(&cursor, "cursor", "", "the page after the one that printed this cursor")
	case "retrigger":
		fs.BoolVar(&force, "force", false, "start a new run even for flows that already have one for the message")
	}
	pos, err := parseArgs(fs, env, rest, want, "ID")
	if err != nil {
		return err
	}
	var id int64
	if want == 1 {
		if id, err = strconv.ParseInt(pos[0], 10, 64); err != nil || id <= 0 {
			return usageErr(fs, env, fmt.Sprintf("ID %q: must be a message id (a positive whole number)", pos[0]))
		}
	}
	c, err := r.client(fs)
	if err != nil {
		return err
	}
	what := "messages " + action
	switch action {
	case "list":
		l, err := c.ListMessages(ctx, imap, limit, cursor)
		if err != nil {
			return explain(what, err)
		}
		return r.print(l, func(w io.Writer) error {
			rows := [][]string{}
			for _, m := range l.Items {
				rows = append(rows, []string{strconv.FormatInt(m.ID, 10), m.IMAP, timeText(&m.ReceivedAt), addresses(m.From), m.Subject,
					strconv.FormatInt(m.Size, 10)})
			}
			if err := table(w, "ID\tIMAP\tRECEIVED\tFROM\tSUBJECT\tSIZE", rows); err != nil {
				return err
			}
			if l.NextCursor != "" {
				fmt.Fprintf(w, "more: --cursor %s\n", l.NextCursor)
			}
			return nil
		})
	case "get":
		m, err := c.GetMessage(ctx, id)
		if err != nil {
			return explain(what, err)
		}
		return r.print(m, func(w io.Writer) error { return printDoc(w, m) })
	case "raw":
		data, err := c.RawMessage(ctx, id)
		if err != nil {
			return explain(what, err)
		}
		_, err = env.Stdout.Write(data)
		return err
	case "retrigger":
		res, err := c.Retrigger(ctx, id, force)
		if err != nil {
			return explain(what, err)
		}
		return r.print(res, func(w io.Writer) error { return triggerTable(w, res) })
	}
	return nil
}

func triggerTable(w io.Writer, res client.TriggerResult) error {
	runs := map[string]string{}
	for _, run := range res.Runs {
		runs[run.Flow] = run.ID
	}
	rows := [][]string{}
	for _, m := range res.Matches {
		run := runs[m.Flow]
		if run == "" {
			run = "-"
		}
		rows = append(rows, []string{m.Flow, yesNo(m.Matched), m.Reason, run})
	}
	if err := table(w, "FLOW\tMATCHED\tREASON\tRUN STARTED", rows); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%d run(s) started\n", len(res.Runs))
	return err
}

func addresses(as []mail.Address) string {
	var out []string
	for _, a := range as {
		if a.Address != "" {
			out = append(out, a.Address)
		} else {
			out = append(out, a.Name)
		}
	}
	return strings.Join(out, ", ")
}
