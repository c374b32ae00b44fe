// Package graphfake is an in-process stand-in for the Microsoft endpoints the
// Graph mail source talks to, for tests: the Microsoft identity platform's
// client-credentials token endpoint and the Graph v1.0 mail endpoints (mail
// folders, the messages delta query with paging, $value, PATCH, move and
// DELETE). It follows Microsoft's documented request and response shapes,
// including the error bodies, and can inject the faults a client must
// survive: throttling (429 with Retry-After), 503, an expired delta token
// (410 syncStateNotFound) and access tokens that expire mid-run (401
// InvalidAuthenticationToken).
//
// The one server answers both: the authority at URL/{tenant}/oauth2/v2.0/token
// and Graph at URL/v1.0/…. It is served over TLS with a certificate for
// 127.0.0.1; CACert is its PEM, for the configuration's caCert.
package graphfake

import (
	"bytes"
	"cmp"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Defaults of a new Server.
const (
	TenantID     = "11111111-2222-3333-4444-555555555555"
	ClientID     = "66666666-7777-8888-9999-000000000000"
	ClientSecret = "fake~Secret.Value_0123456789abcdefXYZ"
	// GraphScope is the only scope the token endpoint grants.
	GraphScope = "https://graph.microsoft.com/.default"
	// DefaultPageSize is how many items a delta page holds unless the
	// client asks for fewer with Prefer: odata.maxpagesize.
	DefaultPageSize = 10
)

// wellKnown are the well-known folder names of Graph, with display names.
var wellKnown = []struct{ name, display string }{
	{"inbox", "Inbox"},
	{"archive", "Archive"},
	{"deleteditems", "Deleted Items"},
	{"drafts", "Drafts"},
	{"junkemail", "Junk Email"},
	{"sentitems", "Sent Items"},
}

// Request is one request the server received.
type Request struct {
	Time   time.Time
	Method string
	// Path is the URL path, unescaped.
	Path  string
	Query url.Values
	// Status is the status code of the response.
	Status int
}

// Message is a message as a test sees it.
type Message struct {
	ID     string
	Folder string // the folder's display name
	Raw    []byte
	IsRead bool
}

// Fault is an error response injected for the next request that matches.
type Fault struct {
	// Method and PathContains select the request; empty matches any.
	Method       string
	PathContains string
	// Status is the response's status code; RetryAfter, when not empty,
	// its Retry-After header; Code and Message its Graph error.
	Status     int
	RetryAfter string
	Code       string
	Message    string
	// Body, when set, is sent as a JSON answer instead of the Graph
	// error, with Status (200 if zero): an answer the client must not
	// take whole, such as one too large.
	Body []byte
}

// Server is the fake. Its fields are read-only once started; use its methods
// to change the state.
type Server struct {
	*httptest.Server
	// CACert is the PEM of the server's certificate.
	CACert string

	mu           sync.Mutex
	tenant       string
	clientID     string
	clientSecret string
	tokenTTL     time.Duration // advertised and enforced lifetime
	tokens       map[string]time.Time
	tokenSeq     int
	pageSize     int
	noLength     bool // $value without Content-Length
	users        map[string]*mailbox
	idSeq        int
	changeSeq    int
	deltaGen     int // delta tokens of older generations are expired
	faults       []Fault
	log          []Request
	// delegated checks the tokens it did not issue (SetTokenValidator).
	delegated func(token string) (user string, ok bool)
}

type mailbox struct {
	address string
	folders []*folder
	msgs    map[string]*message // by id
	// tombs are removals, for the delta of the folder they left.
	tombs []tomb
}

type folder struct {
	id, display, wellKnown string
}

type message struct {
	id       string
	folderID string
	raw      []byte
	isRead   bool
	received time.Time
	changed  int // changeSeq of the last change
}

type tomb struct {
	id, folderID string
	seq          int
}

// New starts a fake with the default tenant, client id and secret and no
// mailbox. It is closed when the test ends.
func New(t interface {
	Helper()
	Cleanup(func())
}) *Server {
	t.Helper()
	s := &Server{
		tenant:       TenantID,
		clientID:     ClientID,
		clientSecret: ClientSecret,
		tokenTTL:     time.Hour,
		tokens:       map[string]time.Time{},
		pageSize:     DefaultPageSize,
		users:        map[string]*mailbox{},
		deltaGen:     1,
	}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	s.CACert = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw}))
	t.Cleanup(s.Close)
	return s
}

// AddUser creates the mailbox of address with the well-known folders plus
// the extra top-level folders named.
func (s *Server) AddUser(address string, folders ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	mb := &mailbox{address: address, msgs: map[string]*message{}}
	for _, w := range wellKnown {
		mb.folders = append(mb.folders, &folder{id: s.newID("FOLDER"), display: w.display, wellKnown: w.name})
	}
	for _, f := range folders {
		mb.folders = append(mb.folders, &folder{id: s.newID("FOLDER"), display: f})
	}
	s.users[strings.ToLower(address)] = mb
}

// AddMessage delivers raw to the Inbox of user and returns its id.
func (s *Server) AddMessage(user string, raw []byte) string {
	return s.AddMessageTo(user, "inbox", raw)
}

// AddMessageTo delivers raw to the folder of user named by well-known name,
// display name or id, and returns its id. It panics on an unknown user or
// folder: that is a mistake in the test.
func (s *Server) AddMessageTo(user, folderName string, raw []byte) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	mb := s.users[strings.ToLower(user)]
	if mb == nil {
		panic("graphfake: no user " + user)
	}
	f := mb.folder(folderName)
	if f == nil {
		panic("graphfake: no folder " + folderName)
	}
	s.changeSeq++
	m := &message{id: s.newID("MSG"), folderID: f.id, raw: bytes.Clone(raw), received: time.Now().UTC(), changed: s.changeSeq}
	mb.msgs[m.id] = m
	return m.id
}

// Messages returns the messages in the folder of user (well-known name,
// display name or id), oldest first.
func (s *Server) Messages(user, folderName string) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	mb := s.users[strings.ToLower(user)]
	if mb == nil {
		return nil
	}
	f := mb.folder(folderName)
	if f == nil {
		return nil
	}
	var out []Message
	for _, m := range mb.sorted(f.id) {
		out = append(out, Message{ID: m.id, Folder: f.display, Raw: bytes.Clone(m.raw), IsRead: m.isRead})
	}
	return out
}

// SetClientSecret sets the secret the token endpoint accepts.
func (s *Server) SetClientSecret(secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clientSecret = secret
}

// SetPageSize sets the default page size of delta responses.
func (s *Server) SetPageSize(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pageSize = n
}

// OmitContentLength makes $value answer without a Content-Length (chunked),
// as a server that does not know the size up front.
func (s *Server) OmitContentLength(omit bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.noLength = omit
}

// SetTokenLifetime sets the lifetime of the tokens issued from now on.
func (s *Server) SetTokenLifetime(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokenTTL = d
}

// ExpireTokens makes every access token issued so far expired, as if its
// lifetime had passed: Graph answers 401 InvalidAuthenticationToken.
func (s *Server) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.tokens {
		s.tokens[k] = time.Time{}
	}
}

// TokensIssued returns how many access tokens were issued.
func (s *Server) TokensIssued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokenSeq
}

// ExpireDeltaTokens makes every delta and skip token handed out so far
// expired: using one gets 410 Gone, syncStateNotFound.
func (s *Server) ExpireDeltaTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deltaGen++
}

// Inject queues f: the next request that matches gets its response instead
// of the real one. Faults are used once each, in order.
func (s *Server) Inject(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, f)
}

// Requests returns the request log.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.log)
}

// SetTokenValidator makes Graph accept, besides the app-only tokens of its
// own token endpoint, the delegated tokens valid answers for: ok is
// false for a token that is unknown, expired or revoked, else user is the
// user who signed in. A delegated token reads /me (that user's mailbox)
// and /users/{user} of that user only, as Graph's delegated
// Mail.ReadWrite does. The tests pass an authorization server's check
// (oauthfake). valid is called with the server's lock held.
func (s *Server) SetTokenValidator(valid func(token string) (user string, ok bool)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delegated = valid
}

// TokenURL returns the token endpoint of the default tenant.
func (s *Server) TokenURL() string { return s.URL + "/" + s.tenant + "/oauth2/v2.0/token" }

func (s *Server) newID(prefix string) string {
	s.idSeq++
	return fmt.Sprintf("AAMk%s%06d=", prefix, s.idSeq)
}

func (mb *mailbox) folder(name string) *folder {
	for _, f := range mb.folders {
		if f.id == name || strings.EqualFold(f.wellKnown, name) {
			return f
		}
	}
	for _, f := range mb.folders {
		if strings.EqualFold(f.display, name) {
			return f
		}
	}
	return nil
}

func (mb *mailbox) sorted(folderID string) []*message {
	var out []*message
	for _, m := range mb.msgs {
		if folderID == "" || m.folderID == folderID {
			out = append(out, m)
		}
	}
	slices.SortFunc(out, func(a, b *message) int { return strings.Compare(a.id, b.id) })
	return out
}

// --- HTTP ---

type recorder struct {
	http.ResponseWriter
	status int
}

func (r *recorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	rec := &recorder{ResponseWriter: w, status: http.StatusOK}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handle(rec, r)
	s.log = append(s.log, Request{Time: time.Now(), Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(), Status: rec.status})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// graphError writes Graph's error body.
func graphError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]any{
		"code":       code,
		"message":    msg,
		"innerError": map[string]any{"date": time.Now().UTC().Format(time.RFC3339), "request-id": "00000000-fake-0000-0000-000000000000"},
	}})
}

// tokenError writes the identity platform's error body.
func tokenError(w http.ResponseWriter, status int, code string, aadsts int, desc string) {
	writeJSON(w, status, map[string]any{
		"error":             code,
		"error_description": fmt.Sprintf("AADSTS%d: %s Trace ID: 0000 Correlation ID: 0000 Timestamp: %s", aadsts, desc, time.Now().UTC().Format("2006-01-02 15:04:05Z")),
		"error_codes":       []int{aadsts},
		"timestamp":         time.Now().UTC().Format("2006-01-02 15:04:05Z"),
		"trace_id":          "00000000-0000-0000-0000-000000000000",
		"correlation_id":    "00000000-0000-0000-0000-000000000000",
	})
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	for i, f := range s.faults {
		if (f.Method == "" || f.Method == r.Method) && strings.Contains(path, f.PathContains) {
			s.faults = slices.Delete(s.faults, i, i+1)
			if f.RetryAfter != "" {
				w.Header().Set("Retry-After", f.RetryAfter)
			}
			if f.Body != nil {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(cmp.Or(f.Status, http.StatusOK))
				_, _ = w.Write(f.Body)
				return
			}
			code, msg := f.Code, f.Message
			if code == "" {
				code, msg = http.StatusText(f.Status), "injected fault"
			}
			graphError(w, f.Status, code, msg)
			return
		}
	}
	if strings.HasSuffix(path, "/oauth2/v2.0/token") {
		s.token(w, r, strings.TrimSuffix(strings.TrimPrefix(path, "/"), "/oauth2/v2.0/token"))
		return
	}
	rest, ok := strings.CutPrefix(path, "/v1.0/users/")
	me := false
	if !ok {
		rest, me = strings.CutPrefix(path, "/v1.0/me/")
	}
	if !ok && !me {
		graphError(w, http.StatusBadRequest, "BadRequest", "Invalid version or resource: "+path)
		return
	}
	auth, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || auth == "" {
		graphError(w, http.StatusUnauthorized, "InvalidAuthenticationToken", "Access token is empty.")
		return
	}
	signedIn := "" // the user of a delegated token
	exp, ok := s.tokens[auth]
	if !ok && s.delegated != nil {
		if signedIn, ok = s.delegated(auth); !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="", error="invalid_token", error_description="Lifetime validation failed, the token is expired."`)
			graphError(w, http.StatusUnauthorized, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.")
			return
		}
		exp = time.Now().Add(time.Hour) // the validator checked it
	}
	if !ok {
		graphError(w, http.StatusUnauthorized, "InvalidAuthenticationToken", "IDX14100: JWT is not well formed.")
		return
	}
	if time.Now().After(exp) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="", error="invalid_token", error_description="Lifetime validation failed, the token is expired."`)
		graphError(w, http.StatusUnauthorized, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.")
		return
	}
	var user string
	if me {
		if signedIn == "" {
			graphError(w, http.StatusBadRequest, "BadRequest", "/me request is only valid with delegated authentication flow.")
			return
		}
		user = signedIn
	} else {
		user, rest, _ = strings.Cut(rest, "/")
		if signedIn != "" && !strings.EqualFold(user, signedIn) {
			graphError(w, http.StatusForbidden, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
			return
		}
	}
	mb := s.users[strings.ToLower(user)]
	if mb == nil {
		graphError(w, http.StatusNotFound, "ErrorInvalidUser", fmt.Sprintf("The requested user '%s' is invalid.", user))
		return
	}
	parts := strings.Split(rest, "/")
	switch {
	case r.Method == http.MethodGet && len(parts) == 1 && parts[0] == "mailFolders":
		s.listFolders(w, r, mb)
	case r.Method == http.MethodGet && len(parts) == 2 && parts[0] == "mailFolders":
		f := mb.folderByRef(parts[1])
		if f == nil {
			graphError(w, http.StatusNotFound, "ErrorItemNotFound", "The specified object was not found in the store.")
			return
		}
		writeJSON(w, http.StatusOK, mb.folderJSON(f))
	case r.Method == http.MethodGet && len(parts) == 4 && parts[0] == "mailFolders" && parts[2] == "messages" && parts[3] == "delta":
		f := mb.folderByRef(parts[1])
		if f == nil {
			graphError(w, http.StatusNotFound, "ErrorItemNotFound", "The specified object was not found in the store.")
			return
		}
		s.delta(w, r, mb, f)
	case len(parts) >= 2 && parts[0] == "messages":
		m := mb.msgs[parts[1]]
		if m == nil {
			graphError(w, http.StatusNotFound, "ErrorItemNotFound", "The specified object was not found in the store.")
			return
		}
		s.message(w, r, mb, m, parts[2:])
	default:
		graphError(w, http.StatusBadRequest, "BadRequest", "Resource not found for the segment '"+rest+"'.")
	}
}

func (s *Server) token(w http.ResponseWriter, r *http.Request, tenant string) {
	if r.Method != http.MethodPost {
		tokenError(w, http.StatusMethodNotAllowed, "invalid_request", 900561, "The endpoint only accepts POST requests.")
		return
	}
	if err := r.ParseForm(); err != nil {
		tokenError(w, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'grant_type'.")
		return
	}
	id, secret := r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	if u, p, ok := r.BasicAuth(); ok {
		id, _ = url.QueryUnescape(u)
		secret, _ = url.QueryUnescape(p)
	}
	switch {
	case !strings.EqualFold(tenant, s.tenant):
		tokenError(w, http.StatusBadRequest, "invalid_request", 90002, fmt.Sprintf("Tenant '%s' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.", tenant))
	case r.PostForm.Get("grant_type") != "client_credentials":
		tokenError(w, http.StatusBadRequest, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
	case id != s.clientID:
		tokenError(w, http.StatusBadRequest, "unauthorized_client", 700016, fmt.Sprintf("Application with identifier '%s' was not found in the directory '%s'.", id, s.tenant))
	case secret != s.clientSecret:
		tokenError(w, http.StatusUnauthorized, "invalid_client", 7000215, "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '"+s.clientID+"'.")
	case r.PostForm.Get("scope") != GraphScope:
		tokenError(w, http.StatusBadRequest, "invalid_scope", 1002012, "The provided value for scope "+r.PostForm.Get("scope")+" is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).")
	default:
		s.tokenSeq++
		tok := fmt.Sprintf("eyJ0eXAiOiJKV1QifQ.fake-token-%d.sig", s.tokenSeq)
		s.tokens[tok] = time.Now().Add(s.tokenTTL)
		writeJSON(w, http.StatusOK, map[string]any{
			"token_type":     "Bearer",
			"expires_in":     int(s.tokenTTL / time.Second),
			"ext_expires_in": int(s.tokenTTL / time.Second),
			"access_token":   tok,
		})
	}
}

// folderByRef finds a folder by id or well-known name, as Graph's URLs do.
func (mb *mailbox) folderByRef(ref string) *folder {
	for _, f := range mb.folders {
		if f.id == ref || strings.EqualFold(f.wellKnown, ref) {
			return f
		}
	}
	return nil
}

func (mb *mailbox) folderJSON(f *folder) map[string]any {
	unread := 0
	msgs := mb.sorted(f.id)
	for _, m := range msgs {
		if !m.isRead {
			unread++
		}
	}
	return map[string]any{
		"id": f.id, "displayName": f.display, "parentFolderId": "AAMkROOT=",
		"childFolderCount": 0, "totalItemCount": len(msgs), "unreadItemCount": unread,
	}
}

// listFolders answers GET mailFolders, with $filter=displayName eq '…' the
// only filter understood.
func (s *Server) listFolders(w http.ResponseWriter, r *http.Request, mb *mailbox) {
	filter := r.URL.Query().Get("$filter")
	want, hasFilter := "", filter != ""
	if hasFilter {
		v, ok := strings.CutPrefix(filter, "displayName eq '")
		if !ok || !strings.HasSuffix(v, "'") {
			graphError(w, http.StatusBadRequest, "ErrorInvalidUrlQueryFilter", "The query filter contains one or more invalid nodes.")
			return
		}
		want = strings.ReplaceAll(strings.TrimSuffix(v, "'"), "''", "'")
	}
	var vals []any
	for _, f := range mb.folders {
		if hasFilter && f.display != want {
			continue
		}
		vals = append(vals, mb.folderJSON(f))
	}
	writeJSON(w, http.StatusOK, map[string]any{"value": vals})
}

// delta answers the messages delta query. State lives in the tokens:
// a skip token is "gen.since.upto.offset", a delta token "gen.upto"; the
// items of a round are the changes with since < seq <= upto.
func (s *Server) delta(w http.ResponseWriter, r *http.Request, mb *mailbox, f *folder) {
	q := r.URL.Query()
	since, upto, offset := 0, s.changeSeq, 0
	parse := func(tok string, n int) ([]int, bool) {
		fs := strings.Split(tok, ".")
		if len(fs) != n {
			return nil, false
		}
		out := make([]int, n)
		for i, x := range fs {
			v, err := strconv.Atoi(x)
			if err != nil {
				return nil, false
			}
			out[i] = v
		}
		return out, true
	}
	switch {
	case q.Has("$skiptoken"):
		v, ok := parse(q.Get("$skiptoken"), 4)
		if !ok {
			graphError(w, http.StatusBadRequest, "BadRequest", "The skip token is malformed.")
			return
		}
		if v[0] != s.deltaGen {
			graphError(w, http.StatusGone, "syncStateNotFound", "The sync state generation is not found or expired.")
			return
		}
		since, upto, offset = v[1], v[2], v[3]
	case q.Has("$deltatoken"):
		v, ok := parse(q.Get("$deltatoken"), 2)
		if !ok {
			graphError(w, http.StatusBadRequest, "BadRequest", "The delta token is malformed.")
			return
		}
		if v[0] != s.deltaGen {
			graphError(w, http.StatusGone, "syncStateNotFound", "The sync state generation is not found or expired.")
			return
		}
		since = v[1]
	}
	type item struct {
		seq int
		v   map[string]any
	}
	var items []item
	for _, m := range mb.sorted(f.id) {
		if m.changed > since && m.changed <= upto {
			items = append(items, item{m.changed, messageJSON(m, q.Get("$select"))})
		}
	}
	if since > 0 {
		for _, t := range mb.tombs {
			if t.folderID == f.id && t.seq > since && t.seq <= upto {
				items = append(items, item{t.seq, map[string]any{"id": t.id, "@removed": map[string]any{"reason": "deleted"}}})
			}
		}
	}
	slices.SortStableFunc(items, func(a, b item) int { return a.seq - b.seq })
	size := s.pageSize
	for p := range strings.SplitSeq(r.Header.Get("Prefer"), ",") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(p), "odata.maxpagesize="); ok {
			if n, err := strconv.Atoi(v); err == nil && n > 0 && n < size {
				size = n
			}
		}
	}
	offset = min(offset, len(items))
	end := min(offset+size, len(items))
	vals := make([]any, 0, end-offset)
	for _, it := range items[offset:end] {
		vals = append(vals, it.v)
	}
	base := s.URL + "/v1.0/users/" + url.PathEscape(mb.address) + "/mailFolders/" + url.PathEscape(f.id) + "/messages/delta"
	out := map[string]any{"@odata.context": s.URL + "/v1.0/$metadata#Collection(message)", "value": vals}
	keep := url.Values{}
	if sel := q.Get("$select"); sel != "" {
		keep.Set("$select", sel)
	}
	if end < len(items) {
		keep.Set("$skiptoken", fmt.Sprintf("%d.%d.%d.%d", s.deltaGen, since, upto, end))
		out["@odata.nextLink"] = base + "?" + keep.Encode()
	} else {
		keep.Set("$deltatoken", fmt.Sprintf("%d.%d", s.deltaGen, upto))
		out["@odata.deltaLink"] = base + "?" + keep.Encode()
	}
	writeJSON(w, http.StatusOK, out)
}

func messageJSON(m *message, sel string) map[string]any {
	subject := ""
	if msg, err := mail.ReadMessage(bytes.NewReader(m.raw)); err == nil {
		subject = msg.Header.Get("Subject")
	}
	all := map[string]any{
		"@odata.type":      "#microsoft.graph.message",
		"@odata.etag":      fmt.Sprintf(`W/"CQAAAB%d"`, m.changed),
		"id":               m.id,
		"isRead":           m.isRead,
		"subject":          subject,
		"receivedDateTime": m.received.Format(time.RFC3339),
		"parentFolderId":   m.folderID,
	}
	if sel == "" {
		return all
	}
	out := map[string]any{"@odata.type": all["@odata.type"], "@odata.etag": all["@odata.etag"], "id": m.id}
	for f := range strings.SplitSeq(sel, ",") {
		if v, ok := all[strings.TrimSpace(f)]; ok {
			out[strings.TrimSpace(f)] = v
		}
	}
	return out
}

func (s *Server) message(w http.ResponseWriter, r *http.Request, mb *mailbox, m *message, rest []string) {
	remove := func() {
		delete(mb.msgs, m.id)
		s.changeSeq++
		mb.tombs = append(mb.tombs, tomb{id: m.id, folderID: m.folderID, seq: s.changeSeq})
	}
	switch {
	case r.Method == http.MethodGet && len(rest) == 1 && rest[0] == "$value":
		w.Header().Set("Content-Type", "text/plain")
		if !s.noLength {
			w.Header().Set("Content-Length", strconv.Itoa(len(m.raw)))
		}
		_, _ = w.Write(m.raw)
	case r.Method == http.MethodGet && len(rest) == 0:
		writeJSON(w, http.StatusOK, messageJSON(m, r.URL.Query().Get("$select")))
	case r.Method == http.MethodPatch && len(rest) == 0:
		var body struct {
			IsRead *bool `json:"isRead"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&body); err != nil {
			graphError(w, http.StatusBadRequest, "RequestBodyRead", "Cannot read the request body.")
			return
		}
		if body.IsRead != nil && *body.IsRead != m.isRead {
			m.isRead = *body.IsRead
			s.changeSeq++
			m.changed = s.changeSeq
		}
		writeJSON(w, http.StatusOK, messageJSON(m, ""))
	case r.Method == http.MethodPost && len(rest) == 1 && rest[0] == "move":
		var body struct {
			DestinationID string `json:"destinationId"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&body); err != nil || body.DestinationID == "" {
			graphError(w, http.StatusBadRequest, "ErrorInvalidIdMalformed", "Id is malformed.")
			return
		}
		dest := mb.folderByRef(body.DestinationID)
		if dest == nil {
			graphError(w, http.StatusNotFound, "ErrorItemNotFound", "The specified object was not found in the store.")
			return
		}
		// A move gives the message a new id in its new folder.
		remove()
		s.changeSeq++
		n := &message{id: s.newID("MSG"), folderID: dest.id, raw: m.raw, isRead: m.isRead, received: m.received, changed: s.changeSeq}
		mb.msgs[n.id] = n
		writeJSON(w, http.StatusCreated, messageJSON(n, ""))
	case r.Method == http.MethodDelete && len(rest) == 0:
		// Graph's DELETE moves the message to Deleted Items.
		remove()
		if del := mb.folderByRef("deleteditems"); del != nil && del.id != m.folderID {
			s.changeSeq++
			n := &message{id: s.newID("MSG"), folderID: del.id, raw: m.raw, isRead: m.isRead, received: m.received, changed: s.changeSeq}
			mb.msgs[n.id] = n
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		graphError(w, http.StatusMethodNotAllowed, "ErrorInvalidRequest", "The OData request is not supported.")
	}
}
