package web

import (
	"errors"
	"net/url"
	"strconv"
	"strings"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/store"
	"mailtrigger/internal/valid"
)

// imapForm is what the Create and Edit panels show in their fields. It
// never holds a secret: a secret typed into a form that is shown again must
// be typed again.
type imapForm struct {
	Name, ServerType, Type, Description           string
	Host, Port, Username, TenantID, ClientID      string
	Folder, TLS, CACert, AfterProcessing, MoveTo  string
	PollInterval, Backlog, GraphURL, AuthorityURL string
	Auth, TokenURL, Scope                         string
	Provider, AuthURL                             string
	Enabled                                       bool
	PasswordTyped, ClientSecretTyped              bool
	HasPassword, HasClientSecret                  bool // stored (edit)
	Advanced                                      bool // open the advanced settings
}

func formFromConfig(c imapconf.Config) imapForm {
	f := imapForm{Name: c.Name, ServerType: c.ServerType, Type: c.Type, Description: c.Description, Host: c.Host,
		Username: c.Username, TenantID: c.TenantID, ClientID: c.ClientID, Folder: c.Folder, TLS: c.TLS, CACert: c.CACert,
		AfterProcessing: c.AfterProcessing, MoveTo: c.MoveTo, Backlog: c.Backlog, GraphURL: c.GraphURL,
		AuthorityURL: c.AuthorityURL, Auth: c.Auth, TokenURL: c.TokenURL, Scope: c.Scope, Enabled: c.Enabled,
		Provider: c.Provider, AuthURL: c.AuthURL,
		HasPassword: c.Password != "", HasClientSecret: c.ClientSecret != ""}
	if c.Port != 0 {
		f.Port = strconv.Itoa(c.Port)
	}
	if c.PollInterval != 0 {
		f.PollInterval = strconv.Itoa(c.PollInterval)
	}
	if f.Auth == "" {
		f.Auth = imapconf.AuthPassword
		if c.Type == imapconf.TypeMSGraph {
			f.Auth = authApp
		}
	}
	if f.Provider == "" {
		// What the sign-in fields offer first when Sign in is chosen.
		f.Provider = imapconf.ProviderGoogle
		if c.Type == imapconf.TypeMSGraph {
			f.Provider = imapconf.ProviderMicrosoft
		}
	}
	return f
}

// authApp is the value of the MS Graph panel's Authentication for app-only
// access (client credentials): the entity's empty auth.
const authApp = "app"

func newForm(typ string) imapForm {
	auth, provider := authApp, imapconf.ProviderMicrosoft
	if typ != imapconf.TypeMSGraph {
		typ, auth, provider = imapconf.TypeGeneric, imapconf.AuthPassword, imapconf.ProviderGoogle
	}
	return imapForm{ServerType: imapconf.ServerIMAPS, Type: typ, Port: "993", Folder: imapconf.DefaultFolder,
		AfterProcessing: imapconf.AfterNone, PollInterval: strconv.Itoa(imapconf.DefaultPollInterval),
		Backlog: imapconf.BacklogNew, GraphURL: imapconf.DefaultGraphURL, AuthorityURL: imapconf.DefaultAuthorityURL,
		Auth: auth, Provider: provider, Enabled: true}
}

func formFromValues(v url.Values) imapForm {
	return imapForm{Name: v.Get("name"), ServerType: v.Get("serverType"), Type: v.Get("type"), Description: v.Get("description"),
		Host: v.Get("host"), Port: v.Get("port"), Username: v.Get("username"), TenantID: v.Get("tenantId"),
		ClientID: v.Get("clientId"), Folder: v.Get("folder"), TLS: v.Get("tls"), CACert: v.Get("caCert"),
		AfterProcessing: v.Get("afterProcessing"), MoveTo: v.Get("moveTo"), PollInterval: v.Get("pollInterval"),
		Backlog: v.Get("backlog"), GraphURL: v.Get("graphUrl"), AuthorityURL: v.Get("authorityUrl"), Auth: v.Get("auth"),
		TokenURL: v.Get("tokenUrl"), Scope: v.Get("scope"), Enabled: v.Has("enabled"),
		Provider: v.Get("provider"), AuthURL: v.Get("authUrl"),
		PasswordTyped: v.Get("password") != "", ClientSecretTyped: v.Get("clientSecret") != ""}
}

// inputFromValues reads a submitted Create or Edit form into the input the
// API decodes from JSON. Fields the form did not send stay nil, so Build
// applies the same defaults; a number that is not one is an error of its
// field.
func inputFromValues(v url.Values) (imapconf.Input, valid.Errors) {
	e := valid.Errors{}
	str := func(k string) *string {
		if !v.Has(k) {
			return nil
		}
		s := v.Get(k)
		return &s
	}
	// Fields with a default: left empty means the default.
	def := func(k string) *string {
		if strings.TrimSpace(v.Get(k)) == "" {
			return nil
		}
		s := strings.TrimSpace(v.Get(k))
		return &s
	}
	num := func(k string) *int {
		s := strings.TrimSpace(v.Get(k))
		if s == "" {
			return nil
		}
		n, err := strconv.Atoi(s)
		if err != nil {
			e.Add(k, "must be a whole number")
			return nil
		}
		return &n
	}
	// Secrets: left empty means "keep the stored one" when editing.
	secret := func(k string) *string {
		if v.Get(k) == "" {
			return nil
		}
		s := v.Get(k)
		return &s
	}
	trim := func(k string) *string {
		p := str(k)
		if p != nil {
			*p = strings.TrimSpace(*p)
		}
		return p
	}
	enabled := v.Has("enabled")
	in := imapconf.Input{
		Name: trim("name"), ServerType: def("serverType"), Type: def("type"), Description: str("description"),
		Enabled: &enabled, Host: trim("host"), Port: num("port"), Username: trim("username"), Password: secret("password"),
		TenantID: trim("tenantId"), ClientID: trim("clientId"), ClientSecret: secret("clientSecret"), Folder: def("folder"),
		TLS: def("tls"), CACert: trim("caCert"), AfterProcessing: def("afterProcessing"), MoveTo: trim("moveTo"),
		PollInterval: num("pollInterval"), Backlog: def("backlog"), GraphURL: def("graphUrl"), AuthorityURL: def("authorityUrl"),
		Auth: def("auth"), TokenURL: trim("tokenUrl"), Scope: trim("scope"), Provider: def("provider"), AuthURL: trim("authUrl"),
	}
	return in, e
}

// fieldErrors splits err, as returned by a change, into the field errors
// the form shows (a taken name among them) and any other error.
func fieldErrors(err error) (valid.Errors, error) {
	var ve valid.Errors
	switch {
	case err == nil:
		return valid.Errors{}, nil
	case errors.As(err, &ve):
		return ve, nil
	case errors.Is(err, store.ErrConflict):
		return valid.Errors{"name": "already taken (names are compared case-insensitively)"}, nil
	}
	return nil, err
}

// merge adds the messages of err (a valid.Errors from Build) to e, keeping
// e's message where both name a field. A non-validation error is returned.
func merge(e valid.Errors, err error) (valid.Errors, error) {
	if err == nil {
		return e, nil
	}
	var ve valid.Errors
	if !errors.As(err, &ve) {
		return e, err
	}
	for k, m := range ve {
		e.Add(k, m)
	}
	return e, nil
}

// imapPanel is the Create IMAP or Edit IMAP panel.
type imapPanel struct {
	Create bool
	Orig   string // the stored name when editing
	Form   imapForm
	Errors valid.Errors
	Status *statusView
	Chart  *chart
	Flows  []string
	// SignIn is who signed in (edit, oauth2-delegated); RedirectURI the
	// callback URL to register at the provider.
	SignIn      *imapconf.SignIn
	RedirectURI string
}

// Messages of the secrets that were typed into a refused form: they are never
// sent back, so the summary and the field say that they must be typed again.
const (
	retypePassword = "type it again: a password is never sent back to the browser"
	retypeSecret   = "type it again: a secret is never sent back to the browser"
)

// withRetype adds to e (the errors of a refused form) each secret that was
// typed, so that the summary lists it with the fields to fix.
func withRetype(e valid.Errors, f imapForm) valid.Errors {
	if f.PasswordTyped {
		e.Add("password", retypePassword)
	}
	if f.ClientSecretTyped {
		e.Add("clientSecret", retypeSecret)
	}
	return e
}

// advancedOpen reports whether the refused form f opens its advanced
// settings: an error is among them (an OAuth2 client credentials
// configuration's token URL, scope and client are).
func advancedOpen(e valid.Errors, f imapForm) bool {
	if hasAdvancedError(e) {
		return true
	}
	if f.Type != imapconf.TypeMSGraph && f.Auth == imapconf.AuthOAuth2 {
		for _, k := range []string{"tokenUrl", "scope", "clientId", "clientSecret"} {
			if _, ok := e[k]; ok {
				return true
			}
		}
	}
	return false
}

func hasAdvancedError(e valid.Errors) bool {
	for _, k := range []string{"folder", "tls", "caCert", "afterProcessing", "moveTo", "pollInterval", "backlog",
		"graphUrl", "authorityUrl"} {
		if _, ok := e[k]; ok {
			return true
		}
	}
	return false
}
