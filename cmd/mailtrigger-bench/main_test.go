package main

import (
	"context"
	"strings"
	"testing"
)

func runBench(args ...string) (code int, stdout, stderr string) {
	var out, errb strings.Builder
	code = Main(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// TestFlags checks the usage and the flags refused before anything starts
// (the scenarios themselves run in internal/bench's TestSmoke).
func TestFlags(t *testing.T) {
	code, _, errOut := runBench("-h")
	if code != 0 || !strings.Contains(errOut, "Usage: mailtrigger-bench [flags]") {
		t.Errorf("-h: got %d %q", code, errOut)
	}
	for _, f := range []string{"-postgres", "-only", "-service", "-doc", "-profile-dir", "-fair-repeat", "-q"} {
		if !strings.Contains(errOut, "\n  "+f+" ") && !strings.Contains(errOut, "\n  "+f+"\t") {
			t.Errorf("-h does not list %s:\n%s", f, errOut)
		}
	}
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"extra"}, 2, "Usage: mailtrigger-bench"},
		{[]string{"-frobnicate"}, 1, "mailtrigger-bench: flag provided but not defined: -frobnicate"},
		{[]string{"-only", "latency,nosuch"}, 1, `mailtrigger-bench: -only: unknown scenario "nosuch"`},
		{[]string{"-backlog-after", "burn"}, 1, "-backlog-after"},
		{[]string{"-backlog-server", "pop3s", "-backlog-after", "seen"}, 1, "must be none or delete"},
		{[]string{"-delays", "50ms,0s"}, 1, "-delays"},
		{[]string{"-remote-runs", "1"}, 1, "-remote-runs"},
	} {
		code, out, errOut := runBench(tt.args...)
		if code != tt.code || !strings.Contains(errOut, tt.want) || out != "" {
			t.Errorf("%q: got %d %q %q, want %d and %q", tt.args, code, out, errOut, tt.code, tt.want)
		}
	}
}

func TestDocCommand(t *testing.T) {
	for args, want := range map[string]string{
		"":                                       "go run ./cmd/mailtrigger-bench",
		"-postgres private -only delivery":       "go run ./cmd/mailtrigger-bench -postgres private -only delivery",
		"-service /tmp/old -only big -q":         "go run ./cmd/mailtrigger-bench -only big -q",
		"--profile-dir=/tmp/p -doc d.md -runs 5": "go run ./cmd/mailtrigger-bench -doc d.md -runs 5",
	} {
		if got := docCommand(strings.Fields(args)); got != want {
			t.Errorf("docCommand(%q) = %q, want %q", args, got, want)
		}
	}
}
