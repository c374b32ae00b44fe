package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"mailtrigger/internal/testenv"
	"mailtrigger/internal/testwait"
)

// TestReadmeWalkthrough builds the real binary, starts it as a newcomer
// would (empty directory, no settings), and runs every command of the
// README's walk-through as written, checking the HTTP status noted after
// each curl line.
func TestReadmeWalkthrough(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	cmds := walkthrough(t, string(readme))
	if len(cmds) < 10 {
		t.Fatalf("found only %d commands in the README walk-through", len(cmds))
	}

	dir := t.TempDir()
	bin := filepath.Join(dir, "mailtrigger")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("building: %v\n%s", err, out)
	}
	work := filepath.Join(dir, "work")
	os.Mkdir(work, 0o755)
	addr := freeAddr(t)
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "MAILTRIGGER_LISTEN=" + addr}

	ctx, cancel := context.WithCancel(context.Background())
	serve := exec.CommandContext(ctx, bin, "serve")
	serve.Dir, serve.Env = work, env
	var stdout, stderr testenv.Buffer
	serve.Stdout, serve.Stderr = &stdout, &stderr
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		serve.Wait()
	}()
	waitReady(t, "http://"+addr+"/readyz", &stderr)
	// The service started itself again with small goroutine stacks
	// (smallStacks), in place.
	if environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", serve.Process.Pid)); err == nil &&
		!strings.Contains(string(environ), "\x00GODEBUG=adaptivestackstart=0\x00") {
		t.Errorf("the service runs without GODEBUG=adaptivestackstart=0")
	}
	if !regexp.MustCompile(`Created user "admin" with password: \S+`).MatchString(stdout.String()) {
		t.Errorf("first start did not print the admin password: %q", stdout.String())
	}

	var token string
	for _, c := range cmds {
		line := strings.ReplaceAll(c.text, "go run ./cmd/mailtrigger", bin)
		line = strings.ReplaceAll(line, "http://127.0.0.1:8080", "http://"+addr)
		// The service starts watching what the walk-through creates: keep
		// that on loopback (nothing listens on localhost:993 here).
		line = strings.ReplaceAll(line, "imap.example.com", "localhost")
		line = strings.ReplaceAll(line, "hooks.example.com", "localhost")
		if inner, ok := strings.CutPrefix(line, "export TOKEN=$("); ok {
			out := run(t, work, env, strings.TrimSuffix(inner, ")"))
			token = strings.TrimSpace(out)
			if !strings.HasPrefix(token, "mt_") {
				t.Fatalf("token create printed %q", out)
			}
			continue
		}
		if inner, ok := strings.CutPrefix(line, "export MAILTRIGGER_URL="); ok {
			// The CLI's settings for the lines that follow.
			url, rest, _ := strings.Cut(inner, " ")
			if url != "http://"+addr || strings.TrimSpace(rest) != "MAILTRIGGER_TOKEN=$TOKEN" {
				t.Fatalf("walk-through line %q does not point the CLI at the service with the token", c.text)
			}
			env = append(env, "MAILTRIGGER_URL="+url, "MAILTRIGGER_TOKEN="+token)
			continue
		}
		if strings.HasPrefix(line, bin+" ") && c.exit >= 0 {
			code, out := runExit(t, work, env, line)
			if code != c.exit {
				t.Errorf("%s\nexited %d, want %d:\n%s", c.text, code, c.exit, out)
			}
			continue
		}
		if !strings.HasPrefix(line, "curl ") || c.status == 0 {
			t.Fatalf("walk-through line %q is neither a token export nor a curl with a status", c.text)
		}
		out := run(t, work, append(env, "TOKEN="+token), line+` -w '\n%{http_code}'`)
		i := strings.LastIndexByte(out, '\n')
		body, status := out[:max(i, 0)], out[i+1:]
		if status != strconv.Itoa(c.status) {
			t.Errorf("%s\ngot status %s (%s), want %d", c.text, status, body, c.status)
		}
		if c.status == 400 {
			checkQuotedAnswer(t, string(readme), body)
		}
	}
	if strings.Contains(stderr.String(), "app-password") {
		t.Error("the server log contains a password from the walk-through")
	}
}

type command struct {
	text   string
	status int
	exit   int // a CLI line's exit status ("# exit N"); -1 for other lines
}

var (
	statusComment = regexp.MustCompile(`\s+#\s*(\d{3})\s*$`)
	exitComment   = regexp.MustCompile(`\s+#\s*exit\s+(\d+)\s*$`)
)

// walkthrough returns the commands of the sh blocks between the walkthrough
// markers, continuation lines joined.
func walkthrough(t *testing.T, readme string) []command {
	_, rest, ok := strings.Cut(readme, "<!-- walkthrough:start -->")
	section, _, ok2 := strings.Cut(rest, "<!-- walkthrough:end -->")
	if !ok || !ok2 {
		t.Fatal("README has no walkthrough markers")
	}
	var cmds []command
	inBlock := false
	var cur strings.Builder
	for _, line := range strings.Split(section, "\n") {
		switch {
		case strings.HasPrefix(line, "```sh"):
			inBlock = true
			continue
		case strings.HasPrefix(line, "```"):
			inBlock = false
			continue
		case !inBlock || strings.TrimSpace(line) == "":
			continue
		}
		if body, cont := strings.CutSuffix(strings.TrimRight(line, " "), "\\"); cont {
			cur.WriteString(body)
			continue
		}
		cur.WriteString(line)
		if strings.Count(cur.String(), "'")%2 == 1 {
			// Inside a single-quoted string that goes on on the next line.
			cur.WriteString("\n")
			continue
		}
		text := cur.String()
		cur.Reset()
		c := command{text: text, exit: -1}
		if m := statusComment.FindStringSubmatchIndex(text); m != nil {
			c.status, _ = strconv.Atoi(text[m[2]:m[3]])
			c.text = text[:m[0]]
		}
		if m := exitComment.FindStringSubmatchIndex(text); m != nil {
			c.exit, _ = strconv.Atoi(text[m[2]:m[3]])
			c.text = text[:m[0]]
		}
		cmds = append(cmds, c)
	}
	return cmds
}

// checkQuotedAnswer compares the error body the README quotes with the real one.
func checkQuotedAnswer(t *testing.T, readme, body string) {
	t.Helper()
	m := regexp.MustCompile("answers\n`(\\{\"error\".*\\})`").FindStringSubmatch(readme)
	if m == nil {
		t.Error("README quotes no error answer")
		return
	}
	var want, got any
	if err := json.Unmarshal([]byte(m[1]), &want); err != nil {
		t.Fatalf("README's quoted answer is not JSON: %v", err)
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("answer is not JSON: %v", err)
	}
	if !reflect.DeepEqual(want, got) {
		t.Errorf("README quotes\n%s\nbut the server answers\n%s", m[1], body)
	}
}

func run(t *testing.T, dir string, env []string, line string) string {
	t.Helper()
	t.Logf("$ %s", line)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", line)
	cmd.Dir, cmd.Env = dir, env
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	return string(out)
}

// runExit runs a CLI line and returns its exit status and output.
func runExit(t *testing.T, dir string, env []string, line string) (int, string) {
	t.Helper()
	t.Logf("$ %s", line)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", line)
	cmd.Dir, cmd.Env = dir, env
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	}
	t.Fatalf("%s: %v", line, err)
	return 0, ""
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitReady(t *testing.T, url string, logs *testenv.Buffer) {
	t.Helper()
	err := testwait.UntilErr(30*time.Second, func() error {
		resp, err := http.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s answered %s", url, resp.Status)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("service not ready within 30s: %v\n%s", err, logs.String())
	}
}
