// Package graphsource is the Microsoft Graph client half of the mail watcher
// for configurations of type "msgraph": it gets an app-only token with the
// OAuth2 client-credentials grant from {authorityUrl}/{tenantId}/oauth2/v2.0/token
// (or, for auth oauth2-delegated, takes the signed-in user's tokens from
// Options.Bearer and reads /me), reads a mail folder with the messages delta query (the deltaLink is the
// checkpoint), fetches each message's raw MIME from $value with a size cap,
// and applies the after-processing action (mark read, move, delete) to
// messages the caller has durably recorded. Source is its source.Source.
//
// It uses net/http and golang.org/x/oauth2/clientcredentials only (DESIGN
// §8: not msgraph-sdk-go). It knows nothing of databases or MIME.
//
// Every error it returns is a *StepError naming the step that failed (the
// one exception: the error of the caller's own callback, which Delta returns
// as is); Graph's and the identity platform's error codes and messages are
// kept in them. Refused credentials match ErrAuth, an expired delta token
// ErrResync. Errors and logs never contain the client secret or a token.
package graphsource

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/source"
	"mailtrigger/internal/spool"
)

// The steps a StepError names.
const (
	StepConfig  = "config"  // the configuration itself (URLs, caCert)
	StepToken   = "token"   // getting an access token
	StepMailbox = "mailbox" // access to the user's mailbox
	StepFolder  = "folder"  // finding the folder
	StepDelta   = "delta"   // the delta query
	StepFetch   = "fetch"   // reading a message's MIME ($value)
	StepApply   = "apply"   // the after-processing action
)

// Scope is the scope of the app-only token.
const Scope = "https://graph.microsoft.com/.default"

// Defaults for the zero values of Options.
const (
	DefaultRequestTimeout = time.Minute
	DefaultSizeCap        = 50 << 20
	// DefaultMaxRetryWait caps one wait asked for by Retry-After.
	DefaultMaxRetryWait = 2 * time.Minute
	// DefaultMaxRetries bounds the retries of one request after 429 and
	// 503.
	DefaultMaxRetries = 5
	// DefaultPageSize is the page size asked for with Prefer:
	// odata.maxpagesize.
	DefaultPageSize = 50
)

var (
	// ErrAuth is matched by errors of credentials Microsoft refused: a
	// wrong tenant, client id or secret, or a token Graph keeps rejecting.
	// The watcher retries those slowly and shows them plainly.
	ErrAuth = source.ErrAuth

	// ErrResync is matched by the error of Delta when Graph no longer
	// knows the delta token (410 Gone): the caller must start again from an
	// empty deltaLink and skip the messages it already recorded.
	ErrResync = errors.New("delta token expired; a full resync is needed")

	// ErrThrottled is matched by errors of a request still refused with
	// 429 or 503 after the retries.
	ErrThrottled = errors.New("throttled by Microsoft Graph")
)

// StepError is the error of a failed step; Step is one of the Step constants.
type StepError = source.StepError

// APIError is an error response of Graph or of the token endpoint.
type APIError struct {
	Status int
	// Code is Graph's error code (ErrorInvalidUser, syncStateNotFound…)
	// or the identity platform's error (invalid_client…).
	Code string
	// Message is Graph's message or the identity platform's
	// error_description (which starts with the AADSTS code).
	Message string
}

// Error returns "HTTP status code: message".
func (e *APIError) Error() string {
	s := "HTTP " + strconv.Itoa(e.Status)
	if e.Code != "" {
		s += " " + e.Code
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Options are the knobs that are not part of the configuration. The zero
// value is ready to use.
type Options struct {
	// Logger receives debug records of milestones (never a secret, a token
	// or message contents). Nil discards them.
	Logger *slog.Logger
	// Client is the HTTP client to use as is; nil builds one that trusts
	// the system roots plus cfg.CACert.
	Client *http.Client
	// Dial opens the connections of the client built when Client is nil;
	// nil uses http.DefaultTransport's dialer. The service passes its
	// egress policy's.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// RequestTimeout bounds each request until its response headers.
	// Zero means DefaultRequestTimeout.
	RequestTimeout time.Duration
	// SizeCap is the size above which only a message's header is kept.
	// Zero means DefaultSizeCap.
	SizeCap int64
	// Spool, when set, takes the messages above its threshold into spool
	// files as they are read instead of memory (nil: into memory).
	Spool *spool.Spooler
	// MaxRetryWait caps each Retry-After wait; MaxRetries the retries of
	// one request. Zero means the defaults.
	MaxRetryWait time.Duration
	MaxRetries   int
	// PageSize is the delta page size asked for. Zero means
	// DefaultPageSize.
	PageSize int
	// Known, when set, is asked about each message the delta reports
	// before its MIME is fetched: true skips it (already recorded; delta
	// also reports changes such as being marked read).
	Known func(id string) bool
	// Removed, when set, is told the id of each message the delta reports
	// as removed from the folder (deleted or moved away), so that the
	// caller can forget it.
	Removed func(id string)
	// Bearer, when set, gives the access tokens instead of the
	// client-credentials grant: the delegated tokens of the user who signed
	// in (auth oauth2-delegated), who is then read as /me.
	Bearer Bearer
}

// Bearer hands out delegated access tokens (delegated.TokenSource).
type Bearer interface {
	// Token returns an access token; its error is a *StepError of
	// StepToken.
	Token(ctx context.Context) (string, error)
	// Invalidate makes the next Token a new one: Graph refused the last.
	Invalidate()
}

// Message is a message the delta query reported.
type Message struct {
	// ID is Graph's id of the message (it changes when the message moves).
	ID         string
	IsRead     bool
	Subject    string
	ReceivedAt time.Time
	// Raw is the MIME message, or only its header when TooLarge; nil when
	// the message is in Spool.
	Raw []byte
	// Spool holds the MIME message instead of Raw when it was above the
	// threshold of Options.Spool; whoever Delta hands it to closes it.
	Spool *spool.File
	// Size is the size of the MIME message in bytes, -1 when unknown (too
	// large and the server sent no Content-Length).
	Size     int64
	TooLarge bool
}

// Client reads one configured mailbox folder. It is safe for concurrent use.
type Client struct {
	cfg      imapconf.Config
	opts     Options
	log      *slog.Logger
	hc       *http.Client
	cc       clientcredentials.Config
	graph    string // GraphURL + "/v1.0/users/" + user, or "/v1.0/me" (Bearer)
	graphURL *url.URL

	mu      sync.Mutex
	tok     *oauth2.Token
	folders map[string]string // folder name -> id
}

// New checks cfg and returns a client for it. It does not talk to the
// server.
func New(cfg imapconf.Config, opts Options) (*Client, error) {
	c, err := newClient(cfg, opts)
	if err != nil {
		return nil, redact(err, cfg.ClientSecret)
	}
	return c, nil
}

func newClient(cfg imapconf.Config, opts Options) (*Client, error) {
	if cfg.GraphURL == "" {
		cfg.GraphURL = imapconf.DefaultGraphURL
	}
	if cfg.AuthorityURL == "" {
		cfg.AuthorityURL = imapconf.DefaultAuthorityURL
	}
	if cfg.Folder == "" {
		cfg.Folder = imapconf.DefaultFolder
	}
	cfg.GraphURL = strings.TrimRight(cfg.GraphURL, "/")
	cfg.AuthorityURL = strings.TrimRight(cfg.AuthorityURL, "/")
	gu, err := url.Parse(cfg.GraphURL)
	if err != nil || gu.Host == "" {
		return nil, &StepError{Step: StepConfig, Err: errors.New("graphUrl is not an absolute URL")}
	}
	if opts.Bearer == nil && (cfg.Username == "" || cfg.TenantID == "" || cfg.ClientID == "") {
		return nil, &StepError{Step: StepConfig, Err: errors.New("username, tenantId and clientId are required")}
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = DefaultRequestTimeout
	}
	if opts.SizeCap <= 0 {
		opts.SizeCap = DefaultSizeCap
	}
	if opts.MaxRetryWait <= 0 {
		opts.MaxRetryWait = DefaultMaxRetryWait
	}
	if opts.MaxRetries <= 0 {
		opts.MaxRetries = DefaultMaxRetries
	}
	if opts.PageSize <= 0 {
		opts.PageSize = DefaultPageSize
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	hc := opts.Client
	if hc == nil {
		tr, err := source.HTTPTransport(cfg.CACert, opts.Dial)
		if err != nil {
			return nil, &StepError{Step: StepConfig, Err: err}
		}
		tr.ResponseHeaderTimeout = opts.RequestTimeout
		hc = &http.Client{Transport: tr}
	}
	graph := cfg.GraphURL + "/v1.0/users/" + url.PathEscape(cfg.Username)
	if opts.Bearer != nil {
		// The signed-in user's own mailbox: /me works for work and
		// personal Microsoft accounts alike (the sign-in checked that the
		// account is the configured user name).
		graph = cfg.GraphURL + "/v1.0/me"
	}
	return &Client{
		cfg:  cfg,
		opts: opts,
		log:  log.With("user", cfg.Username, "folder", cfg.Folder),
		hc:   hc,
		cc: clientcredentials.Config{
			ClientID:     cfg.ClientID,
			ClientSecret: cfg.ClientSecret,
			TokenURL:     cfg.AuthorityURL + "/" + url.PathEscape(cfg.TenantID) + "/oauth2/v2.0/token",
			Scopes:       []string{Scope},
			AuthStyle:    oauth2.AuthStyleInParams,
		},
		graph:    graph,
		graphURL: gu,
		folders:  map[string]string{},
	}, nil
}

// token returns a valid access token, fetching one when none is cached or
// the cached one expires within a few seconds.
func (c *Client) token(ctx context.Context) (*oauth2.Token, error) {
	if c.opts.Bearer != nil {
		tok, err := c.opts.Bearer.Token(ctx)
		if err != nil {
			return nil, err
		}
		return &oauth2.Token{AccessToken: tok}, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tok != nil && c.tok.Valid() {
		return c.tok, nil
	}
	ctx, cancel := context.WithTimeout(context.WithValue(ctx, oauth2.HTTPClient, c.hc), c.opts.RequestTimeout)
	defer cancel()
	tok, err := c.cc.Token(ctx)
	if err != nil {
		return nil, &StepError{Step: StepToken, Err: tokenError(err)}
	}
	c.log.Debug("graph: got an access token", "expires", tok.Expiry)
	c.tok = tok
	return tok, nil
}

// invalidate forgets tok if it is still the cached one.
func (c *Client) invalidate(tok *oauth2.Token) {
	if c.opts.Bearer != nil {
		c.opts.Bearer.Invalidate()
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tok == tok {
		c.tok = nil
	}
}

// tokenError turns the token endpoint's error into an APIError, matching
// ErrAuth when the credentials were refused.
func tokenError(err error) error {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		return err
	}
	status := 0
	if re.Response != nil {
		status = re.Response.StatusCode
	}
	msg := re.ErrorDescription
	if i := strings.Index(msg, " Trace ID:"); i > 0 {
		msg = msg[:i]
	}
	msg = strings.TrimSpace(strings.SplitN(msg, "\r\n", 2)[0])
	ae := &APIError{Status: status, Code: re.ErrorCode, Message: msg}
	if re.ErrorCode == "" {
		// Not an OAuth2 error: described, never quoted.
		ae.Message = source.NotOAuth2(re.Response)
	}
	switch re.ErrorCode {
	case "invalid_client", "unauthorized_client", "invalid_request", "invalid_grant", "invalid_scope":
		return fmt.Errorf("%w: %w", ErrAuth, ae)
	}
	return ae
}

// do sends the request that mk builds with a bearer token, retrying once
// with a fresh token on 401 InvalidAuthenticationToken and, after the wait
// Retry-After asks for (bounded), on 429 and 503. A response other than 2xx
// is returned as an *APIError; the caller closes the body of the response.
func (c *Client) do(ctx context.Context, step string, mk func() (*http.Request, error)) (*http.Response, error) {
	refreshed := false
	for attempt := 0; ; attempt++ {
		tok, err := c.token(ctx)
		if err != nil {
			return nil, err
		}
		req, err := mk()
		if err != nil {
			return nil, &StepError{Step: step, Err: err}
		}
		req = req.WithContext(ctx)
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		resp, err := c.hc.Do(req)
		if err != nil {
			return nil, &StepError{Step: step, Err: stripURL(err)}
		}
		if resp.StatusCode >= 200 && resp.StatusCode < 300 {
			return resp, nil
		}
		ae := readAPIError(resp)
		switch {
		case resp.StatusCode == http.StatusUnauthorized && !refreshed:
			c.log.Debug("graph: token refused, getting a new one", "code", ae.Code)
			c.invalidate(tok)
			refreshed = true
			continue
		case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
			return nil, &StepError{Step: step, Err: fmt.Errorf("%w: %w", ErrAuth, ae)}
		case resp.StatusCode == http.StatusGone:
			return nil, &StepError{Step: step, Err: fmt.Errorf("%w: %w", ErrResync, ae)}
		case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable:
			if attempt >= c.opts.MaxRetries {
				return nil, &StepError{Step: step, Err: fmt.Errorf("%w: %w", ErrThrottled, ae)}
			}
			wait := retryAfter(resp.Header.Get("Retry-After"), attempt)
			wait = min(wait, c.opts.MaxRetryWait)
			c.log.Debug("graph: throttled, waiting", "status", resp.StatusCode, "wait", wait)
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, &StepError{Step: step, Err: context.Cause(ctx)}
			case <-t.C:
			}
			continue
		}
		return nil, &StepError{Step: step, Err: ae}
	}
}

// retryAfter reads a Retry-After header (seconds or an HTTP date); without
// one it backs off exponentially from one second.
func retryAfter(h string, attempt int) time.Duration {
	if n, err := strconv.Atoi(strings.TrimSpace(h)); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil {
		return max(time.Until(t), 0)
	}
	return time.Second << min(attempt, 6)
}

// readAPIError reads Graph's error body and closes it.
func readAPIError(resp *http.Response) *APIError {
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	ae := &APIError{Status: resp.StatusCode}
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error.Code != "" {
		ae.Code, ae.Message = e.Error.Code, e.Error.Message
	} else {
		ae.Message = http.StatusText(resp.StatusCode)
	}
	return ae
}

// stripURL removes the URL from a *url.Error: links carry delta tokens, which
// are as good as a bookmark into the mailbox and too long to show.
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}

// maxJSONAnswer bounds a JSON answer of Graph: a page of the delta query
// (DefaultPageSize messages of a few fields each), a folder. Graph may send
// more than the page size asked for, but not megabytes of it; a server that
// does is not believed, and not held in memory. Messages' MIME ($value) is
// read apart, with the size cap.
const maxJSONAnswer = 4 << 20

// getJSON gets u and decodes its JSON answer, at most maxJSONAnswer bytes,
// into v.
func (c *Client) getJSON(ctx context.Context, step, u string, v any) error {
	resp, err := c.do(ctx, step, func() (*http.Request, error) {
		req, err := http.NewRequest(http.MethodGet, u, nil)
		if err == nil {
			req.Header.Set("Accept", "application/json")
			req.Header.Set("Prefer", "odata.maxpagesize="+strconv.Itoa(c.opts.PageSize))
		}
		return req, err
	})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body := &io.LimitedReader{R: resp.Body, N: maxJSONAnswer + 1}
	if err := json.NewDecoder(body).Decode(v); err != nil {
		if body.N <= 0 {
			err = fmt.Errorf("answer longer than %d bytes", maxJSONAnswer)
		}
		return &StepError{Step: step, Err: fmt.Errorf("reading the response: %w", err)}
	}
	return nil
}

// Folder is a mail folder.
type Folder struct {
	ID          string `json:"id"`
	DisplayName string `json:"displayName"`
	Total       int    `json:"totalItemCount"`
	Unread      int    `json:"unreadItemCount"`
}

// wellKnownNames are Graph's well-known folder names usable in place of an
// id.
var wellKnownNames = map[string]string{
	"inbox": "inbox", "archive": "archive", "deleteditems": "deleteditems", "deleted items": "deleteditems",
	"drafts": "drafts", "junkemail": "junkemail", "junk email": "junkemail", "sentitems": "sentitems",
	"sent items": "sentitems", "outbox": "outbox",
}

// FindFolder finds the top-level folder called name: a well-known name (INBOX
// is the inbox) or a display name. Ids are cached.
func (c *Client) FindFolder(ctx context.Context, name string) (Folder, error) {
	f, err := c.findFolder(ctx, name)
	return f, redact(err, c.cfg.ClientSecret)
}

func (c *Client) findFolder(ctx context.Context, name string) (Folder, error) {
	var f Folder
	if wk, ok := wellKnownNames[strings.ToLower(strings.TrimSpace(name))]; ok {
		if err := c.getJSON(ctx, StepFolder, c.graph+"/mailFolders/"+wk, &f); err != nil {
			return Folder{}, err
		}
	} else {
		var list struct {
			Value []Folder `json:"value"`
		}
		q := url.Values{"$filter": {"displayName eq '" + strings.ReplaceAll(name, "'", "''") + "'"}}
		if err := c.getJSON(ctx, StepFolder, c.graph+"/mailFolders?"+q.Encode(), &list); err != nil {
			return Folder{}, err
		}
		if len(list.Value) == 0 {
			return Folder{}, &StepError{Step: StepFolder, Err: fmt.Errorf("no folder named %q in the mailbox", name)}
		}
		f = list.Value[0]
	}
	c.mu.Lock()
	c.folders[name] = f.ID
	c.mu.Unlock()
	return f, nil
}

func (c *Client) folderID(ctx context.Context, name string) (string, error) {
	c.mu.Lock()
	id, ok := c.folders[name]
	c.mu.Unlock()
	if ok {
		return id, nil
	}
	f, err := c.findFolder(ctx, name)
	return f.ID, err
}

type deltaPage struct {
	Value []struct {
		ID               string          `json:"id"`
		IsRead           bool            `json:"isRead"`
		Subject          string          `json:"subject"`
		ReceivedDateTime time.Time       `json:"receivedDateTime"`
		Removed          json.RawMessage `json:"@removed"`
	} `json:"value"`
	NextLink  string `json:"@odata.nextLink"`
	DeltaLink string `json:"@odata.deltaLink"`
}

// Delta runs the delta query of the configured folder from deltaLink (empty:
// from the start, which reports every message in the folder), following
// @odata.nextLink page by page to the @odata.deltaLink, which it returns:
// the caller stores it as the checkpoint once everything fn was given is
// recorded. For each message added or changed (removals are only told to
// Options.Removed, and messages Options.Known knows are skipped) it fetches
// the raw MIME and calls fn; an
// error of fn stops Delta and is returned as is, with no new deltaLink.
//
// An expired deltaLink gives an error matching ErrResync: start again from
// "" and skip what was already recorded.
func (c *Client) Delta(ctx context.Context, deltaLink string, fn func(Message) error) (string, error) {
	link, err := c.delta(ctx, deltaLink, fn)
	var se *StepError
	if err != nil && errors.As(err, &se) {
		err = redact(err, c.cfg.ClientSecret)
	}
	return link, err
}

// Prime runs the delta query from the start to its end without fetching any
// message, and returns the deltaLink: the checkpoint for backlog "new", from
// which only mail arriving later is reported.
func (c *Client) Prime(ctx context.Context) (string, error) {
	link, err := c.delta(ctx, "", nil)
	return link, redact(err, c.cfg.ClientSecret)
}

func (c *Client) delta(ctx context.Context, link string, fn func(Message) error) (string, error) {
	sel := "id,isRead,subject,receivedDateTime"
	if link == "" {
		id, err := c.folderID(ctx, c.cfg.Folder)
		if err != nil {
			return "", err
		}
		link = c.graph + "/mailFolders/" + url.PathEscape(id) + "/messages/delta?" + url.Values{"$select": {sel}}.Encode()
	}
	for pages := 0; ; pages++ {
		if err := c.sameOrigin(link); err != nil {
			return "", &StepError{Step: StepDelta, Err: err}
		}
		var page deltaPage
		if err := c.getJSON(ctx, StepDelta, link, &page); err != nil {
			return "", err
		}
		c.log.Debug("graph: delta page", "page", pages, "items", len(page.Value))
		for _, v := range page.Value {
			if fn == nil || v.ID == "" {
				continue
			}
			if v.Removed != nil {
				if c.opts.Removed != nil {
					c.opts.Removed(v.ID)
				}
				continue
			}
			if c.opts.Known != nil && c.opts.Known(v.ID) {
				continue
			}
			m := Message{ID: v.ID, IsRead: v.IsRead, Subject: v.Subject, ReceivedAt: v.ReceivedDateTime}
			err := c.fetch(ctx, &m)
			var ae *APIError
			if errors.As(err, &ae) && itemGone(ae) {
				// Gone between the delta and the fetch: a later delta
				// reports its removal (or its new id after a move).
				c.log.Debug("graph: message gone before it was read", "id", m.ID)
				continue
			}
			if err != nil {
				return "", err
			}
			if err := fn(m); err != nil {
				return "", err
			}
		}
		switch {
		case page.DeltaLink != "":
			return page.DeltaLink, nil
		case page.NextLink == "":
			return "", &StepError{Step: StepDelta, Err: errors.New("a delta page with neither @odata.nextLink nor @odata.deltaLink")}
		}
		link = page.NextLink
	}
}

// sameOrigin refuses links that would send the token to another host.
func (c *Client) sameOrigin(link string) error {
	u, err := url.Parse(link)
	if err != nil || u.Scheme != c.graphURL.Scheme || u.Host != c.graphURL.Host {
		return errors.New("the delta link does not point to the configured graphUrl")
	}
	return nil
}

// fetch reads m's MIME from $value, keeping only the header when it is
// bigger than the size cap. With a spooler, what is above its threshold is
// streamed into a spool file (m.Spool), and a message that says it is over
// the cap (Content-Length) has only its header read.
func (c *Client) fetch(ctx context.Context, m *Message) error {
	u := c.graph + "/messages/" + url.PathEscape(m.ID) + "/$value"
	resp, err := c.do(ctx, StepFetch, func() (*http.Request, error) { return http.NewRequest(http.MethodGet, u, nil) })
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	capN, sp := c.opts.SizeCap, c.opts.Spool
	if sp != nil && resp.ContentLength > capN {
		header, err := spool.ReadHeader(resp.Body, capN)
		if err != nil {
			return &StepError{Step: StepFetch, Err: stripURL(err)}
		}
		c.overCap(m, header, resp.ContentLength)
		return nil
	}
	inMemory := capN
	if sp != nil {
		inMemory = min(capN, sp.MaxInMemory())
	}
	var buf bytes.Buffer
	n, err := io.Copy(&buf, io.LimitReader(resp.Body, inMemory+1))
	if err != nil {
		return &StepError{Step: StepFetch, Err: stripURL(err)}
	}
	if n <= inMemory {
		m.Raw, m.Size = buf.Bytes(), n
		return nil
	}
	if inMemory < capN {
		return c.spoolRest(m, sp, &buf, resp.Body, resp.ContentLength)
	}
	c.overCap(m, headerOf(buf.Bytes()), resp.ContentLength)
	return nil
}

// spoolRest writes the start of m's MIME read so far (head) and the rest
// of body, up to one byte over the size cap, into a spool file; a message
// over the cap after all keeps only its header, read back from the file.
// No spool file is left on a failure.
func (c *Client) spoolRest(m *Message, sp *spool.Spooler, head *bytes.Buffer, body io.Reader, length int64) error {
	capN := c.opts.SizeCap
	w, err := sp.Create()
	if err != nil {
		return &StepError{Step: StepFetch, Err: err}
	}
	n, err := head.WriteTo(w)
	head.Reset()
	if err == nil {
		_, err = io.Copy(w, io.LimitReader(body, capN+1-n))
	}
	if err != nil {
		w.Abort()
		return &StepError{Step: StepFetch, Err: stripURL(err)}
	}
	f := w.Done()
	if f.Size() <= capN {
		m.Spool, m.Size = f, f.Size()
		return nil
	}
	header, err := spool.ReadHeader(f.Reader(), capN)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return &StepError{Step: StepFetch, Err: err}
	}
	c.overCap(m, header, length)
	return nil
}

// overCap makes m a message over the size cap that keeps header; length is
// the Content-Length of its MIME (-1 if unknown).
func (c *Client) overCap(m *Message, header []byte, length int64) {
	m.TooLarge, m.Size = true, length
	if m.Size <= 0 {
		m.Size = -1
	}
	m.Raw = header
	c.log.Debug("graph: message over the size cap, kept its header", "id", m.ID, "size", m.Size)
}

// headerOf returns the header of a MIME message, with the blank line that
// ends it.
func headerOf(b []byte) []byte {
	for i := 0; i < len(b); {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			break
		}
		line := b[i : i+j+1]
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			return bytes.Clone(b[:i+j+1])
		}
		i += j + 1
	}
	return bytes.Clone(b)
}

// Apply applies the after-processing action to the messages ids: "seen"
// marks them read, "move" moves them to the folder named moveTo, "delete"
// deletes them (Graph moves them to Deleted Items), "none" and "" do
// nothing. A message that is no longer there (404) was already processed
// and is no error.
func (c *Client) Apply(ctx context.Context, action, moveTo string, ids []string) error {
	return redact(c.apply(ctx, action, moveTo, ids), c.cfg.ClientSecret)
}

func (c *Client) apply(ctx context.Context, action, moveTo string, ids []string) error {
	var method, suffix string
	var body []byte
	switch action {
	case "", imapconf.AfterNone:
		return nil
	case imapconf.AfterSeen:
		method, body = http.MethodPatch, []byte(`{"isRead":true}`)
	case imapconf.AfterDelete:
		method = http.MethodDelete
	case imapconf.AfterMove:
		if moveTo == "" {
			return &StepError{Step: StepApply, Err: errors.New("move needs moveTo")}
		}
		dest, err := c.folderID(ctx, moveTo)
		if err != nil {
			return err
		}
		method, suffix = http.MethodPost, "/move"
		body, _ = json.Marshal(map[string]string{"destinationId": dest})
	default:
		return &StepError{Step: StepApply, Err: fmt.Errorf("unknown action %q", action)}
	}
	for _, id := range ids {
		u := c.graph + "/messages/" + url.PathEscape(id) + suffix
		resp, err := c.do(ctx, StepApply, func() (*http.Request, error) {
			var r io.Reader
			if body != nil {
				r = bytes.NewReader(body)
			}
			req, err := http.NewRequest(method, u, r)
			if err == nil && body != nil {
				req.Header.Set("Content-Type", "application/json")
			}
			return req, err
		})
		var ae *APIError
		if errors.As(err, &ae) && itemGone(ae) {
			c.log.Debug("graph: message already gone", "id", id, "action", action)
			continue
		}
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
	}
	return nil
}

// itemGone reports whether ae says the message is not there (any more), as
// opposed to the mailbox being unknown.
func itemGone(ae *APIError) bool {
	return ae.Status == http.StatusNotFound && ae.Code != "ErrorInvalidUser" && ae.Code != "MailboxNotEnabledForRESTAPI"
}

// TestResult is the outcome of Test, in the JSON form the API returns.
type TestResult struct {
	OK bool `json:"ok"`
	// Step is the step that failed (StepConfig, StepToken, StepMailbox or
	// StepFolder), empty when OK.
	Step string `json:"step,omitempty"`
	// Error says what went wrong, with Microsoft's error code and message;
	// never the secret.
	Error string `json:"error,omitempty"`
	// Messages and Unread count the folder's messages.
	Messages int `json:"messages"`
	Unread   int `json:"unread"`
}

// Test tests cfg as the test-connection operation does: it gets a token,
// opens the mailbox (its inbox) and finds the folder, then reports the
// folder's message count, or the step that failed and why.
func Test(ctx context.Context, cfg imapconf.Config, opts Options) TestResult {
	fail := func(err error) TestResult {
		step, msg := source.StepOf(redact(err, cfg.ClientSecret), "")
		return TestResult{Step: step, Error: msg}
	}
	c, err := New(cfg, opts)
	if err != nil {
		return fail(err)
	}
	if _, err := c.token(ctx); err != nil {
		return fail(err)
	}
	var inbox Folder
	if err := c.getJSON(ctx, StepMailbox, c.graph+"/mailFolders/inbox?$select=id,displayName,totalItemCount,unreadItemCount", &inbox); err != nil {
		return fail(err)
	}
	f, err := c.findFolder(ctx, c.cfg.Folder)
	if err != nil {
		return fail(err)
	}
	return TestResult{OK: true, Messages: f.Total, Unread: f.Unread}
}

// redact replaces the secrets in err's text, keeping the step and whether it
// matches ErrAuth and ErrResync.
func redact(err error, secrets ...string) error {
	return source.RedactError(err, []error{ErrAuth, ErrResync}, secrets...)
}
