package configfile

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"mailtrigger/internal/api"
	"mailtrigger/internal/flow"
	"mailtrigger/internal/imapconf"
)

// sample is what a service might answer: a generic and a Graph mailbox, a
// flow with two activities (one with a header).
func sample() ([]imapconf.View, []api.FlowView) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	imaps := []imapconf.View{
		{Name: "support", ServerType: "imaps", Type: "generic", Description: "the support desk", Enabled: true, Host: "imap.example.com",
			Port: 993, Username: "support@example.com", HasPassword: true, Folder: "INBOX", TLS: "implicit", AfterProcessing: "move",
			MoveTo: "Done", PollInterval: 60, Backlog: "new", Auth: "password", CreatedAt: now, UpdatedAt: now,
			Status: &imapconf.Status{State: "idle"}},
		{Name: "Sales_2", ServerType: "imaps", Type: "msgraph", Enabled: false, Username: "sales@example.com", TenantID: "contoso.onmicrosoft.com",
			ClientID: "11111111-2222-3333-4444-555555555555", HasClientSecret: true, Folder: "INBOX", AfterProcessing: "none", PollInterval: 30,
			Backlog: "all", GraphURL: "https://graph.microsoft.com", AuthorityURL: "https://login.microsoftonline.com", CreatedAt: now, UpdatedAt: now},
	}
	flows := []api.FlowView{{
		Name: "invoices", Enabled: true,
		Start: flow.Start{EmailTrigger: flow.Trigger{IMAP: "support", Subject: "Invoice", Match: "prefix", IgnoreReplyPrefixes: true}},
		Activities: []api.ActivityView{
			{Type: "webhook", URL: "https://hooks.example.com/a", HasSecret: true, Timeout: "30s"},
			{Type: "webhook", URL: "https://hooks.example.com/b", HasSecret: true, Headers: map[string]string{"X-Api-Key": ""}, MaxConcurrency: 4, RatePerSecond: 2.5},
		},
		CreatedAt: now, UpdatedAt: now,
	}}
	return imaps, flows
}

func exported(t *testing.T) ([]byte, []string) {
	t.Helper()
	imaps, flows := sample()
	d, envs := Export(imaps, flows)
	var buf bytes.Buffer
	if err := Encode(&buf, d, envs); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), envs
}

func TestExportConformsToTheSchema(t *testing.T) {
	data, envs := exported(t)
	var doc any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("the export is not YAML: %v\n%s", err, data)
	}
	if err := Validate(doc); err != nil {
		t.Fatalf("the export does not conform to config.schema.json: %v\n%s", err, data)
	}
	want := []string{"SUPPORT_PASSWORD", "SALES_2_CLIENT_SECRET", "INVOICES_WEBHOOK_SECRET", "INVOICES_WEBHOOK_2_SECRET", "INVOICES_WEBHOOK_2_HEADER_X_API_KEY"}
	if strings.Join(envs, ",") != strings.Join(want, ",") {
		t.Errorf("placeholders name %v, want %v", envs, want)
	}
	for _, e := range want {
		if !bytes.Contains(data, []byte("${env:"+e+"}")) {
			t.Errorf("the export has no ${env:%s}:\n%s", e, data)
		}
	}
	// The schema is not a rubber stamp: a port of the wrong type fails.
	doc.(map[string]any)["imap"].([]any)[0].(map[string]any)["port"] = "993"
	if err := Validate(doc); err == nil {
		t.Error("a port given as a string passed the schema")
	}
}

func env(vars map[string]string) Sources {
	return Sources{
		LookupEnv: func(k string) (string, bool) { v, ok := vars[k]; return v, ok },
		ReadFile:  os.ReadFile,
	}
}

func TestExportAppliedToItsSourceIsUnchanged(t *testing.T) {
	data, _ := exported(t)
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte("whsec_"+strings.Repeat("A", 43)+"=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// One placeholder from a file instead of the environment.
	data = bytes.Replace(data, []byte("${env:INVOICES_WEBHOOK_2_SECRET}"), []byte("${file:"+secretFile+"}"), 1)
	d, ps, err := Load(data, env(map[string]string{
		"SUPPORT_PASSWORD": "pw", "SALES_2_CLIENT_SECRET": "cs", "INVOICES_WEBHOOK_SECRET": "whsec_" + strings.Repeat("B", 43) + "=",
		"INVOICES_WEBHOOK_2_HEADER_X_API_KEY": "key",
	}))
	if err != nil || len(ps) > 0 {
		t.Fatalf("Load: %v %v", err, ps)
	}
	if !bytes.Contains(d.Flows[0].Body, []byte(`"whsec_AAAA`)) || !bytes.Contains(d.IMAP[0].Body, []byte(`"password":"pw"`)) {
		t.Errorf("placeholders not resolved: %s %s", d.Flows[0].Body, d.IMAP[0].Body)
	}
	imaps, flows := sample()
	plan, ps := MakePlan(d, Current{IMAP: imaps, Flows: flows}, Options{Prune: true})
	if len(ps) > 0 {
		t.Fatalf("MakePlan: %v", ps)
	}
	if got := plan.Summary(); got != "Plan: 0 to create, 0 to change, 0 to delete, 3 unchanged." {
		t.Errorf("got %q", got)
	}
	// --send-secrets changes every object that has one.
	plan, _ = MakePlan(d, Current{IMAP: imaps, Flows: flows}, Options{SendSecrets: true})
	if plan.Count(Change) != 3 || plan.Steps[2].String() != "change     flow invoices: activities[0].secret (sent), activities[1].secret (sent), activities[1].headers.X-Api-Key (sent)" {
		t.Errorf("with SendSecrets: %v", plan.Steps)
	}
	// On an empty service everything is created; a changed field shows.
	plan, _ = MakePlan(d, Current{}, Options{})
	if plan.Count(Create) != 3 {
		t.Errorf("on an empty service: %s", plan.Summary())
	}
	imaps[0].Port = 143
	imaps[0].TLS = "starttls"
	plan, ps = MakePlan(d, Current{IMAP: imaps, Flows: flows}, Options{})
	if len(ps) > 0 || plan.Count(Change) != 1 || plan.Steps[0].String() != "change     imap support: port, tls" {
		t.Errorf("after a change on the service: %v %v", plan.Steps, ps)
	}
}

func TestEveryInvalidObjectIsListed(t *testing.T) {
	file := `apiVersion: mailtrigger/v1
kind: Configuration
imap:
  - name: good
    host: imap.example.com
    port: 993
    username: a@example.com
    password: ${env:GOOD_PASSWORD}
  - name: bad_port
    host: imap.example.com
    port: 0
    username: a@example.com
    password: x
  - name: bad_user
    host: imap.example.com
    port: 993
    username: not-an-address
    password: ${env:MISSING}
flows:
  - name: orphan
    start: {emailTrigger: {imap: nowhere, subject: Hi}}
    activities: [{url: "https://example.com/hook"}]
`
	d, ps, err := Load([]byte(file), env(map[string]string{"GOOD_PASSWORD": "pw"}))
	if err != nil {
		t.Fatal(err)
	}
	_, more := MakePlan(d, Current{}, Options{})
	ps = SortProblems(append(ps, more...), d)
	if ps.Objects() != 3 {
		t.Fatalf("got problems in %d objects, want 3: %v", ps.Objects(), ps)
	}
	var text []string
	for _, p := range ps {
		text = append(text, p.String())
	}
	all := strings.Join(text, "\n")
	for _, want := range []string{"imap bad_port: port:", "imap bad_user: username: must be an e-mail address",
		"imap bad_user: password: ${env:MISSING}: the environment variable MISSING is not set",
		"flow orphan: start.emailTrigger.imap: no IMAP configuration named nowhere"} {
		if !strings.Contains(all, want) {
			t.Errorf("problems lack %q:\n%s", want, all)
		}
	}
	if strings.Contains(all, "good") {
		t.Errorf("the valid object is listed:\n%s", all)
	}
}

func TestNotYAML(t *testing.T) {
	if _, _, err := Load([]byte("a: ["), env(nil)); err == nil {
		t.Error("no error")
	}
	_, ps, err := Load([]byte("- 1"), env(nil))
	if err != nil || len(ps) != 1 {
		t.Errorf("a list: %v %v", ps, err)
	}
}

// Two secrets never share a placeholder: with names made to collide (a
// mailbox named like a flow's header variable), one environment variable
// would give the mailbox's password to the flow's webhook as a header.
func TestExportPlaceholdersAreDistinct(t *testing.T) {
	imaps := []imapconf.View{{Name: "x_webhook_header_x_api", ServerType: "imaps", Type: "generic", Host: "imap.example.com",
		Port: 993, Username: "a@example.com", HasPassword: true, Auth: "password"}}
	flows := []api.FlowView{{Name: "x",
		Start: flow.Start{EmailTrigger: flow.Trigger{IMAP: "x_webhook_header_x_api", Subject: "Hi"}},
		Activities: []api.ActivityView{{Type: "webhook", URL: "https://hooks.example.com/a",
			Headers: map[string]string{"X-Api-Password": "", "X_Api_Password": ""}}}}}
	d, envs := Export(imaps, flows)
	seen := map[string]bool{}
	for _, e := range envs {
		if seen[e] {
			t.Errorf("%s names two secrets: %v", e, envs)
		}
		seen[e] = true
	}
	if len(envs) != 3 {
		t.Fatalf("got %v, want 3 placeholders", envs)
	}
	h := d.Flows[0].Activities[0].Headers
	if d.IMAP[0].Password == h["X-Api-Password"] || h["X-Api-Password"] == h["X_Api_Password"] {
		t.Errorf("shared placeholders: password %s, headers %v", d.IMAP[0].Password, h)
	}
}

// A file that moves a mailbox to another host (or token endpoint) without
// giving its secret is refused, as the API refuses it: the stored secret is
// never sent to a host the file chose, --send-secrets or not.
func TestApplyDoesNotCarryAStoredSecretToANewHost(t *testing.T) {
	imaps, flows := sample()
	for _, tc := range []struct{ name, file, field string }{
		{"host", `apiVersion: mailtrigger/v1
kind: Configuration
imap:
  - {name: support, enabled: true, serverType: imaps, type: generic, host: imap.evil.example, port: 993,
     username: support@example.com, folder: INBOX, tls: implicit, afterProcessing: move, moveTo: Done, pollInterval: 60, backlog: new}
flows: []
`, "password"},
		{"tokenUrl", `apiVersion: mailtrigger/v1
kind: Configuration
imap:
  - {name: support, enabled: true, serverType: imaps, type: generic, host: imap.example.com, port: 993, auth: oauth2,
     tokenUrl: "https://evil.example/token", clientId: app, scope: "https://outlook.office.com/.default",
     username: support@example.com, folder: INBOX, tls: implicit, afterProcessing: move, moveTo: Done, pollInterval: 60, backlog: new}
flows: []
`, "clientSecret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cur := slices.Clone(imaps)
			if tc.field == "clientSecret" {
				cur[0].Auth, cur[0].TokenURL, cur[0].ClientID, cur[0].Scope = "oauth2", "https://login.example.com/token", "app", "https://outlook.office.com/.default"
				cur[0].HasPassword, cur[0].HasClientSecret = false, true
			}
			d, ps, err := Load([]byte(tc.file), env(nil))
			if err != nil || len(ps) > 0 {
				t.Fatalf("Load: %v %v", err, ps)
			}
			for _, send := range []bool{false, true} {
				plan, ps := MakePlan(d, Current{IMAP: cur, Flows: flows}, Options{SendSecrets: send})
				found := false
				for _, p := range ps {
					found = found || (p.Object == "imap support" && p.Field == tc.field)
				}
				if !found || plan.Count(Change) != 0 {
					t.Errorf("send-secrets %v: problems %v, plan %v; want %s required again and no change", send, ps, plan.Steps, tc.field)
				}
			}
		})
	}
}

// A file that moves a webhook to another host without its secret does not
// carry the stored secret there: the service generates a new one, and the
// plan says so next to the url. Another path on the same host keeps it.
func TestApplyDoesNotCarryAStoredSigningSecretToANewHost(t *testing.T) {
	imaps, flows := sample()
	file := func(urlA string) []byte {
		return []byte(`apiVersion: mailtrigger/v1
kind: Configuration
flows:
  - name: invoices
    enabled: true
    start: {emailTrigger: {imap: support, subject: Invoice, match: prefix, ignoreReplyPrefixes: true}}
    activities:
      - {type: webhook, url: "` + urlA + `", timeout: 30s}
      - {type: webhook, url: "https://hooks.example.com/b", headers: {X-Api-Key: key}, maxConcurrency: 4, ratePerSecond: 2.5}
`)
	}
	for _, tc := range []struct{ name, url, want string }{
		{"another path", "https://hooks.example.com/elsewhere", "change     flow invoices: activities[0].url"},
		{"another host", "https://hooks.evil.example/a",
			"change     flow invoices: activities[0].url, activities[0].secret (generated: the url's scheme, host or port changed)"},
		{"another port", "https://hooks.example.com:8443/a",
			"change     flow invoices: activities[0].url, activities[0].secret (generated: the url's scheme, host or port changed)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, ps, err := Load(file(tc.url), env(nil))
			if err != nil || len(ps) > 0 {
				t.Fatalf("Load: %v %v", err, ps)
			}
			plan, ps := MakePlan(d, Current{IMAP: imaps, Flows: flows}, Options{})
			if len(ps) > 0 || len(plan.Steps) != 1 || plan.Steps[0].String() != tc.want {
				t.Errorf("got %v %v, want %q", plan.Steps, ps, tc.want)
			}
		})
	}
}
