package imapconf

import (
	"errors"
	"strings"
	"testing"

	"mailtrigger/internal/valid"
)

func p[T any](v T) *T { return &v }

func genericInput() Input {
	return Input{Name: p("support_inbox"), Host: p("imap.example.com"), Port: p(993),
		Username: p("support@example.com"), Password: p("app-password")}
}

func graphInput() Input {
	return Input{Name: p("graph_inbox"), Type: p("msgraph"), Username: p("invoices@contoso.com"),
		TenantID: p("contoso.onmicrosoft.com"), ClientID: p("11111111-2222-3333-4444-555555555555"), ClientSecret: p("graph-secret")}
}

const testCA = `-----BEGIN CERTIFICATE-----
MIIBhTCCASugAwIBAgIQIRi6zePL6mKjOipn+dNuaTAKBggqhkjOPQQDAjASMRAw
DgYDVQQKEwdBY21lIENvMB4XDTE3MTAyMDE5NDMwNloXDTE4MTAyMDE5NDMwNlow
EjEQMA4GA1UEChMHQWNtZSBDbzBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABD0d
7VNhbWvZLWPuj/RtHFjvtJBEwOkhbN/BnnE8rnZR8+sbwnc/KhCk3FhnpHZnQz7B
5aETbbIgmuvewdjvSBSjYzBhMA4GA1UdDwEB/wQEAwICpDATBgNVHSUEDDAKBggr
BgEFBQcDATAPBgNVHRMBAf8EBTADAQH/MCkGA1UdEQQiMCCCDmxvY2FsaG9zdDo1
NDUzgg4xMjcuMC4wLjE6NTQ1MzAKBggqhkjOPQQDAgNIADBFAiEA2zpJEPQyz6/l
Wf86aX6PepsntZv2GYlA5UpabfT2EZICICpJ5h/iI+i341gBmLiAFQOyTDT+/wQc
6MF9+Yw1Yy0t
-----END CERTIFICATE-----
`

// TestBuildRejects covers every rule of the entity: each case breaks one
// rule and must be refused naming exactly that field.
func TestBuildRejects(t *testing.T) {
	long := strings.Repeat("a", 51)
	tests := []struct {
		name    string
		base    func() Input
		mod     func(*Input)
		field   string
		message string // a part of the message
	}{
		{"name missing", genericInput, func(in *Input) { in.Name = nil }, "name", "required"},
		{"name empty", genericInput, func(in *Input) { in.Name = p("") }, "name", "required"},
		{"name 51 chars", genericInput, func(in *Input) { in.Name = p(long) }, "name", "at most 50"},
		{"name with space", genericInput, func(in *Input) { in.Name = p("support inbox") }, "name", "letters, digits and underscore"},
		{"name with dash", genericInput, func(in *Input) { in.Name = p("support-inbox") }, "name", "letters, digits and underscore"},
		{"name with umlaut", genericInput, func(in *Input) { in.Name = p("bücher") }, "name", "letters, digits and underscore"},
		{"serverType unknown", genericInput, func(in *Input) { in.ServerType = p("imap") }, "serverType", "imaps, pop3s"},
		{"type unknown", genericInput, func(in *Input) { in.Type = p("exchange") }, "type", "generic, msgraph"},
		{"description 1001 chars", genericInput, func(in *Input) { in.Description = p(strings.Repeat("é", 1001)) }, "description", "at most 1000"},
		{"host missing", genericInput, func(in *Input) { in.Host = nil }, "host", "required"},
		{"host with scheme", genericInput, func(in *Input) { in.Host = p("imaps://imap.example.com") }, "host", "without scheme, port or path"},
		{"host with port", genericInput, func(in *Input) { in.Host = p("imap.example.com:993") }, "host", "without scheme, port or path"},
		{"host with path", genericInput, func(in *Input) { in.Host = p("imap.example.com/inbox") }, "host", "without scheme, port or path"},
		{"host bracketed ipv6", genericInput, func(in *Input) { in.Host = p("[::1]") }, "host", "without scheme, port or path"},
		{"host with space", genericInput, func(in *Input) { in.Host = p("imap example.com") }, "host", "without scheme, port or path"},
		{"port missing", genericInput, func(in *Input) { in.Port = nil }, "port", "required"},
		{"port 0", genericInput, func(in *Input) { in.Port = p(0) }, "port", "between 1 and 65535"},
		{"port 65536", genericInput, func(in *Input) { in.Port = p(65536) }, "port", "between 1 and 65535"},
		{"port negative", genericInput, func(in *Input) { in.Port = p(-1) }, "port", "between 1 and 65535"},
		{"username missing", genericInput, func(in *Input) { in.Username = nil }, "username", "required"},
		{"username not an address", genericInput, func(in *Input) { in.Username = p("support") }, "username", "e-mail address"},
		{"username with display name", genericInput, func(in *Input) { in.Username = p("Support <support@example.com>") }, "username", "e-mail address"},
		{"username bad domain", genericInput, func(in *Input) { in.Username = p("support@exa mple.com") }, "username", "e-mail address"},
		{"password missing", genericInput, func(in *Input) { in.Password = nil }, "password", "required"},
		{"password empty", genericInput, func(in *Input) { in.Password = p("") }, "password", "required"},
		{"password with newline", genericInput, func(in *Input) { in.Password = p("a\r\nb") }, "password", "line breaks"},
		{"tls plaintext", genericInput, func(in *Input) { in.TLS = p("none") }, "tls", "plaintext login is refused"},
		{"caCert not pem", genericInput, func(in *Input) { in.CACert = p("hello") }, "caCert", "PEM"},
		{"caCert private key", genericInput, func(in *Input) {
			in.CACert = p("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
		}, "caCert", "only PEM certificates"},
		{"caCert garbage after", genericInput, func(in *Input) { in.CACert = p(testCA + "junk") }, "caCert", "PEM"},
		{"afterProcessing unknown", genericInput, func(in *Input) { in.AfterProcessing = p("archive") }, "afterProcessing", "none, seen, delete, move"},
		{"moveTo missing", genericInput, func(in *Input) { in.AfterProcessing = p("move") }, "moveTo", "required when afterProcessing is move"},
		{"moveTo same folder", genericInput, func(in *Input) { in.AfterProcessing = p("move"); in.MoveTo = p("inbox") }, "moveTo", "must differ"},
		{"pop3 seen", genericInput, func(in *Input) { in.ServerType = p("pop3s"); in.AfterProcessing = p("seen") }, "afterProcessing", "POP3"},
		{"pop3 move", genericInput, func(in *Input) { in.ServerType = p("pop3s"); in.AfterProcessing = p("move") }, "afterProcessing", "POP3"},
		{"pop3 unseen backlog", genericInput, func(in *Input) { in.ServerType = p("pop3s"); in.Backlog = p("unseen") }, "backlog", "POP3"},
		{"pollInterval 4", genericInput, func(in *Input) { in.PollInterval = p(4) }, "pollInterval", "between 5"},
		{"pollInterval huge", genericInput, func(in *Input) { in.PollInterval = p(86401) }, "pollInterval", "between 5"},
		{"backlog unknown", genericInput, func(in *Input) { in.Backlog = p("recent") }, "backlog", "new, unseen, all"},
		{"folder empty", genericInput, func(in *Input) { in.Folder = p("") }, "folder", "must not be empty"},
		{"folder control char", genericInput, func(in *Input) { in.Folder = p("IN\x01BOX") }, "folder", "control characters"},
		{"auth unknown", genericInput, func(in *Input) { in.Auth = p("kerberos") }, "auth", "password, oauth2"},
		{"oauth2 tokenUrl missing", genericInput, func(in *Input) { in.Auth = p("oauth2"); in.ClientID = p("x"); in.ClientSecret = p("y") }, "tokenUrl", "required"},
		{"oauth2 tokenUrl http", genericInput, func(in *Input) {
			in.Auth = p("oauth2")
			in.TokenURL = p("http://login.example.com/token")
			in.ClientID = p("x")
			in.ClientSecret = p("y")
		}, "tokenUrl", "https"},
		{"oauth2 clientSecret missing", genericInput, func(in *Input) {
			in.Auth = p("oauth2")
			in.TokenURL = p("https://login.example.com/token")
			in.ClientID = p("x")
		}, "clientSecret", "required"},
		{"oauth2 clientId missing", genericInput, func(in *Input) {
			in.Auth = p("oauth2")
			in.TokenURL = p("https://login.example.com/token")
			in.ClientSecret = p("y")
		}, "clientId", "required"},
		{"graph tenantId missing", graphInput, func(in *Input) { in.TenantID = nil }, "tenantId", "required"},
		{"graph tenantId bad", graphInput, func(in *Input) { in.TenantID = p("contoso") }, "tenantId", "GUID or a verified domain"},
		{"graph tenantId bad guid", graphInput, func(in *Input) { in.TenantID = p("1111-2222") }, "tenantId", "GUID or a verified domain"},
		{"graph clientId missing", graphInput, func(in *Input) { in.ClientID = nil }, "clientId", "required"},
		{"graph clientId not guid", graphInput, func(in *Input) { in.ClientID = p("my-app") }, "clientId", "GUID"},
		{"graph clientSecret missing", graphInput, func(in *Input) { in.ClientSecret = nil }, "clientSecret", "required"},
		{"graph username missing", graphInput, func(in *Input) { in.Username = nil }, "username", "required"},
		{"graph graphUrl not url", graphInput, func(in *Input) { in.GraphURL = p("graph.microsoft.com") }, "graphUrl", "https"},
		{"graph graphUrl http remote", graphInput, func(in *Input) { in.GraphURL = p("http://graph.microsoft.com") }, "graphUrl", "https"},
		{"graph authorityUrl bad", graphInput, func(in *Input) { in.AuthorityURL = p("ftp://login") }, "authorityUrl", "https"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.base()
			tt.mod(&in)
			_, err := Build(in, nil)
			var ve valid.Errors
			if !errors.As(err, &ve) {
				t.Fatalf("got error %v, want a validation error on %s", err, tt.field)
			}
			if len(ve) != 1 {
				t.Errorf("got fields %v, want only %s", ve, tt.field)
			}
			msg, ok := ve[tt.field]
			if !ok {
				t.Fatalf("got fields %v, want %s", ve, tt.field)
			}
			if !strings.Contains(msg, tt.message) {
				t.Errorf("got message %q for %s, want it to contain %q", msg, tt.field, tt.message)
			}
		})
	}
}

func TestBuildAccepts(t *testing.T) {
	tests := []struct {
		name  string
		base  func() Input
		mod   func(*Input)
		check func(t *testing.T, c Config)
	}{
		{"generic defaults", genericInput, func(*Input) {}, func(t *testing.T, c Config) {
			if c.ServerType != ServerIMAPS || c.Type != TypeGeneric || !c.Enabled || c.Folder != "INBOX" ||
				c.TLS != TLSImplicit || c.AfterProcessing != AfterNone || c.PollInterval != 60 || c.Backlog != BacklogNew || c.Auth != AuthPassword {
				t.Errorf("got %+v, want the documented defaults", c)
			}
		}},
		{"name of 50", genericInput, func(in *Input) { in.Name = p(strings.Repeat("A_9", 16) + "zz") }, nil},
		{"description of 1000 runes", genericInput, func(in *Input) { in.Description = p(strings.Repeat("ü", 1000)) }, nil},
		{"port 143 derives starttls", genericInput, func(in *Input) { in.Port = p(143) }, func(t *testing.T, c Config) {
			if c.TLS != TLSStartTLS {
				t.Errorf("got tls %q, want starttls", c.TLS)
			}
		}},
		{"port 110 derives starttls", genericInput, func(in *Input) { in.Port = p(110); in.ServerType = p("pop3s") }, func(t *testing.T, c Config) {
			if c.TLS != TLSStartTLS {
				t.Errorf("got tls %q, want starttls", c.TLS)
			}
		}},
		{"explicit tls kept", genericInput, func(in *Input) { in.Port = p(10993); in.TLS = p("starttls") }, func(t *testing.T, c Config) {
			if c.TLS != TLSStartTLS {
				t.Errorf("got tls %q, want starttls", c.TLS)
			}
		}},
		{"ipv4 host", genericInput, func(in *Input) { in.Host = p("127.0.0.1") }, nil},
		{"ipv6 host", genericInput, func(in *Input) { in.Host = p("::1") }, nil},
		{"caCert", genericInput, func(in *Input) { in.CACert = p(testCA) }, nil},
		{"move", genericInput, func(in *Input) { in.AfterProcessing = p("move"); in.MoveTo = p("Processed") }, nil},
		{"disabled", genericInput, func(in *Input) { in.Enabled = p(false) }, func(t *testing.T, c Config) {
			if c.Enabled {
				t.Error("got enabled, want disabled")
			}
		}},
		{"oauth2", genericInput, func(in *Input) {
			in.Password = nil
			in.Auth = p("oauth2")
			in.TokenURL = p("https://login.microsoftonline.com/x/oauth2/v2.0/token")
			in.ClientID = p("abc")
			in.ClientSecret = p("s")
			in.Scope = p("https://outlook.office365.com/.default")
		}, func(t *testing.T, c Config) {
			if c.Password != "" || c.ClientSecret != "s" {
				t.Errorf("got password %q secret %q", c.Password, c.ClientSecret)
			}
		}},
		{"oauth2 default scope, loopback token url", genericInput, func(in *Input) {
			in.Password = nil
			in.Auth = p("oauth2")
			in.TokenURL = p("http://127.0.0.1:9999/token")
			in.ClientID = p("abc")
			in.ClientSecret = p("s")
			in.Scope = p("  ")
		}, func(t *testing.T, c Config) {
			if c.Scope != DefaultOAuth2Scope || c.TokenURL != "http://127.0.0.1:9999/token" {
				t.Errorf("got scope %q tokenUrl %q, want the default scope", c.Scope, c.TokenURL)
			}
		}},
		{"graph defaults", graphInput, func(in *Input) { in.Host = p("ignored"); in.Password = p("ignored") }, func(t *testing.T, c Config) {
			if c.GraphURL != DefaultGraphURL || c.AuthorityURL != DefaultAuthorityURL {
				t.Errorf("got %q %q, want the Microsoft defaults", c.GraphURL, c.AuthorityURL)
			}
			if c.Host != "" || c.Password != "" {
				t.Errorf("got host %q password set %v, want generic-only fields dropped", c.Host, c.Password != "")
			}
		}},
		{"graph guid tenant, loopback urls", graphInput, func(in *Input) {
			in.TenantID = p("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee")
			in.GraphURL = p("http://127.0.0.1:8081/")
			in.AuthorityURL = p("https://127.0.0.1:8082")
		}, func(t *testing.T, c Config) {
			if c.GraphURL != "http://127.0.0.1:8081" {
				t.Errorf("got graphUrl %q, want trailing slash trimmed", c.GraphURL)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.base()
			tt.mod(&in)
			c, err := Build(in, nil)
			if err != nil {
				t.Fatalf("got %v, want no error", err)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

func TestBuildReportsEveryField(t *testing.T) {
	_, err := Build(Input{Port: p(0), Host: p("a/b"), Description: p(strings.Repeat("x", 1001))}, nil)
	var ve valid.Errors
	if !errors.As(err, &ve) {
		t.Fatalf("got %v, want validation errors", err)
	}
	for _, f := range []string{"name", "username", "host", "port", "password", "description"} {
		if _, ok := ve[f]; !ok {
			t.Errorf("got %v, want an error for %s", ve, f)
		}
	}
}

func TestBuildEditKeepsSecret(t *testing.T) {
	prev, err := Build(genericInput(), nil)
	if err != nil {
		t.Fatal(err)
	}
	prev.ID = 7
	in := genericInput()
	in.Password = nil
	in.Name = p("renamed")
	c, err := Build(in, &prev)
	if err != nil {
		t.Fatal(err)
	}
	if c.Password != "app-password" || c.ID != 7 {
		t.Errorf("got password kept=%v id=%d, want the stored password and id 7", c.Password == "app-password", c.ID)
	}
	in.Password = p("new-password")
	c, _ = Build(in, &prev)
	if c.Password != "new-password" {
		t.Error("a given password did not replace the stored one")
	}
	// Switching to msgraph needs a client secret: the password does not count.
	g := graphInput()
	g.ClientSecret = nil
	if _, err := Build(g, &prev); err == nil || !strings.Contains(err.Error(), "clientSecret") {
		t.Errorf("got %v, want clientSecret required", err)
	}
}

func TestCopyName(t *testing.T) {
	n43 := strings.Repeat("a", 43)
	n44 := strings.Repeat("b", 44)
	n50 := strings.Repeat("c", 50)
	tests := []struct {
		name string
		n    int
		want string
	}{
		{"support", 1, "support_copied"},
		{"support", 2, "support_copied_2"},
		{"support", 10, "support_copied_10"},
		{n43, 1, n43 + "_copied"},
		{n43, 2, n43[:41] + "_copied_2"},
		{n44, 1, n44[:43] + "_copied"},
		{n50, 1, n50[:43] + "_copied"},
		{n50, 3, n50[:41] + "_copied_3"},
		{n50, 12, n50[:40] + "_copied_12"},
	}
	for _, tt := range tests {
		got := CopyName(tt.name, tt.n)
		if got != tt.want {
			t.Errorf("CopyName(%d chars, %d): got %q, want %q", len(tt.name), tt.n, got, tt.want)
		}
		if len(got) > MaxNameLen {
			t.Errorf("got %d characters, want at most %d", len(got), MaxNameLen)
		}
	}
}

func TestDuplicate(t *testing.T) {
	orig, err := Build(genericInput(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Duplicate(orig, DuplicateInput{}); err == nil || !strings.Contains(err.Error(), "password") {
		t.Errorf("got %v, want password required", err)
	}
	c, err := Duplicate(orig, DuplicateInput{Password: p("other")})
	if err != nil {
		t.Fatal(err)
	}
	if c.Enabled || c.Password != "other" || c.Host != orig.Host || c.Name != "" {
		t.Errorf("got %+v, want a disabled copy with the new password and no name", c)
	}
	g, _ := Build(graphInput(), nil)
	if _, err := Duplicate(g, DuplicateInput{Password: p("x")}); err == nil || !strings.Contains(err.Error(), "clientSecret") {
		t.Errorf("got %v, want clientSecret required", err)
	}
	if _, err := Duplicate(g, DuplicateInput{ClientSecret: p("x"), Name: p("bad name")}); err == nil || !strings.Contains(err.Error(), "name") {
		t.Errorf("got %v, want name refused", err)
	}
}

// TestBuildBindsStoredSecrets: a stored secret is kept only while it would go
// where it went before; any change of destination needs it again, naming
// the secret's field and why, and the refused secret is not in the result.
func TestBuildBindsStoredSecrets(t *testing.T) {
	oauth := func() Input {
		in := genericInput()
		in.Password, in.Auth = nil, p("oauth2")
		in.TokenURL, in.ClientID, in.ClientSecret = p("https://login.example.com/token"), p("client"), p("oauth-secret")
		return in
	}
	pop3 := func() Input {
		in := genericInput()
		in.ServerType, in.Port = p("pop3s"), p(995)
		return in
	}
	tests := []struct {
		name  string
		base  func() Input
		mod   func(*Input)
		field string // "" when the stored secret is kept
		why   string
	}{
		{"imap same destination", genericInput, func(in *Input) { in.Description = p("x"); in.Folder = p("Archive") }, "", ""},
		{"imap host", genericInput, func(in *Input) { in.Host = p("evil.example.net") }, "password", "host changed"},
		{"imap host case only", genericInput, func(in *Input) { in.Host = p("IMAP.example.com") }, "", ""},
		{"imap port", genericInput, func(in *Input) { in.Port = p(1993) }, "password", "port changed"},
		{"imap tls", genericInput, func(in *Input) { in.TLS = p("starttls") }, "password", "tls changed"},
		{"imap caCert", genericInput, func(in *Input) { in.CACert = p(testCA) }, "password", "caCert changed"},
		{"imap username", genericInput, func(in *Input) { in.Username = p("other@example.com") }, "password", "username changed"},
		{"imap to pop3", genericInput, func(in *Input) { in.ServerType = p("pop3s") }, "password", "serverType changed"},
		{"pop3 host", pop3, func(in *Input) { in.Host = p("evil.example.net") }, "password", "host changed"},
		{"pop3 same", pop3, func(in *Input) { in.PollInterval = p(30) }, "", ""},
		{"oauth2 tokenUrl", oauth, func(in *Input) { in.TokenURL = p("https://evil.example.net/token") }, "clientSecret", "tokenUrl changed"},
		{"oauth2 scope", oauth, func(in *Input) { in.Scope = p("https://evil.example.net/.default") }, "clientSecret", "scope changed"},
		{"oauth2 clientId", oauth, func(in *Input) { in.ClientID = p("other") }, "clientSecret", "clientId changed"},
		{"oauth2 host", oauth, func(in *Input) { in.Host = p("evil.example.net") }, "clientSecret", "host changed"},
		{"oauth2 same", oauth, func(in *Input) { in.Description = p("y") }, "", ""},
		{"graph authorityUrl", graphInput, func(in *Input) { in.AuthorityURL = p("https://evil.example.net") }, "clientSecret", "authorityUrl changed"},
		{"graph graphUrl", graphInput, func(in *Input) { in.GraphURL = p("https://evil.example.net") }, "clientSecret", "graphUrl changed"},
		{"graph tenantId", graphInput, func(in *Input) { in.TenantID = p("evil.onmicrosoft.com") }, "clientSecret", "tenantId changed"},
		{"graph clientId", graphInput, func(in *Input) { in.ClientID = p("99999999-2222-3333-4444-555555555555") }, "clientSecret", "clientId changed"},
		{"graph same", graphInput, func(in *Input) { in.Description = p("z") }, "", ""},
		{"generic oauth2 to graph", oauth, func(in *Input) {
			g := graphInput()
			g.ClientSecret = nil
			*in = g
		}, "clientSecret", "type, host, port and more changed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prev, err := Build(tt.base(), nil)
			if err != nil {
				t.Fatal(err)
			}
			in := tt.base()
			in.Password, in.ClientSecret = nil, p("")
			tt.mod(&in)
			c, err := Build(in, &prev)
			if tt.field == "" {
				if err != nil {
					t.Fatalf("got %v, want the stored secret kept", err)
				}
				if c.Password != prev.Password || c.ClientSecret != prev.ClientSecret {
					t.Error("the stored secret was not kept")
				}
				return
			}
			var ve valid.Errors
			if !errors.As(err, &ve) || len(ve) != 1 || !strings.Contains(ve[tt.field], "required again because "+tt.why) {
				t.Fatalf("got %v, want only %s: required again because %s", err, tt.field, tt.why)
			}
			if c.Password != "" || c.ClientSecret != "" {
				t.Error("the refused stored secret is still in the result")
			}
			// Given again, the secret is taken.
			if tt.field == "password" {
				in.Password = p("typed-again")
			} else {
				in.ClientSecret = p("typed-again")
			}
			if c, err := Build(in, &prev); err != nil || (c.Password != "typed-again" && c.ClientSecret != "typed-again") {
				t.Errorf("with the secret given again: got %v", err)
			}
		})
	}
}

func delegatedInput(provider string) Input {
	in := genericInput()
	in.Password, in.Auth, in.Provider, in.ClientID = nil, p(AuthOAuth2Delegated), p(provider), p("client-123")
	if provider == ProviderCustom {
		in.AuthURL, in.TokenURL, in.Scope = p("https://id.example.com/authorize"), p("https://id.example.com/token"), p("mail offline_access")
	}
	return in
}

func graphDelegatedInput() Input {
	in := graphInput()
	in.Auth, in.TenantID, in.ClientSecret = p(AuthOAuth2Delegated), nil, nil
	return in
}

// TestBuildDelegated covers the rules of auth oauth2-delegated: each bad
// input is refused naming exactly its field; good inputs get the defaults.
func TestBuildDelegated(t *testing.T) {
	bad := []struct {
		name    string
		in      func() Input
		mod     func(*Input)
		field   string
		message string
	}{
		{"provider missing", func() Input { return delegatedInput("") }, func(*Input) {}, "provider", "google, microsoft or custom"},
		{"provider unknown", func() Input { return delegatedInput("yahoo") }, func(*Input) {}, "provider", "google, microsoft, custom"},
		{"clientId missing", func() Input { return delegatedInput(ProviderGoogle) }, func(in *Input) { in.ClientID = nil }, "clientId", "required when auth is oauth2-delegated"},
		{"clientId blank", func() Input { return delegatedInput(ProviderGoogle) }, func(in *Input) { in.ClientID = p("  ") }, "clientId", "required"},
		{"clientSecret with newline", func() Input { return delegatedInput(ProviderGoogle) }, func(in *Input) { in.ClientSecret = p("a\nb") }, "clientSecret", "line breaks"},
		{"custom authUrl missing", func() Input { return delegatedInput(ProviderCustom) }, func(in *Input) { in.AuthURL = nil }, "authUrl", "required when auth is oauth2-delegated and provider is custom"},
		{"custom authUrl http remote", func() Input { return delegatedInput(ProviderCustom) }, func(in *Input) { in.AuthURL = p("http://id.example.com/a") }, "authUrl", "https"},
		{"custom tokenUrl missing", func() Input { return delegatedInput(ProviderCustom) }, func(in *Input) { in.TokenURL = p("") }, "tokenUrl", "required"},
		{"custom tokenUrl not url", func() Input { return delegatedInput(ProviderCustom) }, func(in *Input) { in.TokenURL = p("id.example.com/token") }, "tokenUrl", "https"},
		{"custom tokenUrl http remote", func() Input { return delegatedInput(ProviderCustom) }, func(in *Input) { in.TokenURL = p("http://id.example.com/token") }, "tokenUrl", "https (http only for localhost)"},
		{"custom tokenUrl javascript", func() Input { return delegatedInput(ProviderCustom) }, func(in *Input) { in.TokenURL = p("javascript://id.example.com/%0aalert(1)") }, "tokenUrl", "https"},
		{"custom authUrl javascript", func() Input { return delegatedInput(ProviderCustom) }, func(in *Input) { in.AuthURL = p("javascript://id.example.com/%0aalert(1)") }, "authUrl", "https"},
		{"custom authUrl data", func() Input { return delegatedInput(ProviderCustom) }, func(in *Input) { in.AuthURL = p("data:text/html,<script>alert(1)</script>") }, "authUrl", "https"},
		{"custom authUrl with credentials", func() Input { return delegatedInput(ProviderCustom) }, func(in *Input) { in.AuthURL = p("https://u:p@id.example.com/a") }, "authUrl", "https"},
		{"microsoft authority http remote", func() Input { return delegatedInput(ProviderMicrosoft) }, func(in *Input) { in.AuthorityURL = p("http://login.example.com") }, "authorityUrl", "https"},
		{"graph graphUrl http remote", graphDelegatedInput, func(in *Input) { in.GraphURL = p("http://graph.example.com") }, "graphUrl", "https"},
		{"custom scope missing", func() Input { return delegatedInput(ProviderCustom) }, func(in *Input) { in.Scope = p(" ") }, "scope", "required"},
		{"microsoft tenant bad", func() Input { return delegatedInput(ProviderMicrosoft) }, func(in *Input) { in.TenantID = p("contoso") }, "tenantId", "consumers"},
		{"microsoft authority bad", func() Input { return delegatedInput(ProviderMicrosoft) }, func(in *Input) { in.AuthorityURL = p("ftp://x") }, "authorityUrl", "https"},
		{"pop3 provider unknown", func() Input { return delegatedInput("gmail") }, func(in *Input) { in.ServerType, in.Port = p("pop3s"), p(995) }, "provider", "google, microsoft, custom"},
		{"graph google", graphDelegatedInput, func(in *Input) { in.Provider = p(ProviderGoogle) }, "provider", "microsoft or custom"},
		{"graph clientId missing", graphDelegatedInput, func(in *Input) { in.ClientID = nil }, "clientId", "required"},
		{"graph graphUrl bad", graphDelegatedInput, func(in *Input) { in.GraphURL = p("graph") }, "graphUrl", "https"},
		{"graph custom tokenUrl missing", graphDelegatedInput, func(in *Input) {
			in.Provider, in.AuthURL, in.Scope = p(ProviderCustom), p("https://id.example.com/a"), p("Mail.ReadWrite")
		}, "tokenUrl", "required"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in()
			tt.mod(&in)
			_, err := Build(in, nil)
			var ve valid.Errors
			if !errors.As(err, &ve) || len(ve) != 1 {
				t.Fatalf("got %v, want only %s refused", err, tt.field)
			}
			if !strings.Contains(ve[tt.field], tt.message) {
				t.Errorf("got %v, want %s: …%s…", ve, tt.field, tt.message)
			}
		})
	}

	good := []struct {
		name  string
		in    func() Input
		mod   func(*Input)
		check func(t *testing.T, c Config)
	}{
		{"google, no password, no secret", func() Input { return delegatedInput(ProviderGoogle) }, func(in *Input) {
			in.Password, in.TokenURL, in.AuthURL, in.TenantID = p("ignored"), p("https://ignored.example.com"), p("https://ignored.example.com"), p("ignored")
		}, func(t *testing.T, c Config) {
			if c.Password != "" || c.ClientSecret != "" || c.TokenURL != "" || c.AuthURL != "" || c.TenantID != "" || c.Provider != ProviderGoogle {
				t.Errorf("got %+v, want only google's fields", c)
			}
		}},
		{"microsoft default tenant and authority", func() Input { return delegatedInput(ProviderMicrosoft) }, func(*Input) {}, func(t *testing.T, c Config) {
			if c.TenantID != "common" || c.AuthorityURL != DefaultAuthorityURL {
				t.Errorf("got tenant %q authority %q, want common and the default", c.TenantID, c.AuthorityURL)
			}
		}},
		{"microsoft consumers, loopback authority", func() Input { return delegatedInput(ProviderMicrosoft) }, func(in *Input) {
			in.TenantID, in.AuthorityURL, in.ClientSecret = p("consumers"), p("http://127.0.0.1:9/"), p("s")
		}, func(t *testing.T, c Config) {
			if c.TenantID != "consumers" || c.AuthorityURL != "http://127.0.0.1:9" || c.ClientSecret != "s" {
				t.Errorf("got %+v", c)
			}
		}},
		{"custom loopback", func() Input { return delegatedInput(ProviderCustom) }, func(in *Input) {
			in.AuthURL, in.TokenURL, in.Scope = p("http://127.0.0.1:8/authorize"), p("http://localhost:8/token"), p("  mail   openid ")
		}, func(t *testing.T, c Config) {
			if c.AuthURL != "http://127.0.0.1:8/authorize" || c.TokenURL != "http://localhost:8/token" || c.Scope != "mail openid" {
				t.Errorf("got %+v", c)
			}
			v := c.View()
			if v.Provider != ProviderCustom || v.AuthURL != c.AuthURL || v.HasPassword || v.SignIn != nil {
				t.Errorf("got view %+v", v)
			}
		}},
		{"pop3", func() Input { return delegatedInput(ProviderGoogle) }, func(in *Input) { in.ServerType, in.Port = p("pop3s"), p(995) }, nil},
		{"graph microsoft by default", graphDelegatedInput, func(*Input) {}, func(t *testing.T, c Config) {
			if c.Provider != ProviderMicrosoft || c.TenantID != "common" || c.ClientSecret != "" || c.GraphURL != DefaultGraphURL || c.NeedsClientSecret() {
				t.Errorf("got %+v", c)
			}
		}},
	}
	for _, tt := range good {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in()
			tt.mod(&in)
			c, err := Build(in, nil)
			if err != nil {
				t.Fatalf("got %v, want no error", err)
			}
			if c.Auth != AuthOAuth2Delegated {
				t.Errorf("got auth %q", c.Auth)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

// TestDelegatedDestination: provider and authUrl are destination fields (a
// changed one drops the grant in the store and needs a stored client
// secret again); other edits keep the stored secret.
func TestDelegatedDestination(t *testing.T) {
	in := delegatedInput(ProviderCustom)
	in.ClientSecret = p("secret")
	prev, err := Build(in, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		mod   func(*Input)
		field string
	}{
		{func(in *Input) { in.AuthURL = p("https://evil.example.net/authorize") }, "authUrl"},
		{func(in *Input) { in.Provider = p(ProviderGoogle) }, "provider"},
		{func(in *Input) { in.TokenURL = p("https://evil.example.net/token") }, "tokenUrl"},
	} {
		in := delegatedInput(ProviderCustom)
		tt.mod(&in)
		c, err := Build(in, &prev)
		if got := DestinationChanges(&prev, &c); !contains(got, tt.field) {
			t.Errorf("got changes %v, want %s", got, tt.field)
		}
		if err == nil || c.ClientSecret != "" || !strings.Contains(err.Error(), "clientSecret") {
			t.Errorf("%s changed: got %v, secret kept %v; want the client secret required again", tt.field, err, c.ClientSecret != "")
		}
	}
	in = delegatedInput(ProviderCustom)
	in.Description = p("changed")
	c, err := Build(in, &prev)
	if err != nil || c.ClientSecret != "secret" || DestinationChanges(&prev, &c) != nil {
		t.Errorf("got %v, secret kept %v, want it kept", err, c.ClientSecret == "secret")
	}
	d, err := Duplicate(prev, DuplicateInput{})
	if err != nil || d.ClientSecret != "" || d.Provider != ProviderCustom || d.AuthURL != prev.AuthURL || d.Enabled {
		t.Errorf("duplicate: got %+v, %v; want the settings without the secret", d, err)
	}
	if d, err := Duplicate(prev, DuplicateInput{ClientSecret: p("other")}); err != nil || d.ClientSecret != "other" {
		t.Errorf("duplicate with a secret: got %v", err)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestForTest: a test of a saved configuration's name keeps its ID (and so
// its sign-in) only while the destination is the saved one; with a changed
// destination and a client secret of the tester's choosing it is an
// unsaved configuration (ID 0), whose test finds no sign-in.
func TestForTest(t *testing.T) {
	prev, err := Build(delegatedInput(ProviderCustom), nil)
	if err != nil {
		t.Fatal(err)
	}
	prev.ID = 7
	same, err := Build(delegatedInput(ProviderCustom), &prev)
	if err != nil || ForTest(same, &prev).ID != 7 {
		t.Errorf("unchanged: got %v, id %d; want 7", err, ForTest(same, &prev).ID)
	}
	for _, mod := range []func(*Input){
		func(in *Input) { in.TokenURL = p("https://evil.example.net/token") },
		func(in *Input) { in.Host = p("imap.evil.example.net") },
		func(in *Input) { in.Username = p("attacker@example.net") },
		func(in *Input) { in.Type, in.GraphURL = p(TypeMSGraph), p("https://graph.evil.example.net") },
	} {
		in := delegatedInput(ProviderCustom)
		in.ClientSecret = p("attacker-chosen")
		mod(&in)
		c, err := Build(in, &prev)
		if err != nil {
			t.Fatal(err)
		}
		if c.ID != 7 {
			t.Fatalf("Build: got id %d, want 7 (an edit keeps it)", c.ID)
		}
		if got := ForTest(c, &prev); got.ID != 0 {
			t.Errorf("%v changed: got id %d, want 0", DestinationChanges(&prev, &c), got.ID)
		}
	}
	if c := ForTest(same, nil); c.ID != same.ID {
		t.Errorf("no saved configuration: got id %d", c.ID)
	}
}
