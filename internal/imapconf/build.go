package imapconf

import (
	"strconv"
	"strings"
	"unicode"

	"mailtrigger/internal/valid"
)

const (
	maxSecretLen = 4096
	maxFieldLen  = 1000
	maxFolderLen = 255
)

// Build checks in against every rule of the entity and returns the
// configuration it describes, with defaults filled in. prev is the stored
// configuration when editing or testing a saved one (nil when creating): a
// secret omitted (or empty) in in keeps prev's, but only while the secret
// would go where it went before (see BoundSecretFields); otherwise the secret
// is required again. The error is a valid.Errors naming every field that is
// wrong.
func Build(in Input, prev *Config) (Config, error) {
	// NUL and other control characters in any field, first: PostgreSQL
	// refuses NUL, and none belongs in a name, an address or a secret.
	e := valid.Strings(in)
	var c Config
	if prev != nil {
		c.ID, c.CreatedAt, c.UpdatedAt = prev.ID, prev.CreatedAt, prev.UpdatedAt
	}

	c.Name = deref(in.Name, "")
	if m := valid.Name(c.Name); m != "" {
		e.Add("name", m)
	}
	c.ServerType = deref(in.ServerType, ServerIMAPS)
	if m := valid.OneOf(c.ServerType, ServerIMAPS, ServerPOP3S); m != "" {
		e.Add("serverType", m)
	}
	c.Type = deref(in.Type, TypeGeneric)
	if m := valid.OneOf(c.Type, TypeGeneric, TypeMSGraph); m != "" {
		e.Add("type", m)
	}
	c.Description = deref(in.Description, "")
	if m := valid.Text(c.Description, MaxDescriptionLen); m != "" {
		e.Add("description", m)
	}
	c.Enabled = in.Enabled == nil || *in.Enabled
	c.Username = deref(in.Username, "")
	if m := valid.Email(c.Username); m != "" {
		e.Add("username", m)
	}

	c.Folder = deref(in.Folder, DefaultFolder)
	if m := folder(c.Folder); m != "" {
		e.Add("folder", m)
	}
	c.PollInterval = DefaultPollInterval
	if in.PollInterval != nil {
		c.PollInterval = *in.PollInterval
		if c.PollInterval < MinPollInterval || c.PollInterval > MaxPollInterval {
			e.Add("pollInterval", "must be between "+strconv.Itoa(MinPollInterval)+" and "+strconv.Itoa(MaxPollInterval)+" seconds")
		}
	}

	pop3 := c.ServerType == ServerPOP3S && c.Type == TypeGeneric
	c.Backlog = deref(in.Backlog, BacklogNew)
	if pop3 {
		if m := valid.OneOf(c.Backlog, BacklogNew, BacklogAll); m != "" {
			e.Add("backlog", m+" (POP3 has no seen flag)")
		}
	} else if m := valid.OneOf(c.Backlog, BacklogNew, BacklogUnseen, BacklogAll); m != "" {
		e.Add("backlog", m)
	}
	c.AfterProcessing = deref(in.AfterProcessing, AfterNone)
	if pop3 {
		if m := valid.OneOf(c.AfterProcessing, AfterNone, AfterDelete); m != "" {
			e.Add("afterProcessing", m+" (POP3 has no flags or folders)")
		}
	} else if m := valid.OneOf(c.AfterProcessing, AfterNone, AfterSeen, AfterDelete, AfterMove); m != "" {
		e.Add("afterProcessing", m)
	}
	if c.AfterProcessing == AfterMove && !pop3 {
		c.MoveTo = deref(in.MoveTo, "")
		if c.MoveTo == "" {
			e.Add("moveTo", "required when afterProcessing is move")
		} else if m := folder(c.MoveTo); m != "" {
			e.Add("moveTo", m)
		} else if strings.EqualFold(c.MoveTo, c.Folder) {
			e.Add("moveTo", "must differ from folder")
		}
	}
	c.CACert = deref(in.CACert, "")
	if c.CACert != "" {
		if m := valid.PEMCertificates(c.CACert); m != "" {
			e.Add("caCert", m)
		}
	}

	switch c.Type {
	case TypeGeneric:
		buildGeneric(&c, in, prev, e)
	case TypeMSGraph:
		buildGraph(&c, in, prev, e)
	}
	if prev != nil {
		bindSecrets(&c, in, prev, e)
	}
	return c, e.Err()
}

// bindSecrets refuses to keep a stored secret when c would send it (or a
// token obtained with it) somewhere else than prev did: the secret must be
// given again. It is the one place of this rule, for edit and test, in the
// API and the UI. A refused secret is cleared from c as well.
func bindSecrets(c *Config, in Input, prev *Config, e valid.Errors) {
	changed := DestinationChanges(prev, c)
	if len(changed) == 0 {
		return
	}
	if len(changed) > 3 {
		changed = append(changed[:3], "more")
	}
	why := changed[0]
	if n := len(changed); n > 1 {
		why = strings.Join(changed[:n-1], ", ") + " and " + changed[n-1]
	}
	why += " changed"
	if c.NeedsPassword() && omitted(in.Password) && c.Password != "" {
		c.Password = ""
		e.Add("password", "required again because "+why+" — a stored password is only sent to the server it was saved for")
	}
	if (c.NeedsClientSecret() || c.Auth == AuthOAuth2Delegated) && omitted(in.ClientSecret) && c.ClientSecret != "" {
		c.ClientSecret = ""
		e.Add("clientSecret", "required again because "+why+" — a stored client secret is only sent to the server it was saved for")
	}
}

// ForTest returns c, built by Build from a test's input over prev (the
// saved configuration the input names; nil: none), as the test must try
// it: when its destination differs from prev's (DestinationChanges) it is
// not prev's connection, so it loses prev's ID and with it prev's sign-in
// (the grant of an oauth2-delegated configuration is found by ID): a
// refresh token is never sent to a new token URL, nor an access token to
// a new server or Graph URL, by a test either.
func ForTest(c Config, prev *Config) Config {
	if prev != nil && len(DestinationChanges(prev, &c)) > 0 {
		c.ID = 0
	}
	return c
}

func omitted(s *string) bool { return s == nil || *s == "" }

// pemText is s without the differences a browser's text area makes.
func pemText(s string) string { return strings.TrimSpace(strings.ReplaceAll(s, "\r\n", "\n")) }

func authOf(c *Config) string {
	if c.Type == TypeGeneric && c.Auth == "" {
		return AuthPassword
	}
	return c.Auth
}

// DestinationChanges lists the fields (by their JSON names) in which b
// differs from a and that decide where a secret of the configuration, or a
// token obtained with it, is sent: the server, how it is reached and trusted,
// who logs in, and the token and Graph endpoints. Nil when there are none.
func DestinationChanges(a, b *Config) []string {
	var out []string
	add := func(field string, same bool) {
		if !same {
			out = append(out, field)
		}
	}
	add("serverType", a.ServerType == b.ServerType)
	add("type", a.Type == b.Type)
	add("host", strings.EqualFold(a.Host, b.Host))
	add("port", a.Port == b.Port)
	add("tls", a.TLS == b.TLS)
	add("caCert", pemText(a.CACert) == pemText(b.CACert))
	add("username", strings.EqualFold(a.Username, b.Username))
	add("auth", authOf(a) == authOf(b))
	add("tokenUrl", a.TokenURL == b.TokenURL)
	add("scope", a.Scope == b.Scope)
	add("authorityUrl", strings.TrimRight(a.AuthorityURL, "/") == strings.TrimRight(b.AuthorityURL, "/"))
	add("graphUrl", strings.TrimRight(a.GraphURL, "/") == strings.TrimRight(b.GraphURL, "/"))
	add("tenantId", strings.EqualFold(a.TenantID, b.TenantID))
	add("clientId", a.ClientID == b.ClientID)
	add("provider", a.Provider == b.Provider)
	add("authUrl", a.AuthURL == b.AuthURL)
	return out
}

func buildGeneric(c *Config, in Input, prev *Config, e valid.Errors) {
	c.Host = deref(in.Host, "")
	if m := valid.Host(c.Host); m != "" {
		e.Add("host", m)
	}
	if in.Port == nil {
		e.Add("port", "required")
	} else {
		c.Port = *in.Port
		if c.Port < 1 || c.Port > 65535 {
			e.Add("port", "must be between 1 and 65535")
		}
	}
	c.TLS = deref(in.TLS, "")
	switch c.TLS {
	case "":
		c.TLS = TLSImplicit
		if c.Port == 143 || c.Port == 110 {
			c.TLS = TLSStartTLS
		}
	case TLSImplicit, TLSStartTLS:
	default:
		e.Add("tls", "must be implicit or starttls (plaintext login is refused)")
	}
	c.Auth = deref(in.Auth, AuthPassword)
	switch c.Auth {
	case AuthPassword:
		c.Password = keepSecret(in.Password, prev, func(p *Config) string { return p.Password })
		if m := secret(c.Password); m != "" {
			e.Add("password", m)
		}
	case AuthOAuth2Delegated:
		buildDelegated(c, in, prev, e)
	case AuthOAuth2:
		c.TokenURL = deref(in.TokenURL, "")
		if c.TokenURL == "" {
			e.Add("tokenUrl", "required when auth is oauth2")
		} else if m := valid.HTTPSURL(c.TokenURL); m != "" {
			e.Add("tokenUrl", m)
		}
		c.ClientID = deref(in.ClientID, "")
		if c.ClientID == "" {
			e.Add("clientId", "required when auth is oauth2")
		} else if m := plain(c.ClientID); m != "" {
			e.Add("clientId", m)
		}
		c.ClientSecret = keepSecret(in.ClientSecret, prev, func(p *Config) string { return p.ClientSecret })
		if m := secret(c.ClientSecret); m != "" {
			e.Add("clientSecret", m)
		}
		c.Scope = strings.TrimSpace(deref(in.Scope, ""))
		if c.Scope == "" {
			c.Scope = DefaultOAuth2Scope
		} else if m := plain(c.Scope); m != "" {
			e.Add("scope", m)
		}
	default:
		e.Add("auth", valid.OneOf(c.Auth, AuthPassword, AuthOAuth2, AuthOAuth2Delegated))
	}
}

// buildGraph reads an msgraph configuration: app-only (client credentials
// with the Mail.ReadWrite application permission, auth "") or, with auth
// oauth2-delegated, as the user who signed in. Other auth values are ignored
// as they always were.
func buildGraph(c *Config, in Input, prev *Config, e valid.Errors) {
	if deref(in.Auth, "") == AuthOAuth2Delegated {
		c.Auth = AuthOAuth2Delegated
		c.GraphURL = strings.TrimRight(deref(in.GraphURL, DefaultGraphURL), "/")
		if m := valid.HTTPSURL(c.GraphURL); m != "" {
			e.Add("graphUrl", m)
		}
		buildDelegated(c, in, prev, e)
		return
	}
	c.TenantID = deref(in.TenantID, "")
	if c.TenantID == "" {
		e.Add("tenantId", "required")
	} else if valid.GUID(c.TenantID) != "" && valid.Domain(c.TenantID) != "" {
		e.Add("tenantId", "must be a GUID or a verified domain such as contoso.onmicrosoft.com")
	}
	c.ClientID = deref(in.ClientID, "")
	if m := valid.GUID(c.ClientID); m != "" {
		e.Add("clientId", m)
	}
	c.ClientSecret = keepSecret(in.ClientSecret, prev, func(p *Config) string { return p.ClientSecret })
	if m := secret(c.ClientSecret); m != "" {
		e.Add("clientSecret", m)
	}
	c.GraphURL = strings.TrimRight(deref(in.GraphURL, DefaultGraphURL), "/")
	if m := valid.HTTPSURL(c.GraphURL); m != "" {
		e.Add("graphUrl", m)
	}
	c.AuthorityURL = strings.TrimRight(deref(in.AuthorityURL, DefaultAuthorityURL), "/")
	if m := valid.HTTPSURL(c.AuthorityURL); m != "" {
		e.Add("authorityUrl", m)
	}
}

// buildDelegated reads the fields of auth oauth2-delegated: the provider,
// the OAuth client the user registered (client id, and a client secret when
// the provider needs one), and the provider's endpoints: Microsoft's tenant
// and authority, or a custom provider's authorization and token URLs and
// scope. The user signs in later; no password is needed.
func buildDelegated(c *Config, in Input, prev *Config, e valid.Errors) {
	const when = " when auth is oauth2-delegated"
	c.Password = ""
	c.Provider = strings.TrimSpace(deref(in.Provider, ""))
	if c.Provider == "" && c.Type == TypeMSGraph {
		c.Provider = ProviderMicrosoft
	}
	switch c.Provider {
	case "":
		e.Add("provider", "required"+when+": google, microsoft or custom")
	case ProviderGoogle, ProviderMicrosoft, ProviderCustom:
		if c.Type == TypeMSGraph && c.Provider == ProviderGoogle {
			e.Add("provider", "must be microsoft or custom for type msgraph (Graph signs in with Microsoft)")
		}
	default:
		e.Add("provider", valid.OneOf(c.Provider, ProviderGoogle, ProviderMicrosoft, ProviderCustom))
	}
	c.ClientID = strings.TrimSpace(deref(in.ClientID, ""))
	if c.ClientID == "" {
		e.Add("clientId", "required"+when+": the client id of the OAuth client you registered")
	} else if m := plain(c.ClientID); m != "" {
		e.Add("clientId", m)
	}
	// Optional: Microsoft's public clients have none; Google's need one.
	c.ClientSecret = keepSecret(in.ClientSecret, prev, func(p *Config) string { return p.ClientSecret })
	if c.ClientSecret != "" {
		if m := secret(c.ClientSecret); m != "" {
			e.Add("clientSecret", m)
		}
	}
	c.Scope = strings.Join(strings.Fields(deref(in.Scope, "")), " ")
	if c.Scope != "" {
		if m := plain(c.Scope); m != "" {
			e.Add("scope", m)
		}
	}
	c.TenantID, c.AuthURL, c.TokenURL = "", "", ""
	if c.Type == TypeGeneric {
		c.AuthorityURL = ""
	}
	switch c.Provider {
	case ProviderMicrosoft:
		c.TenantID = strings.TrimSpace(deref(in.TenantID, ""))
		switch {
		case c.TenantID == "":
			c.TenantID = DefaultTenant
		case c.TenantID == "common" || c.TenantID == "consumers" || c.TenantID == "organizations":
		case valid.GUID(c.TenantID) != "" && valid.Domain(c.TenantID) != "":
			e.Add("tenantId", "must be common (any account), consumers (personal Microsoft accounts), organizations, a GUID or a verified domain such as contoso.onmicrosoft.com")
		}
		c.AuthorityURL = strings.TrimRight(deref(in.AuthorityURL, DefaultAuthorityURL), "/")
		if c.AuthorityURL == "" {
			c.AuthorityURL = DefaultAuthorityURL
		}
		if m := valid.HTTPSURL(c.AuthorityURL); m != "" {
			e.Add("authorityUrl", m)
		}
	case ProviderCustom:
		c.AuthURL = strings.TrimSpace(deref(in.AuthURL, ""))
		if c.AuthURL == "" {
			e.Add("authUrl", "required"+when+" and provider is custom: the authorization endpoint")
		} else if m := valid.HTTPSURL(c.AuthURL); m != "" {
			e.Add("authUrl", m)
		}
		c.TokenURL = strings.TrimSpace(deref(in.TokenURL, ""))
		if c.TokenURL == "" {
			e.Add("tokenUrl", "required"+when+" and provider is custom: the token endpoint")
		} else if m := valid.HTTPSURL(c.TokenURL); m != "" {
			e.Add("tokenUrl", m)
		}
		if c.Scope == "" {
			e.Add("scope", "required"+when+" and provider is custom: the scopes to ask for, separated by spaces")
		}
	}
}

// keepSecret returns the secret given in the input, or, when it is omitted or
// empty, the one stored in prev.
func keepSecret(in *string, prev *Config, get func(*Config) string) string {
	if in != nil && *in != "" {
		return *in
	}
	if prev != nil {
		return get(prev)
	}
	return ""
}

func secret(s string) string {
	switch {
	case s == "":
		return "required"
	case len(s) > maxSecretLen:
		return "at most " + strconv.Itoa(maxSecretLen) + " bytes"
	case strings.ContainsAny(s, "\r\n\x00"):
		return "must not contain line breaks or NUL"
	}
	return ""
}

func plain(s string) string {
	if m := valid.Text(s, maxFieldLen); m != "" {
		return m
	}
	if strings.ContainsFunc(s, unicode.IsControl) {
		return "must not contain control characters"
	}
	return ""
}

func folder(s string) string {
	if s == "" {
		return "must not be empty"
	}
	if m := valid.Text(s, maxFolderLen); m != "" {
		return m
	}
	if strings.ContainsFunc(s, unicode.IsControl) {
		return "must not contain control characters"
	}
	return ""
}

func deref(p *string, def string) string {
	if p == nil {
		return def
	}
	return *p
}

// Duplicate returns the copy of orig described by in: every field kept but
// the secret, which in must supply, and disabled so that it never competes
// with the original for the same mail. The copy's name is in's when given,
// else empty: the caller then picks the first free one of CopyName(orig.Name, n).
func Duplicate(orig Config, in DuplicateInput) (Config, error) {
	e := valid.Strings(in)
	c := orig
	c.ID = 0
	c.Enabled = false
	c.Password, c.ClientSecret = "", ""
	c.Name = ""
	if in.Name != nil {
		c.Name = *in.Name
		if m := valid.Name(c.Name); m != "" {
			e.Add("name", m)
		}
	}
	if c.NeedsPassword() {
		c.Password = deref(in.Password, "")
		if m := secret(c.Password); m != "" {
			e.Add("password", m+": a copy does not take the original's password")
		}
	}
	if c.NeedsClientSecret() {
		c.ClientSecret = deref(in.ClientSecret, "")
		if m := secret(c.ClientSecret); m != "" {
			e.Add("clientSecret", m+": a copy does not take the original's client secret")
		}
	} else if c.Auth == AuthOAuth2Delegated {
		// Optional for the provider; the copy is not signed in (the store
		// copies no grant) and takes no secret it was not given.
		if c.ClientSecret = deref(in.ClientSecret, ""); c.ClientSecret != "" {
			if m := secret(c.ClientSecret); m != "" {
				e.Add("clientSecret", m)
			}
		}
	}
	return c, e.Err()
}

// CopyName returns the n-th candidate name for a copy of name: NAME_copied for
// n = 1, then NAME_copied_2, NAME_copied_3 …, with NAME shortened so that the
// whole fits MaxNameLen characters.
func CopyName(name string, n int) string {
	suffix := "_copied"
	if n > 1 {
		suffix += "_" + strconv.Itoa(n)
	}
	if len(name)+len(suffix) > MaxNameLen {
		name = name[:MaxNameLen-len(suffix)]
	}
	return name + suffix
}
