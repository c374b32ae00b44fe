package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"mailtrigger/internal/control"
	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/store"
	"mailtrigger/internal/valid"
)

// maxFormBytes bounds a form body, as the API bounds a JSON body.
const maxFormBytes = 1 << 20

var imapCrumbs = []string{"Management", "Configuration Management"}

// imapPage is the IMAP cards page, with at most one panel or dialog open.
type imapPage struct {
	Cards  []imapCard
	Panel  *imapPanel
	Dialog *imapDialog
}

type imapCard struct {
	imapconf.View
	Status statusView
	Flows  []string
}

// statusView is a watcher's status as the page shows it.
type statusView struct {
	State  string `json:"state"`
	Label  string `json:"label"`
	Class  string `json:"class"` // ok, busy, warn, bad, off
	Detail string `json:"detail"`
	Done   int    `json:"done,omitempty"`
	Total  int    `json:"total,omitempty"`

	Since         *time.Time `json:"-"`
	LastError     string     `json:"-"`
	LastErrorAt   *time.Time `json:"-"`
	LastMessageAt *time.Time `json:"-"`
	LastSuccessAt *time.Time `json:"-"`
	Ingested      int64      `json:"-"`
	Reconnects    int64      `json:"-"`
}

func (u *UI) statusOf(c imapconf.Config) statusView {
	st := u.rt.Status(c)
	if st == nil {
		if !c.Enabled {
			return statusView{State: imapconf.StateDisabled, Label: "Disabled", Class: "off", Detail: "Not read: enable it to start reading mail."}
		}
		return statusView{State: "unknown", Label: "Unknown", Class: "off", Detail: "No watcher runs in this process."}
	}
	v := statusView{State: st.State, LastError: st.LastError, LastErrorAt: st.LastErrorAt, LastMessageAt: st.LastMessageAt,
		LastSuccessAt: st.LastSuccessAt, Ingested: st.MessagesIngested, Reconnects: st.Reconnects}
	if !st.Since.IsZero() {
		v.Since = &st.Since
	}
	switch st.State {
	case imapconf.StateDisabled:
		v.Label, v.Class, v.Detail = "Disabled", "off", "Not read: enable it to start reading mail."
	case imapconf.StateConnecting:
		v.Label, v.Class, v.Detail = "Connecting", "busy", "Connecting to the server."
	case imapconf.StateSyncing:
		v.Label, v.Class, v.Detail = "Syncing", "busy", "Reading the mail that arrived since the last check."
		if st.BacklogTotal > 0 {
			v.Done, v.Total = st.BacklogDone, st.BacklogTotal
			v.Label = fmt.Sprintf("Syncing %d / %d", st.BacklogDone, st.BacklogTotal)
		}
	case imapconf.StateIdle:
		v.Label, v.Class, v.Detail = "Connected", "ok", "Connected; new mail arrives at once (IMAP IDLE)."
	case imapconf.StatePolling:
		v.Label, v.Class, v.Detail = "Connected", "ok", fmt.Sprintf("Connected; checks for new mail every %d s (the server has no IDLE).", c.PollInterval)
	case imapconf.StateStale:
		v.Label, v.Class, v.Detail = "Stale", "warn", "The server went silent; reconnecting."
	case imapconf.StateError:
		v.Label, v.Class, v.Detail = "Error", "bad", "Failing; retrying with backoff."
	case imapconf.StateAuthFailed:
		v.Label, v.Class, v.Detail = "Auth failed", "bad", "The server refused the login; check the user name and password. Retried every 5 minutes."
	case imapconf.StateUnsupported:
		v.Label, v.Class, v.Detail = "Not read yet", "warn", "This kind of mailbox is not read by this release."
	default:
		v.Label, v.Class = st.State, "off"
	}
	if st.LastError != "" && v.Class != "ok" {
		v.Detail += " Last error: " + st.LastError
	}
	if st.Replica != "" {
		v.Detail += " Read by replica " + st.Replica + "."
	}
	return v
}

// allIMAP returns every configuration, by name.
func (u *UI) allIMAP(ctx context.Context) ([]imapconf.Config, error) {
	var all []imapconf.Config
	after := ""
	for {
		page, err := u.store.ListIMAP(ctx, after, 500)
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
		if len(page) < 500 {
			return all, nil
		}
		after = page[len(page)-1].Name
	}
}

// allFlows returns every flow, by name.
func (u *UI) allFlows(ctx context.Context) ([]store.FlowRecord, error) {
	var all []store.FlowRecord
	after := ""
	for {
		page, err := u.store.ListFlows(ctx, after, 500)
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
		if len(page) < 500 {
			return all, nil
		}
		after = page[len(page)-1].Name
	}
}

// flowsByIMAP maps a configuration's lower-case name to the flows whose
// trigger names it.
func (u *UI) flowsByIMAP(ctx context.Context) (map[string][]string, error) {
	fs, err := u.allFlows(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, f := range fs {
		k := strings.ToLower(f.IMAPName)
		out[k] = append(out[k], f.Name)
	}
	return out, nil
}

func (u *UI) imapPageData(ctx context.Context) (imapPage, map[string][]string, error) {
	cs, err := u.allIMAP(ctx)
	if err != nil {
		return imapPage{}, nil, err
	}
	flows, err := u.flowsByIMAP(ctx)
	if err != nil {
		return imapPage{}, nil, err
	}
	p := imapPage{Cards: []imapCard{}}
	for _, c := range cs {
		p.Cards = append(p.Cards, imapCard{View: c.View(), Status: u.statusOf(c), Flows: flows[strings.ToLower(c.Name)]})
	}
	return p, flows, nil
}

func (u *UI) renderIMAP(w http.ResponseWriter, r *http.Request, status int, p imapPage) {
	title := "IMAP"
	switch {
	case p.Panel != nil && p.Panel.Create:
		title = "Create IMAP"
	case p.Panel != nil:
		title = "Edit IMAP " + p.Panel.Orig
	case p.Dialog != nil && p.Dialog.Kind == "duplicate":
		title = "Duplicate " + p.Dialog.Name
	case p.Dialog != nil:
		title = "Delete " + p.Dialog.Name
	}
	u.render(w, r, status, "imap", page{Title: title, Nav: "imap", Crumbs: imapCrumbs, Data: p})
}

func (u *UI) imapList(w http.ResponseWriter, r *http.Request) {
	p, _, err := u.imapPageData(r.Context())
	if err != nil {
		u.serverError(w, r, err)
		return
	}
	u.renderIMAP(w, r, http.StatusOK, p)
}

// imapStatus answers the cards page's polling: every configuration's status.
func (u *UI) imapStatus(w http.ResponseWriter, r *http.Request) {
	cs, err := u.allIMAP(r.Context())
	if err != nil {
		u.log.Error("listing imap configurations", "err", err)
		writeJSON(w, http.StatusInternalServerError, map[string]any{"error": map[string]string{"code": "internal"}})
		return
	}
	type item struct {
		Name string `json:"name"`
		statusView
	}
	out := struct {
		Items []item `json:"items"`
	}{Items: []item{}}
	for _, c := range cs {
		out.Items = append(out.Items, item{Name: c.Name, statusView: u.statusOf(c)})
	}
	writeJSON(w, http.StatusOK, out)
}

// imapForm is what the Create and Edit panels show in their fields. It
// never holds a secret: a secret typed into a form that is shown again must
// be typed again.
type imapForm struct {
	Name, ServerType, Type, Description           string
	Host, Port, Username, TenantID, ClientID      string
	Folder, TLS, CACert, AfterProcessing, MoveTo  string
	PollInterval, Backlog, GraphURL, AuthorityURL string
	Auth, TokenURL, Scope                         string
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
		HasPassword: c.Password != "", HasClientSecret: c.ClientSecret != ""}
	if c.Port != 0 {
		f.Port = strconv.Itoa(c.Port)
	}
	if c.PollInterval != 0 {
		f.PollInterval = strconv.Itoa(c.PollInterval)
	}
	if f.Auth == "" {
		f.Auth = imapconf.AuthPassword
	}
	return f
}

func newForm(typ string) imapForm {
	if typ != imapconf.TypeMSGraph {
		typ = imapconf.TypeGeneric
	}
	return imapForm{ServerType: imapconf.ServerIMAPS, Type: typ, Port: "993", Folder: imapconf.DefaultFolder,
		AfterProcessing: imapconf.AfterNone, PollInterval: strconv.Itoa(imapconf.DefaultPollInterval),
		Backlog: imapconf.BacklogNew, GraphURL: imapconf.DefaultGraphURL, AuthorityURL: imapconf.DefaultAuthorityURL,
		Auth: imapconf.AuthPassword, Enabled: true}
}

func formFromValues(v url.Values) imapForm {
	return imapForm{Name: v.Get("name"), ServerType: v.Get("serverType"), Type: v.Get("type"), Description: v.Get("description"),
		Host: v.Get("host"), Port: v.Get("port"), Username: v.Get("username"), TenantID: v.Get("tenantId"),
		ClientID: v.Get("clientId"), Folder: v.Get("folder"), TLS: v.Get("tls"), CACert: v.Get("caCert"),
		AfterProcessing: v.Get("afterProcessing"), MoveTo: v.Get("moveTo"), PollInterval: v.Get("pollInterval"),
		Backlog: v.Get("backlog"), GraphURL: v.Get("graphUrl"), AuthorityURL: v.Get("authorityUrl"), Auth: v.Get("auth"),
		TokenURL: v.Get("tokenUrl"), Scope: v.Get("scope"), Enabled: v.Has("enabled"),
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
		Auth: def("auth"), TokenURL: trim("tokenUrl"), Scope: trim("scope"),
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
}

func (u *UI) parseForm(w http.ResponseWriter, r *http.Request) bool {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			u.errorPage(w, r, http.StatusRequestEntityTooLarge, "Too much data", "The form is larger than 1 MiB.")
			return false
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			u.errorPage(w, r, http.StatusRequestTimeout, "Request timeout", "The form did not arrive in time.")
			return false
		}
		u.errorPage(w, r, http.StatusBadRequest, "Bad request", "The form could not be read.")
		return false
	}
	if k, m := formProblem(r.PostForm); k != "" {
		u.errorPage(w, r, http.StatusBadRequest, "Bad request", fmt.Sprintf("The form field %s %s.", k, m))
		return false
	}
	return true
}

// formProblem returns the first form field holding NUL or invalid UTF-8
// (which PostgreSQL refuses) and what is wrong with it. No browser sends
// them from a form; the fields' own rules (valid.Strings in Build) refuse
// the other control characters with the form shown again.
func formProblem(v url.Values) (field, msg string) {
	for _, k := range slices.Sorted(maps.Keys(v)) {
		for _, s := range append([]string{k}, v[k]...) {
			switch {
			case !utf8.ValidString(s):
				return k, "must be valid UTF-8"
			case strings.ContainsRune(s, 0):
				return k, "must not contain NUL characters"
			}
		}
	}
	return "", ""
}

func (u *UI) imapNew(w http.ResponseWriter, r *http.Request) {
	p, _, err := u.imapPageData(r.Context())
	if err != nil {
		u.serverError(w, r, err)
		return
	}
	p.Panel = &imapPanel{Create: true, Form: newForm(r.URL.Query().Get("type")), Errors: valid.Errors{}}
	u.renderIMAP(w, r, http.StatusOK, p)
}

func (u *UI) imapCreate(w http.ResponseWriter, r *http.Request) {
	if !u.parseForm(w, r) {
		return
	}
	ctx := r.Context()
	in, found := inputFromValues(r.PostForm)
	c, err := u.changes.CreateIMAP(ctx, userFrom(ctx), in, found)
	e, err := fieldErrors(err)
	if err != nil {
		u.serverError(w, r, err)
		return
	}
	if len(e) > 0 {
		p, _, err := u.imapPageData(ctx)
		if err != nil {
			u.serverError(w, r, err)
			return
		}
		f := formFromValues(r.PostForm)
		// An OAuth2 client secret is among the advanced settings.
		f.Advanced = hasAdvancedError(e) || (e["clientSecret"] != "" && f.Type != imapconf.TypeMSGraph && f.Auth == imapconf.AuthOAuth2)
		p.Panel = &imapPanel{Create: true, Form: f, Errors: e}
		u.renderIMAP(w, r, http.StatusBadRequest, p)
		return
	}
	u.setFlash(r, "ok", fmt.Sprintf("IMAP configuration %s created.", c.Name))
	redirect(w, r, "/imap#imap-"+c.Name)
}

func hasAdvancedError(e valid.Errors) bool {
	for _, k := range []string{"folder", "tls", "caCert", "afterProcessing", "moveTo", "pollInterval", "backlog",
		"graphUrl", "authorityUrl", "auth", "tokenUrl", "scope"} {
		if _, ok := e[k]; ok {
			return true
		}
	}
	return false
}

func (u *UI) editPanel(ctx context.Context, c imapconf.Config, flows map[string][]string) (*imapPanel, error) {
	st := u.statusOf(c)
	ch, err := u.messagesChart(ctx, c.Name)
	if err != nil {
		return nil, err
	}
	return &imapPanel{Orig: c.Name, Form: formFromConfig(c), Errors: valid.Errors{}, Status: &st, Chart: ch,
		Flows: flows[strings.ToLower(c.Name)]}, nil
}

func (u *UI) imapEdit(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	c, err := u.store.GetIMAP(ctx, r.PathValue("name"))
	if err != nil && !store.OnlySecret(err) {
		u.fail(w, r, err)
		return
	}
	p, flows, err := u.imapPageData(ctx)
	if err != nil {
		u.serverError(w, r, err)
		return
	}
	if p.Panel, err = u.editPanel(ctx, c, flows); err != nil {
		u.serverError(w, r, err)
		return
	}
	u.renderIMAP(w, r, http.StatusOK, p)
}

func (u *UI) imapSave(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	prev, err := u.store.GetIMAP(ctx, r.PathValue("name"))
	if err != nil && !store.OnlySecret(err) {
		u.fail(w, r, err)
		return
	}
	if !u.parseForm(w, r) {
		return
	}
	in, found := inputFromValues(r.PostForm)
	c, err := u.changes.EditIMAP(ctx, userFrom(ctx), prev, in, found)
	e, err := fieldErrors(err)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	if len(e) > 0 {
		p, flows, err := u.imapPageData(ctx)
		if err == nil {
			p.Panel, err = u.editPanel(ctx, prev, flows)
		}
		if err != nil {
			u.serverError(w, r, err)
			return
		}
		f := formFromValues(r.PostForm)
		f.HasPassword, f.HasClientSecret = prev.Password != "", prev.ClientSecret != ""
		// An OAuth2 client secret is among the advanced settings.
		f.Advanced = hasAdvancedError(e) || (e["clientSecret"] != "" && f.Type != imapconf.TypeMSGraph && f.Auth == imapconf.AuthOAuth2)
		p.Panel.Form, p.Panel.Errors = f, e
		u.renderIMAP(w, r, http.StatusBadRequest, p)
		return
	}
	u.setFlash(r, "ok", fmt.Sprintf("IMAP configuration %s saved.", c.Name))
	redirect(w, r, "/imap#imap-"+c.Name)
}

// imapTest tries the configuration in the form without saving it. A secret
// left empty is taken from the saved configuration the form edits (_orig).
func (u *UI) imapTest(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, testAnswer{Error: "the form could not be read"})
		return
	}
	if k, m := formProblem(r.PostForm); k != "" {
		writeJSON(w, http.StatusBadRequest, testAnswer{Error: "Fix the marked fields first.", Fields: valid.Errors{k: m}})
		return
	}
	ctx := r.Context()
	in, e := inputFromValues(r.PostForm)
	var prev *imapconf.Config
	if orig := r.PostForm.Get("_orig"); orig != "" {
		c, err := u.store.GetIMAP(ctx, orig)
		if store.OnlySecret(err) {
			err = nil // its secret does not open: it must be given again
		}
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			u.log.Error("reading imap configuration", "imap", orig, "err", err)
			writeJSON(w, http.StatusInternalServerError, testAnswer{Error: "internal error; see the server log"})
			return
		}
		if err == nil {
			prev = &c
		}
	}
	// The name plays no part in a connection: a name still being typed
	// must not stop the test.
	name := "unsaved"
	if prev != nil {
		name = prev.Name
	}
	in.Name = &name
	c, err := imapconf.Build(in, prev)
	if e, err = merge(e, err); err != nil {
		writeJSON(w, http.StatusInternalServerError, testAnswer{Error: "internal error; see the server log"})
		return
	}
	if len(e) > 0 {
		writeJSON(w, http.StatusBadRequest, testAnswer{Error: "Fix the marked fields first.", Fields: e})
		return
	}
	tctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	res, err := u.rt.Test(tctx, c)
	switch {
	case errors.Is(err, control.ErrUnavailable):
		writeJSON(w, http.StatusNotImplemented, testAnswer{Error: "testing connections is not available in this process"})
		return
	case err != nil:
		u.log.Error("testing imap connection", "imap", c.Name, "err", err)
		writeJSON(w, http.StatusInternalServerError, testAnswer{Error: "internal error; see the server log"})
		return
	}
	u.log.Info("imap connection tested", "imap", c.Name, "user", userFrom(ctx))
	writeJSON(w, http.StatusOK, res)
}

type testAnswer struct {
	OK     bool              `json:"ok"`
	Error  string            `json:"error,omitempty"`
	Fields map[string]string `json:"fields,omitempty"`
}

// imapDialog is the Duplicate or Delete confirmation.
type imapDialog struct {
	Kind         string // "duplicate" or "delete"
	Name         string
	CopyName     string
	NeedPassword bool
	NeedSecret   bool
	Flows        []string
	Errors       valid.Errors
}

func (u *UI) imapDialogPage(w http.ResponseWriter, r *http.Request, status int, kind string, c imapconf.Config, errs valid.Errors, inUse []string) {
	p, flows, err := u.imapPageData(r.Context())
	if err != nil {
		u.serverError(w, r, err)
		return
	}
	d := &imapDialog{Kind: kind, Name: c.Name, CopyName: imapconf.CopyName(c.Name, 1), NeedPassword: c.NeedsPassword(),
		NeedSecret: c.NeedsClientSecret(), Flows: flows[strings.ToLower(c.Name)], Errors: errs}
	if inUse != nil {
		d.Flows = inUse
	}
	if d.Errors == nil {
		d.Errors = valid.Errors{}
	}
	p.Dialog = d
	u.renderIMAP(w, r, status, p)
}

func (u *UI) imapDuplicateDialog(w http.ResponseWriter, r *http.Request) {
	c, err := u.store.GetIMAP(r.Context(), r.PathValue("name"))
	if err != nil {
		u.fail(w, r, err)
		return
	}
	u.imapDialogPage(w, r, http.StatusOK, "duplicate", c, nil, nil)
}

func (u *UI) imapDuplicate(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	orig, err := u.store.GetIMAP(ctx, r.PathValue("name"))
	if err != nil {
		u.fail(w, r, err)
		return
	}
	if !u.parseForm(w, r) {
		return
	}
	var in imapconf.DuplicateInput
	if s := r.PostForm.Get("password"); s != "" {
		in.Password = &s
	}
	if s := r.PostForm.Get("clientSecret"); s != "" {
		in.ClientSecret = &s
	}
	c, err := u.changes.DuplicateIMAP(ctx, userFrom(ctx), orig, in)
	var ve valid.Errors
	switch {
	case errors.As(err, &ve):
		u.imapDialogPage(w, r, http.StatusBadRequest, "duplicate", orig, ve, nil)
		return
	case errors.Is(err, store.ErrConflict):
		u.imapDialogPage(w, r, http.StatusConflict, "duplicate", orig, valid.Errors{"name": err.Error()}, nil)
		return
	case err != nil:
		u.serverError(w, r, err)
		return
	}
	u.setFlash(r, "ok", fmt.Sprintf("Duplicated %s as %s. The copy is disabled, so that it never competes with %s for the same mail; enable it when ready.", orig.Name, c.Name, orig.Name))
	redirect(w, r, "/imap#imap-"+c.Name)
}

func (u *UI) imapDeleteDialog(w http.ResponseWriter, r *http.Request) {
	c, err := u.store.GetIMAP(r.Context(), r.PathValue("name"))
	if err != nil {
		u.fail(w, r, err)
		return
	}
	u.imapDialogPage(w, r, http.StatusOK, "delete", c, nil, nil)
}

func (u *UI) imapDelete(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	name := r.PathValue("name")
	c, err := u.store.GetIMAP(ctx, name)
	if err == nil {
		err = u.changes.DeleteIMAP(ctx, userFrom(ctx), c.Name)
	}
	var inUse *store.InUseError
	switch {
	case errors.As(err, &inUse):
		flows := inUse.Flows
		if flows == nil {
			flows = []string{}
		}
		u.imapDialogPage(w, r, http.StatusConflict, "delete", c, nil, flows)
		return
	case err != nil:
		u.fail(w, r, err)
		return
	}
	u.setFlash(r, "ok", fmt.Sprintf("IMAP configuration %s deleted. Its messages and runs are kept.", c.Name))
	redirect(w, r, "/imap")
}

// imapEnabled is the enable/disable switch of a card.
func (u *UI) imapEnabled(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	c, err := u.store.GetIMAP(ctx, r.PathValue("name"))
	if err != nil {
		u.fail(w, r, err)
		return
	}
	if !u.parseForm(w, r) {
		return
	}
	want := r.PostForm.Get("enabled") == "true"
	if err := u.changes.SetIMAPEnabled(ctx, userFrom(ctx), c, want); err != nil {
		u.fail(w, r, err)
		return
	}
	verb := "disabled"
	if want {
		verb = "enabled"
	}
	u.setFlash(r, "ok", fmt.Sprintf("IMAP configuration %s %s.", c.Name, verb))
	redirect(w, r, localPath(r.PostForm.Get("back"), "/imap")+"#imap-"+c.Name)
}

// chart is a bar chart of messages per hour over the last 24 hours.
type chart struct {
	Bars  []bar
	Ticks []tick
	Total int
	Max   int
}

type bar struct {
	X, Y, H float64
	Count   int
	Label   string
}

type tick struct {
	X     float64
	Label string
}

// chartMessages bounds the messages read for the chart.
const chartMessages = 1000

func (u *UI) messagesChart(ctx context.Context, imapName string) (*chart, error) {
	times, err := u.store.ReceivedTimes(ctx, imapName, chartMessages)
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	end := now.Truncate(time.Hour).Add(time.Hour)
	start := end.Add(-24 * time.Hour)
	counts := make([]int, 24)
	for _, t := range times {
		t = t.UTC()
		if t.Before(start) || !t.Before(end) {
			continue
		}
		counts[int(t.Sub(start)/time.Hour)]++
	}
	ch := &chart{}
	for _, n := range counts {
		ch.Total += n
		ch.Max = max(ch.Max, n)
	}
	const width, height, gap = 480.0, 80.0, 4.0
	bw := width / 24
	for i, n := range counts {
		h := 0.0
		if ch.Max > 0 {
			h = height * float64(n) / float64(ch.Max)
		}
		if n > 0 && h < 2 {
			h = 2
		}
		from := start.Add(time.Duration(i) * time.Hour)
		ch.Bars = append(ch.Bars, bar{X: float64(i)*bw + gap/2, Y: height - h, H: h, Count: n,
			Label: fmt.Sprintf("%s–%s UTC: %d message%s", from.Format("15:04"), from.Add(time.Hour).Format("15:04"), n, plural(n))})
		if i%6 == 0 {
			ch.Ticks = append(ch.Ticks, tick{X: float64(i) * bw, Label: from.Format("15:04")})
		}
	}
	return ch, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		http.Error(w, `{"error":{"code":"internal"}}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	w.Write(append(data, '\n'))
}
