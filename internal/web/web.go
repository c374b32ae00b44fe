// Package web is the browser UI: Management > Configuration Management >
// IMAP, process flows, runs, messages and settings, rendered on the server
// with html/template from embedded templates and static files, with a little
// vanilla JavaScript and no build step.
//
// Every page needs a login (sessions kept in the database by scs). Every
// state change is a POST behind http.CrossOriginProtection; GET never changes
// anything. Handlers decode forms into the same inputs the REST API decodes
// JSON into and make every change through the same control plane
// (internal/control), so the UI enforces exactly the API's rules and a change
// is stored, logged and announced the same way from both. The handlers of a
// page family live in their own file (imap_list.go, imap_edit.go,
// imap_actions.go, flow_edit.go …). No page ever contains a stored secret.
package web

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/alexedwards/scs/v2"

	"mailtrigger/internal/auth"
	"mailtrigger/internal/clientip"
	"mailtrigger/internal/control"
	"mailtrigger/internal/store"
	"mailtrigger/internal/valid"
)

//go:embed templates
var templateFS embed.FS

// Deps are what the UI needs.
type Deps struct {
	Store  *store.Store
	Logger *slog.Logger
	// Runtime is the running service: it is told of changes and asked for
	// the watchers' status, connection tests (the Test connection button;
	// the result is sent as JSON, in the API's form) and the replicas (the
	// settings page). nil: control.Offline.
	Runtime control.Runtime
	// Version is shown in the footer.
	Version string
	// SessionLifetime is how long a login lasts; default 12 hours.
	SessionLifetime time.Duration
	// LoginLimit and LoginWindow bound failed logins per client address and
	// user name (default 10 per 15 minutes) and per client address (5 times
	// as many).
	LoginLimit  int
	LoginWindow time.Duration
	// Proxies says which peers are reverse proxies whose X-Forwarded-For
	// names the client (MAILTRIGGER_TRUSTED_PROXIES); the zero value trusts
	// none.
	Proxies clientip.Resolver
	// CheckPassword checks a password against its hash; nil means
	// auth.CheckPassword. Tests count the checks through it.
	CheckPassword func(hash, password string) bool
	// BaseURL is the service's public URL (MAILTRIGGER_BASE_URL): the
	// sign-in callback URL is under it; "" takes the request's origin.
	BaseURL string
	// HTTPClient exchanges a sign-in's code at the provider's token
	// endpoint (the service's egress policy); nil: http.DefaultClient.
	HTTPClient *http.Client
}

// UI serves the web UI.
type UI struct {
	store   *store.Store
	log     *slog.Logger
	rt      control.Runtime
	changes *control.Changes
	version string

	pages  map[string]*template.Template
	static *staticFiles
	sm     *scs.SessionManager
	cop    *http.CrossOriginProtection
	limit  *limiter
	// proxies finds the client's address behind trusted reverse proxies.
	proxies       clientip.Resolver
	checkPassword func(hash, password string) bool
	// checks bounds the argon2id password checks running at once (64 MiB each).
	checks chan struct{}
	// baseURL and hc: see Deps.
	baseURL string
	hc      *http.Client
}

// New parses every template and hashes every static file; an error in any
// of them fails here, at start, rather than on the page that uses it.
func New(d Deps) (*UI, error) {
	if d.Store == nil {
		return nil, errors.New("web: no store")
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Runtime == nil {
		d.Runtime = control.Offline{}
	}
	if d.SessionLifetime == 0 {
		d.SessionLifetime = 12 * time.Hour
	}
	if d.LoginLimit == 0 {
		d.LoginLimit = 10
	}
	if d.LoginWindow == 0 {
		d.LoginWindow = 15 * time.Minute
	}
	if d.CheckPassword == nil {
		d.CheckPassword = auth.CheckPassword
	}
	u := &UI{store: d.Store, log: d.Logger, rt: d.Runtime, changes: control.New(d.Store, d.Logger, d.Runtime),
		version: d.Version, limit: newLimiter(d.LoginLimit, d.LoginWindow, time.Now), checks: make(chan struct{}, 2),
		proxies: d.Proxies, checkPassword: d.CheckPassword, baseURL: d.BaseURL, hc: d.HTTPClient}
	var err error
	if u.static, err = loadStatic(); err != nil {
		return nil, err
	}
	if u.pages, err = u.parseTemplates(); err != nil {
		return nil, err
	}
	u.sm = newSessionManager(d.Store, d.SessionLifetime)
	u.cop = http.NewCrossOriginProtection()
	u.cop.SetDenyHandler(http.HandlerFunc(u.crossOriginDenied))
	return u, nil
}

// Routes registers every UI route on mux. API, probe and metrics routes are
// more specific and keep precedence over the UI's catch-all.
func (u *UI) Routes(mux *http.ServeMux) {
	mux.Handle("GET /static/{file}", u.static)

	open := func(pattern string, h http.HandlerFunc) { mux.Handle(pattern, u.chain(h, false)) }
	auth := func(pattern string, h http.HandlerFunc) { mux.Handle(pattern, u.chain(h, true)) }

	open("GET /login", u.loginPage)
	open("POST /login", u.login)
	auth("POST /logout", u.logout)
	auth("GET /{$}", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/imap", http.StatusSeeOther) })

	auth("GET /imap", u.imapList)
	auth("GET /imap/status", u.imapStatus)
	auth("GET /imap/new", u.imapNew)
	auth("POST /imap", u.imapCreate)
	auth("POST /imap/test", u.imapTest)
	auth("GET /imap/{name}", u.imapEdit)
	auth("POST /imap/{name}", u.imapSave)
	auth("GET /imap/{name}/duplicate", u.imapDuplicateDialog)
	auth("POST /imap/{name}/duplicate", u.imapDuplicate)
	auth("GET /imap/{name}/delete", u.imapDeleteDialog)
	auth("POST /imap/{name}/delete", u.imapDelete)
	auth("POST /imap/{name}/enabled", u.imapEnabled)
	auth("POST /imap/{name}/signin", u.imapSignIn)
	auth("GET "+control.CallbackPath, u.oauthCallback)

	auth("GET /flows", u.flowList)
	auth("GET /flows/new", u.flowNew)
	auth("GET /flows/match", u.flowMatch)
	auth("POST /flows", u.flowCreate)
	auth("GET /flows/{name}", u.flowEdit)
	auth("POST /flows/{name}", u.flowSave)
	auth("GET /flows/{name}/delete", u.flowDeleteDialog)
	auth("POST /flows/{name}/delete", u.flowDelete)

	auth("GET /runs", u.runList)
	auth("GET /runs/{id}", u.runDetail)
	auth("POST /runs/{id}/retry", u.runRetry)

	auth("GET /messages", u.messageList)
	auth("GET /messages/{id}", u.messageDetail)
	auth("GET /messages/{id}/raw", u.messageRaw)
	auth("GET /messages/{id}/attachments/{n}", u.messageAttachment)
	auth("POST /messages/{id}/trigger", u.messageTrigger)

	auth("GET /settings", u.settings)
	auth("POST /settings/tokens", u.tokenCreate)
	auth("GET /settings/tokens/{name}/revoke", u.tokenRevokeDialog)
	auth("POST /settings/tokens/{name}/revoke", u.tokenRevoke)
	auth("POST /settings/password", u.passwordChange)
	auth("GET /settings/alerts", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/settings#alerts", http.StatusSeeOther)
	})
	auth("GET /settings/alerts/new", u.alertNew)
	auth("POST /settings/alerts", u.alertCreate)
	auth("GET /settings/alerts/{name}", u.alertEdit)
	auth("POST /settings/alerts/{name}", u.alertSave)
	auth("GET /settings/alerts/{name}/delete", u.alertDeleteDialog)
	auth("POST /settings/alerts/{name}/delete", u.alertDelete)
	auth("POST /settings/alerts/{name}/test", u.alertTest)

	auth("/", func(w http.ResponseWriter, r *http.Request) { u.notFound(w, r) })
}

// chain wraps a handler in what every UI route gets: security headers,
// cross-origin protection of state changes, the session and, when
// needUser, a logged-in user.
func (u *UI) chain(h http.HandlerFunc, needUser bool) http.Handler {
	var next http.Handler = h
	if needUser {
		next = u.requireUser(next)
	}
	return securityHeaders(u.cop.Handler(u.sessions(u.refuseControls(next))))
}

// refuseControls answers a path with a control character or invalid UTF-8
// with 404 and such a query parameter with 400 naming it, before a handler
// passes them to the database (PostgreSQL refuses NUL and invalid UTF-8).
func (u *UI) refuseControls(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if valid.Line(r.URL.Path) != "" {
			u.errorPage(w, r, http.StatusNotFound, "Not found", "There is nothing at this address: it has a control character.")
			return
		}
		if e := valid.Query(r.URL.Query()); len(e) > 0 {
			for _, k := range slices.Sorted(maps.Keys(e)) {
				u.errorPage(w, r, http.StatusBadRequest, "Bad request", fmt.Sprintf("The query parameter %s %s.", k, e[k]))
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
			"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; frame-src 'self'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

// crumb is a step of the breadcrumb; the section's own is a link.
type crumb struct{ Text, Href string }

// The breadcrumbs: the sidebar's path to each section, the same on the
// section's list and on its detail pages.
var (
	flowCrumbs     = []crumb{{Text: "Automation"}, {Text: "Process Flows", Href: "/flows"}}
	runCrumbs      = []crumb{{Text: "Automation"}, {Text: "Runs", Href: "/runs"}}
	messageCrumbs  = []crumb{{Text: "Automation"}, {Text: "Messages", Href: "/messages"}}
	settingsCrumbs = []crumb{{Text: "Administration"}, {Text: "Settings", Href: "/settings"}}
)

// page is what every template gets.
type page struct {
	Title   string
	Nav     string  // the active navigation entry
	Crumbs  []crumb // the breadcrumb before the title: the navigation's path to the section
	User    string
	Flash   *flash
	Version string
	Data    any
	// Banner lists the mailboxes whose alert condition is failing: shown
	// on every page while there are any.
	Banner []bannerItem
	// Canonical is the address of a page answering a POST: the page's
	// script puts it in the address bar (history.replaceState), so that a
	// reload gets the page instead of sending the form again.
	Canonical string
}

// canonical returns the address that shows page name as answered to the
// POST r, or "" when a reload may send it again.
func canonical(r *http.Request, name string) string {
	if r.Method != http.MethodPost {
		return ""
	}
	switch p := r.URL.Path; {
	case name == "login":
		// PostForm, not PostFormValue: the login handler read the form
		// (bounded, never multipart) or refused it.
		if next := r.PostForm.Get("next"); next != "" {
			return "/login?next=" + url.QueryEscape(next)
		}
		return "/login"
	case name == "settings":
		return "/settings"
	case name == "imap" && p == "/imap":
		return "/imap/new"
	case name == "flow" && p == "/flows":
		return "/flows/new"
	case name == "imap" || name == "flow":
		return p
	}
	return ""
}

func (u *UI) parseTemplates() (map[string]*template.Template, error) {
	base, err := template.New("layout.html").Funcs(u.funcs()).ParseFS(templateFS, "templates/layout.html", "templates/partials.html")
	if err != nil {
		return nil, fmt.Errorf("web: parsing layout: %w", err)
	}
	files, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, f := range files {
		name := path.Base(f)
		if name == "layout.html" || name == "partials.html" {
			continue
		}
		t, err := template.Must(base.Clone()).ParseFS(templateFS, f)
		if err != nil {
			return nil, fmt.Errorf("web: parsing %s: %w", name, err)
		}
		if t.Lookup("content") == nil {
			return nil, fmt.Errorf("web: %s defines no content", name)
		}
		pages[strings.TrimSuffix(name, ".html")] = t
	}
	for _, want := range []string{"login", "imap", "flows", "flow", "runs", "run", "messages", "message", "settings", "error", "signin", "alert"} {
		if pages[want] == nil {
			return nil, fmt.Errorf("web: template %s.html is missing", want)
		}
	}
	return pages, nil
}

// render executes page name into a buffer and writes it with status, so
// that a template error never leaves half a page.
func (u *UI) render(w http.ResponseWriter, r *http.Request, status int, name string, p page) {
	t, ok := u.pages[name]
	if !ok {
		u.serverError(w, r, fmt.Errorf("no template %q", name))
		return
	}
	p.User = userFrom(r.Context())
	p.Version = u.version
	if p.Canonical == "" {
		p.Canonical = canonical(r, name)
	}
	if p.Flash == nil {
		p.Flash = u.popFlash(r)
	}
	if p.User != "" {
		p.Banner = u.banner(r.Context())
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout.html", p); err != nil {
		u.log.Error("rendering page", "page", name, "path", r.URL.Path, "err", err)
		if name != "error" {
			u.serverError(w, r, err)
			return
		}
		http.Error(w, "internal error; see the server log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

type errorPage struct {
	Status  int
	Heading string
	Message string
	Back    string
}

func (u *UI) errorPage(w http.ResponseWriter, r *http.Request, status int, heading, msg string) {
	back := "/imap"
	if userFrom(r.Context()) == "" {
		back = "/login"
	}
	u.render(w, r, status, "error", page{Title: heading, Data: errorPage{Status: status, Heading: heading, Message: msg, Back: back}})
}

func (u *UI) notFound(w http.ResponseWriter, r *http.Request) {
	u.errorPage(w, r, http.StatusNotFound, "Not found", "There is nothing at "+r.URL.Path+".")
}

func (u *UI) serverError(w http.ResponseWriter, r *http.Request, err error) {
	u.log.Error("web request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	u.errorPage(w, r, http.StatusInternalServerError, "Something went wrong", "The request failed; the server log says why.")
}

// fail answers err: not found as 404, anything else as 500.
func (u *UI) fail(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, store.ErrNotFound) {
		u.notFound(w, r)
		return
	}
	u.serverError(w, r, err)
}

func (u *UI) crossOriginDenied(w http.ResponseWriter, r *http.Request) {
	u.log.Warn("cross-origin request refused", "method", r.Method, "path", r.URL.Path, "origin", r.Header.Get("Origin"),
		"sec_fetch_site", r.Header.Get("Sec-Fetch-Site"), "remote", r.RemoteAddr)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusForbidden)
	w.Write([]byte("Forbidden: cross-origin request refused. Changes can be made only from mailtrigger's own pages.\n"))
}

// redirect answers a POST with 303 See Other to a local path.
func redirect(w http.ResponseWriter, r *http.Request, to string) {
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// localPath returns p when it is a path on this site, else def.
func localPath(p, def string) string {
	if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || strings.ContainsAny(p, "\\\r\n") {
		return def
	}
	if u, err := url.Parse(p); err != nil || u.Host != "" || u.Scheme != "" {
		return def
	}
	return p
}

// pathEscape escapes a name for a URL path segment.
func pathEscape(s string) string { return url.PathEscape(s) }
