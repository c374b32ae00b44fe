package cli

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHelpOnEveryAPICommand(t *testing.T) {
	for _, args := range [][]string{
		{"imap", "--help"}, {"imap", "list", "--help"}, {"imap", "get", "--help"}, {"imap", "create", "--help"}, {"imap", "edit", "--help"},
		{"imap", "duplicate", "--help"}, {"imap", "delete", "--help"}, {"imap", "test", "--help"},
		{"flows", "--help"}, {"flows", "list", "--help"}, {"flows", "get", "--help"}, {"flows", "create", "--help"},
		{"flows", "edit", "--help"}, {"flows", "delete", "--help"},
		{"runs", "--help"}, {"runs", "list", "--help"}, {"runs", "get", "--help"}, {"runs", "retry", "--help"},
		{"messages", "--help"}, {"messages", "list", "--help"}, {"messages", "get", "--help"}, {"messages", "raw", "--help"},
		{"messages", "retrigger", "--help"}, {"export", "--help"}, {"apply", "--help"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			code, out, errOut := runCLI(t, nil, "", args...)
			if code != 0 || !strings.Contains(out+errOut, "Usage") {
				t.Errorf("got exit %d %q, want 0 and a usage text", code, out+errOut)
			}
		})
	}
}

func TestAPICommandUsage(t *testing.T) {
	vars := map[string]string{"MAILTRIGGER_URL": "http://127.0.0.1:1", "MAILTRIGGER_TOKEN": "t"}
	for _, c := range []struct {
		vars map[string]string
		args []string
		want string
	}{
		{nil, []string{"imap", "list"}, "MAILTRIGGER_URL"},
		{map[string]string{"MAILTRIGGER_URL": "http://127.0.0.1:1"}, []string{"imap", "list"}, "MAILTRIGGER_TOKEN"},
		{vars, []string{"imap"}, "Usage"},
		{vars, []string{"imap", "frob"}, "unknown action"},
		{vars, []string{"imap", "get"}, "want NAME"},
		{vars, []string{"imap", "get", "a", "b"}, "want NAME"},
		{vars, []string{"imap", "create"}, "-f FILE is required"},
		{vars, []string{"flows", "list", "-o", "xml"}, "must be table or json"},
		{vars, []string{"messages", "get", "x"}, "must be a message id"},
		{vars, []string{"apply"}, "-f FILE is required"},
		{vars, []string{"export", "extra"}, "takes no arguments"},
		{map[string]string{"MAILTRIGGER_URL": "127.0.0.1:1", "MAILTRIGGER_TOKEN": "t"}, []string{"runs", "list"}, "http://"},
	} {
		code, _, errOut := runCLI(t, c.vars, "", c.args...)
		if code != 2 || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: got exit %d %q, want 2 and %q", c.args, code, errOut, c.want)
		}
	}
}

// TestAPIErrorsNameTheFields checks, against a stand-in API, that a refused
// request exits 1 listing every field as the API named it, that flags may
// follow arguments, and that -o json prints the API's answer.
func TestAPIErrorsNameTheFields(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" {
			w.WriteHeader(401)
			fmt.Fprint(w, `{"error":{"code":"unauthorized","message":"unknown or revoked token"}}`)
			return
		}
		switch r.Method + " " + r.URL.Path {
		case "POST /api/v1/imap":
			w.WriteHeader(400)
			fmt.Fprint(w, `{"error":{"code":"validation_failed","message":"the request has invalid fields","fields":{"port":"must be between 1 and 65535","name":"required"}}}`)
		case "DELETE /api/v1/imap/support":
			w.WriteHeader(409)
			fmt.Fprint(w, `{"error":{"code":"in_use","message":"in use"},"flows":["a","b"]}`)
		case "GET /api/v1/runs/r1":
			fmt.Fprint(w, `{"id":"r1","flow":"f","imap":"i","messageId":3,"status":"failed","attemptCount":1,"createdAt":"2026-12-01T10:00:00Z","attempts":[]}`)
		default:
			w.WriteHeader(404)
			fmt.Fprint(w, `{"error":{"code":"not_found","message":"no such thing"}}`)
		}
	}))
	defer srv.Close()
	vars := map[string]string{"MAILTRIGGER_URL": srv.URL, "MAILTRIGGER_TOKEN": "tok"}

	code, _, errOut := runCLI(t, vars, `{"port":0}`, "imap", "create", "-f", "-")
	if code != 1 || !strings.Contains(errOut, "\n  name: required\n  port: must be between 1 and 65535") {
		t.Errorf("imap create: got %d %q", code, errOut)
	}
	code, _, errOut = runCLI(t, vars, "", "imap", "delete", "support")
	if code != 1 || !strings.Contains(errOut, "used by the flows: a, b") {
		t.Errorf("imap delete: got %d %q", code, errOut)
	}
	code, out, _ := runCLI(t, vars, "", "runs", "get", "r1", "-o", "json")
	var run map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &run) != nil || run["status"] != "failed" {
		t.Errorf("runs get -o json: got %d %q", code, out)
	}
	code, out, _ = runCLI(t, vars, "", "runs", "get", "r1")
	if code != 0 || !strings.Contains(out, "status: failed") {
		t.Errorf("runs get: got %d %q", code, out)
	}
	code, _, errOut = runCLI(t, map[string]string{"MAILTRIGGER_URL": srv.URL}, "", "flows", "list", "--token", "bad")
	if code != 1 || !strings.Contains(errOut, "401 unauthorized") {
		t.Errorf("a bad --token: got %d %q", code, errOut)
	}
}

// TestUsageHidesSecrets: -h and a mistyped flag print the usage, whose
// defaults come from the environment; passwords in MAILTRIGGER_DATABASE_URL
// and MAILTRIGGER_URL never appear in it.
func TestUsageHidesSecrets(t *testing.T) {
	vars := map[string]string{
		"MAILTRIGGER_DATABASE_URL": "postgres://mailtrigger:S3cr3t-DB-pa55@db.internal:5432/mt",
		"MAILTRIGGER_URL":          "https://ops:S3cr3t-URL-pa55@mailtrigger.example",
		"MAILTRIGGER_TOKEN":        "S3cr3t-token",
	}
	for _, args := range [][]string{
		{"serve", "-listne", "x"}, {"serve", "-h"}, {"migrate", "-h"}, {"token", "create", "-h"}, {"user", "set-password", "-x"},
		{"backup", "-h"}, {"restore", "-h"}, {"imap", "list", "-h"}, {"flows", "list", "-x"}, {"export", "-h"}, {"apply", "-h"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			_, out, errOut := runCLI(t, vars, "", args...)
			if !strings.Contains(out+errOut, "Usage") {
				t.Fatalf("no usage text: %q", out+errOut)
			}
			if strings.Contains(out+errOut, "S3cr3t") {
				t.Errorf("the usage text shows a secret:\n%s", out+errOut)
			}
		})
	}
}

// A --url refused for its scheme is not repeated in the error: it may hold
// a password.
func TestBadURLNotRepeated(t *testing.T) {
	vars := map[string]string{"MAILTRIGGER_URL": "ftp://ops:S3cr3t-URL-pa55@mailtrigger.example", "MAILTRIGGER_TOKEN": "t"}
	_, out, errOut := runCLI(t, vars, "", "imap", "list")
	if !strings.Contains(out+errOut, "must start with http:// or https://") {
		t.Fatalf("no error about the URL: %q", out+errOut)
	}
	if strings.Contains(out+errOut, "S3cr3t") {
		t.Errorf("the error repeats the URL's password:\n%s", out+errOut)
	}
}
