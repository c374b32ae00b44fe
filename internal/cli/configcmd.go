package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"mailtrigger/internal/client"
	"mailtrigger/internal/configfile"
)

// exportCmd is "mailtrigger export [-o FILE]": every IMAP configuration and
// flow of a service as one YAML document, secrets as placeholders.
func exportCmd(ctx context.Context, args []string, env Env) error {
	fs := newFlags("export", "[flags]",
		"Write every IMAP configuration and flow of a running service as one YAML document (see docs/cli.md).\n"+
			"Secrets are never written: each is a placeholder ${env:NAME} (such as SUPPORT_PASSWORD), resolved by apply.\n\n"+
			"The service is MAILTRIGGER_URL (or --url) and the token MAILTRIGGER_TOKEN (or --token).", env)
	r := addRemoteFlags(fs, env, false)
	out := fs.String("o", "", "write to FILE instead of standard output")
	if _, err := parseArgs(fs, env, args, 0, ""); err != nil {
		return err
	}
	c, err := r.client(fs)
	if err != nil {
		return err
	}
	imaps, err := c.AllIMAP(ctx)
	if err != nil {
		return explain("export: listing IMAP configurations", err)
	}
	flows, err := c.AllFlows(ctx)
	if err != nil {
		return explain("export: listing flows", err)
	}
	doc, envs := configfile.Export(imaps, flows)
	var buf bytes.Buffer
	if err := configfile.Encode(&buf, doc, envs); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if *out == "" || *out == "-" {
		_, err := env.Stdout.Write(buf.Bytes())
		return err
	}
	if err := os.WriteFile(*out, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	fmt.Fprintf(env.Stderr, "exported %d IMAP configuration(s) and %d flow(s) to %s\n", len(doc.IMAP), len(doc.Flows), *out)
	if len(envs) > 0 {
		fmt.Fprintf(env.Stderr, "apply needs these environment variables (or edit the placeholders to ${file:/path}): %s\n", strings.Join(envs, ", "))
	}
	return nil
}

// applyCmd is "mailtrigger apply -f FILE [--dry-run] [--prune]".
func applyCmd(ctx context.Context, args []string, env Env) error {
	fs := newFlags("apply", "-f FILE [--dry-run] [--prune] [--send-secrets] [flags]",
		"Make a running service match FILE (as written by export): print the plan (create, change, delete or\n"+
			"unchanged per object), then carry it out. The whole file is checked first, with the service's own rules;\n"+
			"when any object is invalid every problem is listed and nothing is changed. Placeholders ${env:NAME} and\n"+
			"${file:/path} are resolved from the environment and files. Secrets and header values are write-only, so\n"+
			"they are compared by presence only and sent with each object that is created or changed (with\n"+
			"--send-secrets: with every object that has them, to rotate them).\n\n"+
			"The service is MAILTRIGGER_URL (or --url) and the token MAILTRIGGER_TOKEN (or --token).", env)
	r := addRemoteFlags(fs, env, false)
	file := fs.String("f", "", "the configuration file (YAML or JSON); - for standard input")
	dryRun := fs.Bool("dry-run", false, "check the file and print the plan, change nothing")
	prune := fs.Bool("prune", false, "delete the IMAP configurations and flows the file does not name")
	sendSecrets := fs.Bool("send-secrets", false, "send the file's secrets and header values even to objects that are otherwise unchanged (to rotate them)")
	if _, err := parseArgs(fs, env, args, 0, ""); err != nil {
		return err
	}
	if *file == "" {
		return usageErr(fs, env, "-f FILE is required")
	}
	c, err := r.client(fs)
	if err != nil {
		return err
	}
	var data []byte
	if *file == "-" {
		data, err = io.ReadAll(env.Stdin)
	} else {
		data, err = os.ReadFile(*file)
	}
	if err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	src := configfile.Sources{
		LookupEnv: func(k string) (string, bool) { v := env.Getenv(k); return v, v != "" },
		ReadFile:  os.ReadFile,
	}
	desired, problems, err := configfile.Load(data, src)
	if err != nil {
		return fmt.Errorf("apply: %s: %w", *file, err)
	}
	var cur configfile.Current
	if cur.IMAP, err = c.AllIMAP(ctx); err != nil {
		return explain("apply: listing IMAP configurations", err)
	}
	if cur.Flows, err = c.AllFlows(ctx); err != nil {
		return explain("apply: listing flows", err)
	}
	plan, more := configfile.MakePlan(desired, cur, configfile.Options{Prune: *prune, SendSecrets: *sendSecrets})
	if problems = configfile.SortProblems(append(problems, more...), desired); len(problems) > 0 {
		fmt.Fprintf(env.Stderr, "%s: %d invalid object(s); nothing was changed:\n", *file, problems.Objects())
		for _, p := range problems {
			fmt.Fprintf(env.Stderr, "  %s\n", p)
		}
		return fmt.Errorf("apply: %s is invalid", *file)
	}
	plan.Print(env.Stdout)
	if *dryRun {
		fmt.Fprintln(env.Stdout, "Dry run: nothing was changed.")
		return nil
	}
	if plan.Count(configfile.Unchanged) == len(plan.Steps) {
		fmt.Fprintln(env.Stdout, "Nothing to do: the service matches the file.")
		return nil
	}
	done := 0
	for _, s := range plan.Steps {
		if s.Op == configfile.Unchanged {
			continue
		}
		if err := applyStep(ctx, c, s, env.Stdout); err != nil {
			return fmt.Errorf("apply: %s %s %s: %w\n(%d change(s) were made before this one; the rest were not)", s.Op, s.Kind, s.Name, err, done)
		}
		done++
	}
	fmt.Fprintf(env.Stdout, "Applied: %d created, %d changed, %d deleted.\n", plan.Count(configfile.Create), plan.Count(configfile.Change), plan.Count(configfile.Delete))
	return nil
}

// applyStep makes one change of a plan.
func applyStep(ctx context.Context, c *client.Client, s configfile.Step, out io.Writer) error {
	var err error
	var f client.Flow
	switch {
	case s.Kind == "imap" && s.Op == configfile.Create:
		_, err = c.CreateIMAP(ctx, s.Body)
	case s.Kind == "imap" && s.Op == configfile.Change:
		_, err = c.EditIMAP(ctx, s.Target, s.Body)
	case s.Kind == "imap" && s.Op == configfile.Delete:
		err = c.DeleteIMAP(ctx, s.Target)
	case s.Kind == "flow" && s.Op == configfile.Create:
		f, err = c.CreateFlow(ctx, s.Body)
	case s.Kind == "flow" && s.Op == configfile.Change:
		f, err = c.EditFlow(ctx, s.Target, s.Body)
	case s.Kind == "flow" && s.Op == configfile.Delete:
		err = c.DeleteFlow(ctx, s.Target)
	default:
		err = errors.New("unknown step")
	}
	if err != nil {
		var ce *client.Error
		if errors.As(err, &ce) {
			return apiError{ce}
		}
		return err
	}
	for i, a := range f.Activities {
		if a.Secret != "" {
			fmt.Fprintf(out, "flow %s: webhook signing secret of activities[%d] generated (shown once): %s\n", f.Name, i, a.Secret)
		}
	}
	return nil
}
