// Package cli is the mailtrigger command: serve, migrate, token, user and
// version. main only calls Main. (The bench is a command of its own,
// cmd/mailtrigger-bench, so that this one links no test code.)
package cli

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"
	"text/tabwriter"
	"time"

	"mailtrigger/internal/auth"
	"mailtrigger/internal/config"
	"mailtrigger/internal/datadir"
	"mailtrigger/internal/secret"
	"mailtrigger/internal/store"
	"mailtrigger/internal/valid"
)

// Version is set at build time with -ldflags "-X mailtrigger/internal/cli.Version=…".
var Version = ""

// Env is the process's surroundings, passed in so that tests can run the CLI
// in-process.
type Env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Getenv func(string) string
}

// OSEnv is the real process's surroundings.
func OSEnv() Env {
	return Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}
}

// errUsage means the usage was already printed.
var errUsage = errors.New("usage")

const usage = `mailtrigger reads mailboxes and starts process flows when a subject matches.

Usage:
  mailtrigger serve                  run the service (UI, API, mailbox watchers)
  mailtrigger migrate                apply database migrations and exit
  mailtrigger token create NAME      create an API token and print it once
  mailtrigger token list             list API tokens (names and dates, never the tokens)
  mailtrigger token revoke NAME      revoke an API token
  mailtrigger user set-password NAME set (or create) a user's password
  mailtrigger backup FILE            copy the SQLite database to FILE, also while it runs
  mailtrigger restore FILE           restore a backup into a stopped data directory
  mailtrigger version                print the version

Over the API of a running service (MAILTRIGGER_URL, MAILTRIGGER_TOKEN):
  mailtrigger imap list|get|create|edit|duplicate|delete|test
  mailtrigger flows list|get|create|edit|delete
  mailtrigger runs list|get|retry
  mailtrigger messages list|get|raw|retrigger
  mailtrigger export [-o FILE]       write every IMAP configuration and flow as YAML
  mailtrigger apply -f FILE [--dry-run] [--prune]
                                     make the service match FILE, printing the plan first

Run "mailtrigger COMMAND --help" for a command's flags. Settings come from the
environment (MAILTRIGGER_*); flags override them.
`

// Main runs the command in args (without the program name) and returns the
// process exit code.
func Main(ctx context.Context, args []string, env Env) int {
	err := run(ctx, args, env)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	}
	fmt.Fprintf(env.Stderr, "mailtrigger: %v\n", err)
	return 1
}

func run(ctx context.Context, args []string, env Env) error {
	if len(args) == 0 {
		fmt.Fprint(env.Stderr, usage)
		return errUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return serve(ctx, rest, env)
	case "migrate":
		return migrate(ctx, rest, env)
	case "token":
		return token(ctx, rest, env)
	case "user":
		return user(ctx, rest, env)
	case "imap":
		return imapCmd(ctx, rest, env)
	case "flows":
		return flowsCmd(ctx, rest, env)
	case "runs":
		return runsCmd(ctx, rest, env)
	case "messages":
		return messagesCmd(ctx, rest, env)
	case "export":
		return exportCmd(ctx, rest, env)
	case "apply":
		return applyCmd(ctx, rest, env)
	case "backup":
		return backup(ctx, rest, env)
	case "restore":
		return restore(ctx, rest, env)
	case "version":
		fs := newFlags("version", "", "print the version", env)
		if err := fs.Parse(rest); err != nil {
			return err
		}
		fmt.Fprintln(env.Stdout, "mailtrigger", version())
		return nil
	case "bench":
		// Moved out, so that the product links none of its test servers.
		fmt.Fprintln(env.Stderr, "mailtrigger: the bench is a command of its own: go run ./cmd/mailtrigger-bench (in a checkout)")
		return errUsage
	case "help", "-h", "--help", "-help":
		fmt.Fprint(env.Stdout, usage)
		return nil
	}
	fmt.Fprintf(env.Stderr, "mailtrigger: unknown command %q\n\n%s", cmd, usage)
	return errUsage
}

func version() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// newFlags returns a flag set whose --help prints the command's usage line
// and purpose before its flags.
func newFlags(name, args, purpose string, env Env) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(env.Stderr, "Usage: mailtrigger %s %s\n\n%s\n", name, args, purpose)
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			fmt.Fprintln(env.Stderr, "\nFlags:")
			fs.PrintDefaults()
		}
	}
	return fs
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	level, _ := cfg.Level()
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// openStore loads the key and opens (and migrates) the database.
func openStore(ctx context.Context, cfg config.Config, log *slog.Logger) (*store.Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.SecretKey == "" || !cfg.IsPostgres() {
		// The key file, the lock file and the database live here: 0700 and
		// 0600, fixed at every start (store.Open does the database files).
		if err := datadir.Secure(cfg.DataDir, log, secret.KeyFileName, lockFileName); err != nil {
			return nil, err
		}
	}
	key, created, err := secret.LoadKey(cfg.SecretKey, cfg.DataDir)
	if err != nil {
		return nil, err
	}
	if created {
		log.Info("created secret key file; back it up, and set MAILTRIGGER_SECRET_KEY on every replica when scaling out", "dir", cfg.DataDir)
	}
	box, err := secret.NewBox(key)
	if err != nil {
		return nil, err
	}
	return store.Open(ctx, store.Options{DatabaseURL: cfg.DatabaseURL, DataDir: cfg.DataDir, Box: box, Logger: log,
		IdleInTransaction: idleInTransaction(cfg.LeaseTTL)})
}

// idleInTransaction is how long a PostgreSQL session may sit idle inside a
// transaction (store.Options.IdleInTransaction): a third of the mailbox
// lease time (ttl, 0 for its default of 15 s), at most the store's default,
// so that a replica frozen inside a transaction has let go of its lease row
// well before the lease runs out and another replica would take it over.
func idleInTransaction(ttl time.Duration) time.Duration {
	if ttl <= 0 {
		ttl = 15 * time.Second
	}
	return min(store.DefaultIdleInTransaction, ttl/3)
}

func migrate(ctx context.Context, args []string, env Env) error {
	cfg := config.FromEnv(env.Getenv)
	fs := newFlags("migrate", "[flags]", "Apply the embedded database migrations and exit (serve applies them too).", env)
	cfg.StoreFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := newLogger(cfg, env.Stderr)
	st, err := openStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.Ready(ctx); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "database (%s) is up to date\n", st.Dialect())
	return nil
}

func token(ctx context.Context, args []string, env Env) error {
	const sub = "create NAME | list | revoke NAME"
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
		fmt.Fprintf(env.Stderr, "Usage: mailtrigger token %s\n\nManage API tokens. A token is shown once, when created; only its hash is stored.\n", sub)
		if len(args) == 0 {
			return errUsage
		}
		return nil
	}
	cfg := config.FromEnv(env.Getenv)
	action := args[0]
	var purpose, argsHelp string
	switch action {
	case "create":
		argsHelp, purpose = "[flags] NAME", "Create an API token named NAME and print it once. Use it as: Authorization: Bearer TOKEN"
	case "list":
		argsHelp, purpose = "[flags]", "List API tokens: names, creation and last use. Tokens themselves are never shown again."
	case "revoke":
		argsHelp, purpose = "[flags] NAME", "Revoke (delete) the API token named NAME."
	default:
		fmt.Fprintf(env.Stderr, "mailtrigger token: unknown action %q; want %s\n", action, sub)
		return errUsage
	}
	fs := newFlags("token "+action, argsHelp, purpose, env)
	cfg.StoreFlags(fs)
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	wantArgs := 1
	if action == "list" {
		wantArgs = 0
	}
	if fs.NArg() != wantArgs {
		fs.Usage()
		return errUsage
	}
	name := fs.Arg(0)
	if action == "create" {
		if m := valid.Name(name); m != "" {
			return fmt.Errorf("token name %q: %s", name, m)
		}
	}
	st, err := openStore(ctx, cfg, newLogger(cfg, env.Stderr))
	if err != nil {
		return err
	}
	defer st.Close()
	switch action {
	case "create":
		tok, hash := auth.NewToken()
		if err := st.CreateToken(ctx, name, hash); err != nil {
			if errors.Is(err, store.ErrConflict) {
				return fmt.Errorf("a token named %q exists already; revoke it or choose another name", name)
			}
			return err
		}
		fmt.Fprintln(env.Stdout, tok)
	case "list":
		toks, err := st.ListTokens(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tCREATED\tLAST USED")
		for _, t := range toks {
			last := "never"
			if t.LastUsedAt != nil {
				last = t.LastUsedAt.UTC().Format("2006-01-02 15:04:05Z")
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", t.Name, t.CreatedAt.UTC().Format("2006-01-02 15:04:05Z"), last)
		}
		return tw.Flush()
	case "revoke":
		if err := st.RevokeToken(ctx, name); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("no token named %q", name)
			}
			return err
		}
		fmt.Fprintf(env.Stdout, "token %q revoked\n", name)
	}
	return nil
}

func user(ctx context.Context, args []string, env Env) error {
	if len(args) == 0 || args[0] != "set-password" {
		fmt.Fprintf(env.Stderr, "Usage: mailtrigger user set-password [flags] NAME\n")
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
			return nil
		}
		return errUsage
	}
	cfg := config.FromEnv(env.Getenv)
	fs := newFlags("user set-password", "[flags] NAME",
		"Set the password of the user NAME (created if missing). The password is read from the first line of\nstandard input, or generated and printed once with --generate.", env)
	cfg.StoreFlags(fs)
	generate := fs.Bool("generate", false, "generate a random password and print it once")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errUsage
	}
	name := fs.Arg(0)
	if m := valid.Name(name); m != "" {
		return fmt.Errorf("user name %q: %s", name, m)
	}
	var password string
	if *generate {
		password = auth.RandomPassword()
	} else {
		line, err := bufio.NewReader(env.Stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("reading password from standard input: %w", err)
		}
		password = strings.TrimRight(line, "\r\n")
		if m := auth.CheckNewPassword(password); m != "" {
			return fmt.Errorf("the password (first line of standard input) %s; or use --generate", m)
		}
	}
	hash, err := auth.HashPassword(password)
	if err != nil {
		return err
	}
	st, err := openStore(ctx, cfg, newLogger(cfg, env.Stderr))
	if err != nil {
		return err
	}
	defer st.Close()
	created, err := st.SetUserPassword(ctx, name, hash)
	if err != nil {
		return err
	}
	verb := "updated"
	if created {
		verb = "created"
	}
	if *generate {
		fmt.Fprintf(env.Stdout, "user %q %s; password: %s\n", name, verb, password)
	} else {
		fmt.Fprintf(env.Stdout, "user %q %s\n", name, verb)
	}
	return nil
}
