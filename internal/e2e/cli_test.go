package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"

	"mailtrigger/internal/client"
	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/secret"
	"mailtrigger/internal/store"
	"mailtrigger/internal/testenv"
)

// remoteCLI runs the binary's API commands against a service, as a user
// does: MAILTRIGGER_URL and MAILTRIGGER_TOKEN in the environment.
type remoteCLI struct {
	s     *service
	token string
}

// run runs the binary with args and extra environment (KEY=VALUE) and
// returns its exit code and output.
func (r remoteCLI) run(stdin string, extraEnv []string, args ...string) (code int, stdout, stderr string) {
	r.s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	cmd.Env = append(append(append([]string{}, r.s.env...), "MAILTRIGGER_URL="+r.s.baseURL(), "MAILTRIGGER_TOKEN="+r.token), extraEnv...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		r.s.fatalf("mailtrigger %s: %v", strings.Join(args, " "), err)
	}
	return code, out.String(), errb.String()
}

// ok runs the command and fails the test unless it exits 0.
func (r remoteCLI) ok(stdin string, extraEnv []string, args ...string) string {
	r.s.t.Helper()
	code, out, errOut := r.run(stdin, extraEnv, args...)
	if code != 0 {
		r.s.fatalf("mailtrigger %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// snapshot is what a service's API answers about its configuration, without
// what differs between two services that hold the same one (times, state).
func snapshot(t *testing.T, s *service, c *client.Client) map[string]string {
	t.Helper()
	ctx := context.Background()
	imaps, err := c.AllIMAP(ctx)
	if err != nil {
		s.fatalf("listing imap: %v", err)
	}
	flows, err := c.AllFlows(ctx)
	if err != nil {
		s.fatalf("listing flows: %v", err)
	}
	out := map[string]string{}
	for _, v := range imaps {
		// Each one as GET answers it, too.
		one, err := c.GetIMAP(ctx, v.Name)
		if err != nil {
			s.fatalf("getting imap %s: %v", v.Name, err)
		}
		for _, x := range []*imapconf.View{&v, &one} {
			x.CreatedAt, x.UpdatedAt, x.Status, x.SignIn = time.Time{}, time.Time{}, nil, nil
		}
		a, _ := json.Marshal(v)
		b, _ := json.Marshal(one)
		if !bytes.Equal(a, b) {
			t.Errorf("imap %s: the list and GET differ:\n%s\n%s", v.Name, a, b)
		}
		out["imap "+v.Name] = string(a)
	}
	for _, f := range flows {
		one, err := c.GetFlow(ctx, f.Name)
		if err != nil {
			s.fatalf("getting flow %s: %v", f.Name, err)
		}
		for _, x := range []*client.Flow{&f, &one} {
			x.CreatedAt, x.UpdatedAt = time.Time{}, time.Time{}
		}
		a, _ := json.Marshal(f)
		b, _ := json.Marshal(one)
		if !bytes.Equal(a, b) {
			t.Errorf("flow %s: the list and GET differ:\n%s\n%s", f.Name, a, b)
		}
		out["flow "+f.Name] = string(a)
	}
	return out
}

func compareSnapshots(t *testing.T, what string, a, b map[string]string) {
	t.Helper()
	for k, va := range a {
		if vb, ok := b[k]; !ok {
			t.Errorf("%s: %s is missing", what, k)
		} else if va != vb {
			t.Errorf("%s: %s differs:\n%s\n%s", what, k, va, vb)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			t.Errorf("%s: %s is extra", what, k)
		}
	}
}

var shownSecret = regexp.MustCompile(`\(shown once\): (whsec_\S+)`)

// TestCLIExportApply is issue 19's acceptance test of the CLI and
// configuration as code, as a user runs them: configurations and flows
// created with the CLI on one service, exported, applied to a second, fresh
// service with the secrets from the environment; both answer the same; the
// same file again is "0 to change"; a file with three invalid objects is
// refused whole.
func TestCLIExportApply(t *testing.T) {
	dir := t.TempDir()
	s1 := newService(t)
	s1.start()
	api1 := s1.api()
	cli1 := remoteCLI{s: s1, token: api1.Token}

	// Usage and API errors have their exit codes.
	if code, _, errOut := (remoteCLI{s: s1}).run("", nil, "imap", "list"); code != 2 || !strings.Contains(errOut, "MAILTRIGGER_TOKEN") {
		t.Errorf("no token: exit %d %q, want 2 naming MAILTRIGGER_TOKEN", code, errOut)
	}
	if code, _, errOut := cli1.run("", nil, "imap", "get", "nope"); code != 1 || !strings.Contains(errOut, "not found") {
		t.Errorf("imap get nope: exit %d %q, want 1 and not found", code, errOut)
	}
	bad := writeFile(t, dir, "bad.json", `{"name":"bad name","host":"imap.example.com","port":70000,"username":"x@example.com","password":"p"}`)
	if code, _, errOut := cli1.run("", nil, "imap", "create", "-f", bad); code != 1 || !strings.Contains(errOut, "  name: ") || !strings.Contains(errOut, "  port: ") {
		t.Errorf("imap create of a bad body: exit %d %q, want 1 and the fields name and port", code, errOut)
	}

	// Set up the first service with the CLI.
	cli1.ok("", nil, "imap", "create", "-f", writeFile(t, dir, "support.yaml", `name: support
description: the support desk
enabled: false
host: 127.0.0.1
port: 993
username: support@example.com
password: support-secret
afterProcessing: move
moveTo: Done
pollInterval: 30
`))
	cli1.ok("", nil, "imap", "create", "-f", writeFile(t, dir, "pop.json",
		`{"name":"Pop_Box","serverType":"pop3s","enabled":false,"host":"pop.example.com","port":995,"username":"pop@example.com","password":"pop-secret","backlog":"all"}`))
	cli1.ok("", nil, "imap", "create", "-f", writeFile(t, dir, "graph.json",
		`{"name":"graph","type":"msgraph","enabled":false,"username":"g@example.com","tenantId":"contoso.onmicrosoft.com","clientId":"11111111-2222-3333-4444-555555555555","clientSecret":"graph-secret"}`))
	if out := cli1.ok("copy-secret\n", nil, "imap", "duplicate", "support"); !strings.Contains(out, "support_copied") {
		t.Errorf("imap duplicate printed %q", out)
	}
	hookSecret := "whsec_" + strings.Repeat("QUJD", 8)
	cli1.ok("", nil, "flows", "create", "-f", writeFile(t, dir, "invoices.yaml", `name: invoices
description: invoices to accounting
start:
  emailTrigger: {imap: support, subject: Invoice, match: prefix, ignoreReplyPrefixes: true, from: "@example.com"}
activities:
  - url: https://hooks.example.com/invoices
    secret: `+hookSecret+`
    headers: {X-Api-Key: key-1}
    timeout: 20s
    includeAttachments: true
  - url: https://hooks.example.com/audit
    maxConcurrency: 3
    ratePerSecond: 1.5
`))
	out := cli1.ok("", nil, "flows", "create", "-f", writeFile(t, dir, "orders.json",
		`{"name":"orders","enabled":false,"start":{"emailTrigger":{"imap":"Pop_Box","subject":"^Order [0-9]+$","match":"regex"}},"activities":[{"url":"http://127.0.0.1:9/orders"}]}`))
	m := shownSecret.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("flows create printed no generated secret: %q", out)
	}
	ordersSecret := m[1]
	// The invoices flow's second activity got one too, on create: it is
	// lost (shown once, not read here), so the file gets a new one.
	auditSecret := "whsec_" + strings.Repeat("WFla", 8)

	// Edit keeps what is left out (the password, the webhook secret).
	cli1.ok("", nil, "imap", "edit", "Pop_Box", "-f", writeFile(t, dir, "pop-edit.json",
		`{"name":"Pop_Box","serverType":"pop3s","enabled":false,"host":"pop.example.com","port":995,"username":"pop@example.com","backlog":"all","pollInterval":45}`))
	var pop imapconf.View
	if err := json.Unmarshal([]byte(cli1.ok("", nil, "imap", "get", "Pop_Box", "-o", "json")), &pop); err != nil || pop.PollInterval != 45 || !pop.HasPassword {
		t.Errorf("imap get after edit: %v %+v", err, pop)
	}
	cli1.ok("", nil, "flows", "edit", "orders", "-f", writeFile(t, dir, "orders-edit.yaml", `name: orders
description: numbered orders
enabled: false
start: {emailTrigger: {imap: Pop_Box, subject: "^Order [0-9]+$", match: regex}}
activities: [{url: "http://127.0.0.1:9/orders"}]
`))
	if out := cli1.ok("", nil, "flows", "get", "orders"); !strings.Contains(out, "description: numbered orders") || !strings.Contains(out, "hasSecret: true") {
		t.Errorf("flows get after edit printed %q", out)
	}
	cli1.ok("", nil, "flows", "create", "-f", writeFile(t, dir, "tmp.json",
		`{"name":"tmp","start":{"emailTrigger":{"imap":"graph","subject":"x"}},"activities":[{"url":"http://127.0.0.1:9/x"}]}`))
	if out := cli1.ok("", nil, "flows", "delete", "tmp"); !strings.Contains(out, `flow "tmp" deleted`) {
		t.Errorf("flows delete printed %q", out)
	}

	var list client.List[imapconf.View]
	if err := json.Unmarshal([]byte(cli1.ok("", nil, "imap", "list", "-o", "json")), &list); err != nil || len(list.Items) != 4 {
		t.Errorf("imap list -o json: %v, %d items", err, len(list.Items))
	}
	if out := cli1.ok("", nil, "flows", "list"); !strings.Contains(out, "invoices") || !strings.Contains(out, "NAME") {
		t.Errorf("flows list printed %q", out)
	}

	// Export, and check the file against the schema the service publishes
	// (without a token).
	file := filepath.Join(dir, "export.yaml")
	cli1.ok("", nil, "export", "-o", file)
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"support-secret", "pop-secret", "graph-secret", "copy-secret", hookSecret, ordersSecret, "key-1"} {
		if bytes.Contains(data, []byte(secret)) {
			t.Errorf("the export holds the secret %q", secret)
		}
	}
	checkAgainstServedSchema(t, s1, data)

	// A fresh service, the export applied with the secrets from the
	// environment (one from a file).
	s2 := newService(t)
	s2.start()
	api2 := s2.api()
	cli2 := remoteCLI{s: s2, token: api2.Token}
	copyFile := writeFile(t, dir, "copy-secret", "copy-secret\n")
	data = bytes.Replace(data, []byte("${env:SUPPORT_COPIED_PASSWORD}"), []byte("${file:"+copyFile+"}"), 1)
	file2 := writeFile(t, dir, "export2.yaml", string(data))
	secrets := []string{"SUPPORT_PASSWORD=support-secret", "POP_BOX_PASSWORD=pop-secret", "GRAPH_CLIENT_SECRET=graph-secret",
		"INVOICES_WEBHOOK_SECRET=" + hookSecret, "INVOICES_WEBHOOK_HEADER_X_API_KEY=key-1", "INVOICES_WEBHOOK_2_SECRET=" + auditSecret,
		"ORDERS_WEBHOOK_SECRET=" + ordersSecret}
	if code, _, errOut := cli2.run("", secrets[1:], "apply", "-f", file2); code != 1 || !strings.Contains(errOut, "SUPPORT_PASSWORD is not set") {
		t.Errorf("apply without SUPPORT_PASSWORD: exit %d %q", code, errOut)
	}
	if out := cli2.ok("", secrets, "apply", "-f", file2, "--dry-run"); !strings.Contains(out, "Plan: 6 to create, 0 to change, 0 to delete, 0 unchanged.") {
		t.Errorf("dry run printed %q", out)
	}
	if n := len(snapshot(t, s2, api2)); n != 0 {
		t.Errorf("the dry run changed the service: %d objects", n)
	}
	out = cli2.ok("", secrets, "apply", "-f", file2)
	if !strings.Contains(out, "Plan: 6 to create, 0 to change, 0 to delete, 0 unchanged.") || !strings.Contains(out, "create     imap support") {
		t.Errorf("apply printed %q", out)
	}
	before := snapshot(t, s1, api1)
	compareSnapshots(t, "second service after apply", before, snapshot(t, s2, api2))
	if len(before) != 6 {
		t.Errorf("the first service has %d objects, want 6", len(before))
	}

	// The same file again changes nothing.
	if out := cli2.ok("", secrets, "apply", "-f", file2); !strings.Contains(out, "0 to create, 0 to change, 0 to delete, 6 unchanged") {
		t.Errorf("apply again printed %q, want 0 to change", out)
	}
	// --send-secrets rotates them: every object with one is changed.
	rotated := append(append([]string{}, secrets...), "SUPPORT_PASSWORD=rotated-secret")
	out = cli2.ok("", rotated, "apply", "-f", file2, "--send-secrets")
	for _, want := range []string{"change     imap support: password (sent)", "change     flow invoices: activities[0].secret (sent), activities[0].headers.X-Api-Key (sent), activities[1].secret (sent)",
		"change     imap graph: clientSecret (sent)", "Plan: 0 to create, 6 to change, 0 to delete, 0 unchanged."} {
		if !strings.Contains(out, want) {
			t.Errorf("apply --send-secrets lacks %q:\n%s", want, out)
		}
	}
	compareSnapshots(t, "second service after --send-secrets", before, snapshot(t, s2, api2))
	// And the export of the first service applied to itself neither.
	if out := cli1.ok("", secrets, "apply", "-f", file2, "--prune"); !strings.Contains(out, "0 to create, 0 to change, 0 to delete") {
		t.Errorf("apply to the source printed %q, want 0 to change", out)
	}

	// Three invalid objects: all three are listed and nothing changes,
	// not even the valid new object before them.
	invalid := writeFile(t, dir, "invalid.yaml", `apiVersion: mailtrigger/v1
kind: Configuration
imap:
  - name: brand_new
    host: imap.example.com
    port: 993
    username: new@example.com
    password: new-secret
  - name: bad_port
    host: imap.example.com
    port: 0
    username: a@example.com
    password: x
  - name: support
    host: imap.example.com
    port: 993
    username: not-an-address
    password: x
flows:
  - name: invoices
    start: {emailTrigger: {imap: nowhere, subject: Invoice}}
    activities: [{url: "https://hooks.example.com/invoices"}]
`)
	code, out, errOut := cli2.run("", nil, "apply", "-f", invalid, "--prune")
	if code != 1 {
		t.Errorf("apply of an invalid file: exit %d, want 1\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"3 invalid object(s); nothing was changed", "imap bad_port: port:", "imap support: username:",
		"flow invoices: start.emailTrigger.imap:"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("apply of an invalid file: standard error lacks %q:\n%s", want, errOut)
		}
	}
	compareSnapshots(t, "second service after the invalid file", before, snapshot(t, s2, api2))

	// The secrets arrived: read them from the stopped service's store.
	s2.stop()
	storedSecrets(t, s2, map[string]string{"support": "rotated-secret", "support_copied": "copy-secret", "Pop_Box": "pop-secret", "graph": "graph-secret"},
		map[string][]string{"invoices": {hookSecret, auditSecret}, "orders": {ordersSecret}}, "invoices", "X-Api-Key", "key-1")
	s2.start()

	// --prune deletes what the file does not name.
	small := writeFile(t, dir, "small.yaml", `apiVersion: mailtrigger/v1
kind: Configuration
imap:
  - name: support
    enabled: false
    host: 127.0.0.1
    port: 993
    username: support@example.com
    password: ${env:SUPPORT_PASSWORD}
    afterProcessing: move
    moveTo: Done
    pollInterval: 60
    description: the support desk
`)
	out = cli2.ok("", secrets, "apply", "-f", small, "--prune")
	for _, want := range []string{"change     imap support: pollInterval", "delete     flow invoices", "delete     flow orders",
		"delete     imap Pop_Box", "Plan: 0 to create, 1 to change, 5 to delete, 0 unchanged."} {
		if !strings.Contains(out, want) {
			t.Errorf("apply --prune lacks %q:\n%s", want, out)
		}
	}
	if n := len(snapshot(t, s2, api2)); n != 1 {
		t.Errorf("after --prune the service has %d objects, want 1", n)
	}
}

// checkAgainstServedSchema fetches the schema the service serves without a
// token and checks the export against it.
func checkAgainstServedSchema(t *testing.T, s *service, export []byte) {
	t.Helper()
	resp, err := http.Get(s.baseURL() + "/api/v1/config.schema.json")
	if err != nil {
		s.fatalf("GET config.schema.json: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Type"), "json") {
		t.Fatalf("GET /api/v1/config.schema.json without a token: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("the served schema is not JSON: %v", err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("served.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("served.json")
	if err != nil {
		t.Fatalf("the served schema does not compile: %v", err)
	}
	var y any
	if err := yaml.Unmarshal(export, &y); err != nil {
		t.Fatalf("the export is not YAML: %v", err)
	}
	j, _ := json.Marshal(y)
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
	if err != nil {
		t.Fatal(err)
	}
	if err := sch.Validate(inst); err != nil {
		t.Errorf("the export does not conform to the served schema: %v\n%s", err, export)
	}
}

// storedSecrets checks the secrets in the store of the stopped service s:
// each IMAP configuration's password or client secret, each flow's webhook
// secrets, and one header value.
func storedSecrets(t *testing.T, s *service, imaps map[string]string, flows map[string][]string, headerFlow, header, value string) {
	t.Helper()
	ctx := context.Background()
	key, _, err := secret.LoadKey("", s.dataDir)
	if err != nil {
		s.fatalf("loading the key: %v", err)
	}
	box, err := secret.NewBox(key)
	if err != nil {
		s.fatalf("opening the key: %v", err)
	}
	st, err := store.Open(ctx, store.Options{DataDir: s.dataDir, Box: box})
	if err != nil {
		s.fatalf("opening the store: %v", err)
	}
	defer st.Close()
	for name, want := range imaps {
		c, err := st.GetIMAP(ctx, name)
		if err != nil {
			t.Errorf("imap %s: %v", name, err)
			continue
		}
		if c.Password != want && c.ClientSecret != want {
			t.Errorf("imap %s: the stored secret is not the one applied", name)
		}
	}
	for name, want := range flows {
		fr, err := st.GetFlow(ctx, name)
		if err != nil {
			t.Errorf("flow %s: %v", name, err)
			continue
		}
		if strings.Join(fr.Secrets, " ") != strings.Join(want, " ") {
			t.Errorf("flow %s: the stored webhook secrets are not the ones applied", name)
		}
		if name == headerFlow && (len(fr.Headers) == 0 || fr.Headers[0][header] != value) {
			t.Errorf("flow %s: the stored value of %s is not the one applied", name, header)
		}
	}
}

// TestCLIRunsAndMessages drives runs and messages with the CLI: a message
// whose webhook refuses it makes a failed run; the CLI lists and shows the
// run and the message, prints the raw message, retries the run once the
// endpoint accepts, and re-triggers the message.
func TestCLIRunsAndMessages(t *testing.T) {
	d := testenv.StartDovecot(t)
	addr := d.AddUser(t, "clirun", "pw-clirun")
	hooks := newHookListener(t)
	s := newService(t, fastRetryEnv...)
	s.start()
	c := s.api()
	cli := remoteCLI{s: s, token: c.Token}
	dir := t.TempDir()

	mailbox, _ := json.Marshal(map[string]any{"name": "cli_inbox", "host": d.Host, "port": d.IMAPSPort, "username": addr,
		"password": d.Password(t, addr), "caCert": string(d.CACertPEM), "backlog": "all"})
	cli.ok("", nil, "imap", "create", "-f", writeFile(t, dir, "inbox.json", string(mailbox)))
	url := hooks.handle("/cli", "", func(int) hookResponse { return hookResponse{status: http.StatusBadRequest, body: "no thanks"} })
	out := cli.ok("", nil, "flows", "create", "-f", writeFile(t, dir, "flow.json",
		`{"name":"cli_flow","start":{"emailTrigger":{"imap":"cli_inbox","subject":"CLI run"}},"activities":[{"url":"`+url+`"}]}`))
	m := shownSecret.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("flows create printed no secret: %q", out)
	}
	hooks.setSecret("/cli", m[1])
	if out := cli.ok("", nil, "imap", "test", "cli_inbox"); !strings.Contains(out, "ok: true") {
		t.Errorf("imap test printed %q", out)
	}
	waitState(s, c, "cli_inbox", imapconf.StateIdle, 15*time.Second)
	conn := d.DialIMAPS(t, addr, nil)
	appendOrFail(s, conn, mailMessage("cli-run@e2e.example.org", addr, "CLI run", "Run me."))

	var runs client.List[client.Run]
	waitFor(s, 20*time.Second, "a failed run", func() (bool, any) {
		runs = client.List[client.Run]{}
		err := json.Unmarshal([]byte(cli.ok("", nil, "runs", "list", "--status", "failed", "-o", "json")), &runs)
		return err == nil && len(runs.Items) == 1, runs
	})
	run := runs.Items[0]
	if out := cli.ok("", nil, "runs", "list", "--flow", "cli_flow"); !strings.Contains(out, run.ID) || !strings.Contains(out, "failed") {
		t.Errorf("runs list printed %q", out)
	}
	if out := cli.ok("", nil, "runs", "get", run.ID); !strings.Contains(out, "statusCode: 400") || !strings.Contains(out, "no thanks") {
		t.Errorf("runs get printed %q", out)
	}

	var msgs client.List[client.Message]
	if err := json.Unmarshal([]byte(cli.ok("", nil, "messages", "list", "--imap", "cli_inbox", "-o", "json")), &msgs); err != nil || len(msgs.Items) != 1 {
		t.Fatalf("messages list -o json: %v %+v", err, msgs)
	}
	id := strconv.FormatInt(msgs.Items[0].ID, 10)
	if out := cli.ok("", nil, "messages", "list"); !strings.Contains(out, "CLI run") || !strings.Contains(out, "sender@example.org") {
		t.Errorf("messages list printed %q", out)
	}
	if out := cli.ok("", nil, "messages", "get", id); !strings.Contains(out, "subject: CLI run") || !strings.Contains(out, "matched: true") {
		t.Errorf("messages get printed %q", out)
	}
	if out := cli.ok("", nil, "messages", "raw", id); !strings.Contains(out, "Message-ID: <cli-run@e2e.example.org>") || !strings.Contains(out, "Run me.") {
		t.Errorf("messages raw printed %q", out)
	}

	// The endpoint accepts now: retry delivers.
	hooks.setResponder("/cli", nil)
	if out := cli.ok("", nil, "runs", "retry", run.ID); !strings.Contains(out, "queued again") {
		t.Errorf("runs retry printed %q", out)
	}
	waitFor(s, 20*time.Second, "the retried run delivered", func() (bool, any) {
		r, err := c.GetRun(context.Background(), run.ID)
		return err == nil && r.Status == "delivered", r
	})
	if code, _, errOut := cli.run("", nil, "runs", "retry", run.ID); code != 1 || !strings.Contains(errOut, "409") {
		t.Errorf("retry of a delivered run: exit %d %q, want 1 and 409", code, errOut)
	}
	// Re-trigger: the flow has its run, so none without --force, one with.
	if out := cli.ok("", nil, "messages", "retrigger", id); !strings.Contains(out, "0 run(s) started") {
		t.Errorf("messages retrigger printed %q", out)
	}
	if out := cli.ok("", nil, "messages", "retrigger", id, "--force"); !strings.Contains(out, "1 run(s) started") || !strings.Contains(out, "cli_flow") {
		t.Errorf("messages retrigger --force printed %q", out)
	}
}
