package cli

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"go.yaml.in/yaml/v3"

	"mailtrigger/internal/client"
	"mailtrigger/internal/config"
)

// The commands over the REST API (imap, flows, runs, messages, export,
// apply) share this: where the service is (MAILTRIGGER_URL, --url), the
// token (MAILTRIGGER_TOKEN, --token), the output format (-o table|json),
// flags and arguments in any order, and API errors shown field by field.

// remote holds the flags every API command has.
type remote struct {
	url, token, output string
	env                Env
}

// addRemoteFlags adds --url, --token and (when withOutput) -o to fs.
func addRemoteFlags(fs *flag.FlagSet, env Env, withOutput bool) *remote {
	r := &remote{env: env}
	r.url = env.Getenv("MAILTRIGGER_URL")
	config.SecretURLVar(fs, &r.url, "url", "the service's URL, such as http://127.0.0.1:8080 (env MAILTRIGGER_URL)")
	fs.StringVar(&r.token, "token", "", "an API token (env MAILTRIGGER_TOKEN; create one with: mailtrigger token create NAME)")
	if withOutput {
		fs.StringVar(&r.output, "o", "table", "output: table (for people) or json (for scripts)")
	}
	return r
}

// client checks the flags and returns a client of the service.
func (r *remote) client(fs *flag.FlagSet) (*client.Client, error) {
	if r.token == "" {
		r.token = r.env.Getenv("MAILTRIGGER_TOKEN")
	}
	switch {
	case r.url == "":
		return nil, usageErr(fs, r.env, "no service URL: set MAILTRIGGER_URL or --url")
	case !strings.HasPrefix(r.url, "http://") && !strings.HasPrefix(r.url, "https://"):
		// Shown with its password hidden (config.RedactURL); a value
		// that is no URL at all is not shown.
		shown := ""
		if v := config.RedactURL(r.url); v != "" {
			shown = fmt.Sprintf(" %q", v)
		}
		return nil, usageErr(fs, r.env, "--url"+shown+": must start with http:// or https://")
	case r.token == "":
		return nil, usageErr(fs, r.env, "no API token: set MAILTRIGGER_TOKEN or --token")
	case r.output != "" && r.output != "table" && r.output != "json":
		return nil, usageErr(fs, r.env, fmt.Sprintf("-o %q: must be table or json", r.output))
	}
	return &client.Client{BaseURL: r.url, Token: r.token, HTTP: &http.Client{Timeout: 2 * time.Minute}}, nil
}

func (r *remote) json() bool { return r.output == "json" }

// usageErr prints msg to standard error and returns errUsage (exit 2).
func usageErr(fs *flag.FlagSet, env Env, msg string) error {
	fmt.Fprintf(env.Stderr, "mailtrigger %s: %s\n", fs.Name(), msg)
	return errUsage
}

// parseArgs parses flags and positional arguments in any order (the flag
// package stops at the first argument) and returns the arguments. want is
// how many there must be (-1: any number).
func parseArgs(fs *flag.FlagSet, env Env, args []string, want int, names string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, errUsage
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if want >= 0 && len(pos) != want {
		if want == 0 {
			return nil, usageErr(fs, env, fmt.Sprintf("takes no arguments, got %q", pos))
		}
		return nil, usageErr(fs, env, fmt.Sprintf("want %s, got %d argument(s)", names, len(pos)))
	}
	return pos, nil
}

// apiError is a *client.Error shown as the API said it: the message, then
// every field that is wrong on a line of its own, then the flows that refer
// to what could not be deleted.
type apiError struct{ e *client.Error }

func (a apiError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%d %s)", a.e.Message, a.e.Status, a.e.Code)
	keys := make([]string, 0, len(a.e.Fields))
	for k := range a.e.Fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "\n  %s: %s", k, a.e.Fields[k])
	}
	if len(a.e.Flows) > 0 {
		fmt.Fprintf(&b, "\n  used by the flows: %s", strings.Join(a.e.Flows, ", "))
	}
	return b.String()
}

func (a apiError) Unwrap() error { return a.e }

// explain wraps an API error so that it prints field by field; what names
// the call (e.g. `imap create`).
func explain(what string, err error) error {
	if err == nil {
		return nil
	}
	var ce *client.Error
	if errors.As(err, &ce) {
		return fmt.Errorf("%s: %w", what, apiError{ce})
	}
	return fmt.Errorf("%s: %w", what, err)
}

// readBody reads a request body from file ("-": standard input), JSON or
// YAML, and returns it as JSON.
func readBody(env Env, file string) ([]byte, error) {
	var data []byte
	var err error
	if file == "-" {
		data, err = io.ReadAll(env.Stdin)
	} else {
		data, err = os.ReadFile(file)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the body: %w", err)
	}
	if json.Valid(data) {
		return data, nil
	}
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("%s is neither JSON nor YAML: %w", file, err)
	}
	if _, ok := v.(map[string]any); !ok {
		return nil, fmt.Errorf("%s: want an object (JSON or YAML)", file)
	}
	out, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return out, nil
}

// printJSON writes v indented.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// printDoc writes v for people: its JSON form as YAML, keys in the API's order.
func printDoc(w io.Writer, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var n yaml.Node
	if err := yaml.Unmarshal(data, &n); err != nil {
		return err
	}
	blockStyle(&n)
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return err
	}
	return enc.Close()
}

// print writes v as JSON (-o json), else with human (a table, or YAML).
func (r *remote) print(v any, human func(w io.Writer) error) error {
	if r.json() {
		return printJSON(r.env.Stdout, v)
	}
	return human(r.env.Stdout)
}

// table writes a header and rows aligned in columns.
func table(w io.Writer, header string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		for i, c := range r {
			r[i] = oneLine(c)
		}
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// oneLine keeps a cell on its line and its column: control characters and
// tabs become spaces, and long text is cut.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if r := []rune(s); len(r) > 60 {
		s = string(r[:59]) + "…"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func timeText(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

// subcommand splits args into an action among actions and the rest; it
// prints the usage (exit 2, or 0 for --help) when there is none.
func subcommand(env Env, cmd string, args []string, help string, actions ...string) (string, []string, error) {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
		fmt.Fprintf(env.Stderr, "Usage: mailtrigger %s %s\n\n%s\n", cmd, strings.Join(actions, "|"), help)
		if len(args) == 0 {
			return "", nil, errUsage
		}
		return "", nil, flag.ErrHelp
	}
	if !slices.Contains(actions, args[0]) {
		fmt.Fprintf(env.Stderr, "mailtrigger %s: unknown action %q; want %s\n", cmd, args[0], strings.Join(actions, ", "))
		return "", nil, errUsage
	}
	return args[0], args[1:], nil
}

// blockStyle makes n and its children plain YAML: block style, quotes only
// where needed (JSON read as YAML is in flow style, every string quoted).
func blockStyle(n *yaml.Node) {
	n.Style = 0
	for _, c := range n.Content {
		blockStyle(c)
	}
}
