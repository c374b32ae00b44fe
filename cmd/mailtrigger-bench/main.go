// Command mailtrigger-bench measures the mailtrigger service end to end
// against floors measured in the same run (package internal/bench;
// docs/benchmarks.md). It is a command of its own so that the product,
// cmd/mailtrigger, links none of the test servers the bench starts.
//
// Run it from a checkout: go run ./cmd/mailtrigger-bench -postgres private.
// It builds the service (mailtrigger/cmd/mailtrigger) with go build into a
// temporary directory, unless -service names a binary to measure.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"mailtrigger/internal/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// errUsage means the usage was already printed.
var errUsage = errors.New("usage")

// Main runs the bench with args (without the program name) and returns the
// process exit code: 0, 1 when it failed, 2 for a usage error.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	err := run(ctx, args, stdout, stderr)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	}
	fmt.Fprintf(stderr, "mailtrigger-bench: %v\n", err)
	return 1
}

const purpose = `Measure the service end to end: a private Dovecot, the mailtrigger binary running "serve" as a
child process on a fresh database, an in-process IMAP server for many idle mailboxes and a local webhook
listener; every figure beside a floor measured in the same run. Prints a table and, with -doc,
writes the results into that file (docs/benchmarks.md) between its bench markers.`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mailtrigger-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: mailtrigger-bench [flags]\n\n%s\n\nFlags:\n", purpose)
		fs.PrintDefaults()
	}
	o := bench.FullOptions()
	fs.StringVar(&o.Postgres, "postgres", "", `also run the backlog and delivery scenarios on PostgreSQL: "private" starts a private server, else a postgres:// URL whose user may create databases`)
	only := fs.String("only", "", "comma-separated scenarios to run: "+strings.Join(bench.Scenarios, ",")+" (default all)")
	fs.IntVar(&o.LatencyMessages, "latency-messages", o.LatencyMessages, "scenario 1: messages appended one at a time")
	fs.DurationVar(&o.GapMin, "gap-min", o.GapMin, "scenario 1: least gap between appends")
	fs.DurationVar(&o.GapMax, "gap-max", o.GapMax, "scenario 1: greatest gap between appends")
	fs.IntVar(&o.BacklogMessages, "backlog-messages", o.BacklogMessages, "scenario 2: messages in the mailbox before it is watched")
	fs.StringVar(&o.BacklogAfter, "backlog-after", "none", "scenario 2: afterProcessing of the backlog mailbox: none, seen, delete or move (delete against none measures the durable-delete step)")
	fs.StringVar(&o.BacklogServer, "backlog-server", "imaps", "scenario 2: read the backlog over imaps or pop3s")
	fs.DurationVar(&o.BacklogRTT, "backlog-rtt", 0, "scenario 2: a round trip of this length between Dovecot and its clients (the service and the floor's), as a mail server across a network has")
	fs.DurationVar(&o.PostgresRTT, "postgres-rtt", 0, "with -postgres: a round trip of this length between the services and PostgreSQL, as a database server on another host has")
	fs.IntVar(&o.Mailboxes, "mailboxes", o.Mailboxes, "scenario 3: mailboxes in IDLE")
	fs.DurationVar(&o.Rest, "rest", o.Rest, "scenario 3: how long CPU is measured at rest")
	fs.IntVar(&o.Probes, "probes", o.Probes, "scenario 3: messages to random mailboxes under load")
	fs.IntVar(&o.Runs, "runs", o.Runs, "scenario 4: runs queued")
	fs.Int64Var(&o.BigSize, "big-size", o.BigSize, "scenario 5: size of the big message in bytes (also the size cap)")
	delays := fs.String("delays", "50ms,200ms", "scenario 6: comma-separated times the endpoint holds each answer")
	remoteRuns := fs.String("remote-runs", "1000,10000", "scenario 6: comma-separated numbers of runs queued")
	fs.IntVar(&o.RetryRuns, "retry-runs", o.RetryRuns, "scenario 7: runs queued for the endpoint answering 503 + Retry-After to 1 in 5")
	fs.IntVar(&o.FairRuns, "fair-runs", o.FairRuns, "scenario 8: runs queued for each of the slow and the fast endpoint")
	fs.IntVar(&o.FairRepeat, "fair-repeat", o.FairRepeat, "scenario 8: how many times the fast flow is measured alone and beside the slow one (medians reported)")
	fs.DurationVar(&o.SlowDelay, "slow-delay", o.SlowDelay, "scenario 8: how long the slow endpoint holds each answer")
	fs.StringVar(&o.MemoryLimit, "memory-limit", "", "the services' soft memory limit (MAILTRIGGER_MEMORY_LIMIT, such as 400MiB; default none)")
	fs.StringVar(&o.ProfileDir, "profile-dir", "", "keep CPU and heap profiles of the service in scenario 2 in this directory")
	service := fs.String("service", "", "the mailtrigger binary to measure, to compare builds (default: mailtrigger/cmd/mailtrigger built from this checkout with go build)")
	doc := fs.String("doc", "", "write the results into this markdown file (docs/benchmarks.md)")
	quiet := fs.Bool("q", false, "no progress lines")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return errUsage
	}
	if !slices.Contains([]string{"none", "seen", "delete", "move"}, o.BacklogAfter) {
		return fmt.Errorf("-backlog-after: %q is not none, seen, delete or move", o.BacklogAfter)
	}
	if o.BacklogServer != "imaps" && o.BacklogServer != "pop3s" {
		return fmt.Errorf("-backlog-server: %q is not imaps or pop3s", o.BacklogServer)
	}
	if o.BacklogServer == "pop3s" && (o.BacklogAfter == "seen" || o.BacklogAfter == "move") {
		return fmt.Errorf("-backlog-server pop3s: -backlog-after must be none or delete")
	}
	o.Delays, o.RemoteRuns = nil, nil
	for _, v := range strings.Split(*delays, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil || d <= 0 {
			return fmt.Errorf("-delays: %q is not a positive duration like 50ms", v)
		}
		o.Delays = append(o.Delays, d)
	}
	for _, v := range strings.Split(*remoteRuns, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 2 {
			return fmt.Errorf("-remote-runs: %q is not a number of runs (at least 2)", v)
		}
		o.RemoteRuns = append(o.RemoteRuns, n)
	}
	if *only != "" {
		for _, name := range strings.Split(*only, ",") {
			if !slices.Contains(bench.Scenarios, name) {
				return fmt.Errorf("-only: unknown scenario %q; want some of %s", name, strings.Join(bench.Scenarios, ","))
			}
			o.Only = append(o.Only, name)
		}
	}
	if !*quiet {
		o.Log = stderr
	}
	o.Binary = *service
	if o.Binary == "" {
		dir, err := os.MkdirTemp("", "mailtrigger-bench-service-")
		if err != nil {
			return fmt.Errorf("creating a directory for the service binary: %w", err)
		}
		defer os.RemoveAll(dir)
		if o.Log != nil {
			fmt.Fprintf(o.Log, "%s  building the service: go build %s\n", time.Now().Format("15:04:05"), bench.ServicePackage)
		}
		if o.Binary, err = bench.BuildService(ctx, dir); err != nil {
			return fmt.Errorf("%w\nrun it in a checkout of mailtrigger, or name the binary to measure with -service", err)
		}
	}
	rep, err := bench.Run(ctx, o)
	if rep != nil {
		if terr := rep.Table(stdout); terr != nil {
			return terr
		}
	}
	if err != nil {
		return err
	}
	if *doc != "" {
		if err := bench.WriteDoc(*doc, rep.Markdown(docCommand(args))); err != nil {
			return err
		}
	}
	if len(rep.Errors) > 0 {
		return fmt.Errorf("%d scenario(s) failed", len(rep.Errors))
	}
	return nil
}

// docCommand is the command the doc shows: this run's, from a checkout,
// without where its profiles went or another binary measured.
func docCommand(args []string) string {
	var kept []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		name := strings.TrimLeft(a, "-")
		if name == "profile-dir" || name == "service" {
			i++ // and its value
			continue
		}
		if strings.HasPrefix(name, "profile-dir=") || strings.HasPrefix(name, "service=") {
			continue
		}
		kept = append(kept, a)
	}
	return strings.TrimSpace("go run ./cmd/mailtrigger-bench " + strings.Join(kept, " "))
}
