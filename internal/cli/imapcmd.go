package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"mailtrigger/internal/client"
	"mailtrigger/internal/imapconf"
)

const remoteHelp = `The service is MAILTRIGGER_URL (or --url) and the token MAILTRIGGER_TOKEN (or
--token). Output is a table for people, or JSON with -o json. Exit status: 0
done, 1 the API refused (every wrong field is listed) or failed, 2 wrong usage.`

// imapCmd is "mailtrigger imap ACTION": the IMAP configurations over the API.
func imapCmd(ctx context.Context, args []string, env Env) error {
	action, rest, err := subcommand(env, "imap", args, "Manage IMAP configurations (mailboxes) of a running service.\n\n"+remoteHelp,
		"list", "get", "create", "edit", "duplicate", "delete", "test")
	if err != nil {
		return err
	}
	var argsHelp, purpose string
	switch action {
	case "list":
		argsHelp, purpose = "[flags]", "List the IMAP configurations with their state."
	case "get":
		argsHelp, purpose = "[flags] NAME", "Show the IMAP configuration NAME and its state."
	case "create":
		argsHelp, purpose = "[flags] -f FILE", "Create an IMAP configuration from FILE (JSON or YAML, the API's body; - reads standard input)."
	case "edit":
		argsHelp, purpose = "[flags] NAME -f FILE", "Replace the IMAP configuration NAME by FILE (JSON or YAML; - reads standard input).\nA secret left out keeps the stored one while the server and user stay the same."
	case "duplicate":
		argsHelp, purpose = "[flags] NAME", "Copy the IMAP configuration NAME (the copy starts disabled). The copy's password or\nclient secret is read from the first line of standard input, or the body from -f FILE."
	case "delete":
		argsHelp, purpose = "[flags] NAME", "Delete the IMAP configuration NAME (refused while a flow uses it)."
	case "test":
		argsHelp, purpose = "[flags] NAME | -f FILE", "Test the connection of the saved configuration NAME, or of the unsaved one in FILE.\nExit status 1 when the test fails."
	}
	fs := newFlags("imap "+action, argsHelp, purpose+"\n\n"+remoteHelp, env)
	r := addRemoteFlags(fs, env, true)
	var file, newName *string
	if action == "create" || action == "edit" || action == "duplicate" || action == "test" {
		file = fs.String("f", "", "the request body: a JSON or YAML file, - for standard input")
	}
	if action == "duplicate" {
		newName = fs.String("name", "", "the copy's name (default NAME_copied, NAME_copied_2 …)")
	}
	pos, err := parseArgs(fs, env, rest, -1, "NAME")
	if err != nil {
		return err
	}
	want := 1
	if action == "list" || action == "create" || action == "test" && *file != "" {
		want = 0
	}
	if len(pos) != want {
		if want == 0 {
			return usageErr(fs, env, fmt.Sprintf("takes no arguments, got %q", pos))
		}
		return usageErr(fs, env, fmt.Sprintf("want NAME, got %d argument(s)", len(pos)))
	}
	if (action == "create" || action == "edit") && *file == "" {
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
	what := "imap " + action
	switch action {
	case "list":
		vs, err := c.AllIMAP(ctx)
		if err != nil {
			return explain(what, err)
		}
		return r.print(client.List[imapconf.View]{Items: vs}, func(w io.Writer) error { return imapTable(w, vs) })
	case "get":
		v, err := c.GetIMAP(ctx, name)
		if err != nil {
			return explain(what, err)
		}
		return r.print(v, func(w io.Writer) error { return printDoc(w, v) })
	case "create", "edit":
		body, err := readBody(env, *file)
		if err != nil {
			return err
		}
		var v imapconf.View
		if action == "create" {
			v, err = c.CreateIMAP(ctx, body)
		} else {
			v, err = c.EditIMAP(ctx, name, body)
		}
		if err != nil {
			return explain(what, err)
		}
		return r.print(v, func(w io.Writer) error {
			_, err := fmt.Fprintf(w, "imap %q %sd\n", v.Name, action)
			return err
		})
	case "duplicate":
		var body any
		if *file != "" {
			data, err := readBody(env, *file)
			if err != nil {
				return err
			}
			body = data
		} else {
			orig, err := c.GetIMAP(ctx, name)
			if err != nil {
				return explain(what, err)
			}
			line, err := bufio.NewReader(env.Stdin).ReadString('\n')
			if err != nil && !errors.Is(err, io.EOF) {
				return fmt.Errorf("reading the secret from standard input: %w", err)
			}
			secret := strings.TrimRight(line, "\r\n")
			in := imapconf.DuplicateInput{}
			if *newName != "" {
				in.Name = newName
			}
			switch {
			case orig.HasClientSecret && !orig.HasPassword:
				in.ClientSecret = &secret
			default:
				in.Password = &secret
			}
			body = in
		}
		v, err := c.DuplicateIMAP(ctx, name, body)
		if err != nil {
			return explain(what, err)
		}
		return r.print(v, func(w io.Writer) error {
			_, err := fmt.Fprintf(w, "imap %q duplicated as %q (disabled)\n", name, v.Name)
			return err
		})
	case "delete":
		if err := c.DeleteIMAP(ctx, name); err != nil {
			return explain(what, err)
		}
		if r.json() {
			return printJSON(env.Stdout, map[string]any{"deleted": name})
		}
		fmt.Fprintf(env.Stdout, "imap %q deleted\n", name)
		return nil
	case "test":
		var res client.TestResult
		if *file != "" {
			body, err := readBody(env, *file)
			if err != nil {
				return err
			}
			res, err = c.TestUnsavedIMAP(ctx, body)
			if err != nil {
				return explain(what, err)
			}
		} else if res, err = c.TestIMAP(ctx, name); err != nil {
			return explain(what, err)
		}
		if err := r.print(res, func(w io.Writer) error { return printDoc(w, res) }); err != nil {
			return err
		}
		if ok, _ := res["ok"].(bool); !ok {
			return fmt.Errorf("%s: the connection test failed at step %v: %v", what, res["step"], res["error"])
		}
		return nil
	}
	return nil
}

func imapTable(w io.Writer, vs []imapconf.View) error {
	rows := [][]string{}
	for _, v := range vs {
		server := v.Host
		if v.Port != 0 {
			server += ":" + strconv.Itoa(v.Port)
		}
		if v.Type == imapconf.TypeMSGraph {
			server = v.GraphURL
		}
		state := "-"
		if v.Status != nil {
			state = v.Status.State
		}
		rows = append(rows, []string{v.Name, v.ServerType + "/" + v.Type, server, v.Username, yesNo(v.Enabled), state})
	}
	return table(w, "NAME\tKIND\tSERVER\tUSERNAME\tENABLED\tSTATE", rows)
}
