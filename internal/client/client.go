// Package client is a Go client of the mailtrigger REST API. The tests drive
// the API through it, and it decodes strictly (unknown fields are an error),
// so that a response that drifts from the documented shape fails loudly.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"mailtrigger/internal/api"
	"mailtrigger/internal/imapconf"
)

// Client calls one mailtrigger server with one token.
type Client struct {
	BaseURL string // e.g. http://127.0.0.1:8080
	Token   string
	HTTP    *http.Client // nil: http.DefaultClient
}

// Error is an error response of the API.
type Error struct {
	Status  int
	Code    string
	Message string
	Fields  map[string]string
	Flows   []string
}

func (e *Error) Error() string {
	s := fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message)
	if len(e.Fields) > 0 {
		s += fmt.Sprintf(" %v", e.Fields)
	}
	return s
}

// httpClient is c.HTTP (or http.DefaultClient) following no redirect,
// unless it has a redirect policy of its own: the API answers no redirect,
// and a request redirected elsewhere carries the token there.
func (c *Client) httpClient() *http.Client {
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	if hc.CheckRedirect != nil {
		return hc
	}
	cp := *hc
	cp.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &cp
}

// List is a page of a list.
type List[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"nextCursor,omitempty"`
}

// Do sends a request with body (nil, []byte sent as is, or a value encoded as
// JSON) and decodes a 2xx response into out (when not nil). A non-2xx response
// is returned as *Error.
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return fmt.Errorf("encoding request: %w", err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.BaseURL, "/")+path, rd)
	if err != nil {
		return err
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		// Followed, a 301 or 302 would turn this PUT or DELETE into a
		// GET that succeeds (the plain HTTP listener redirects to
		// HTTPS): the change would be reported made and never be.
		return fmt.Errorf("%s %s: the server redirects (HTTP %d) to %s; set the service's URL (MAILTRIGGER_URL) to where it points",
			method, path, resp.StatusCode, resp.Header.Get("Location"))
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("reading response: %w", err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var eb struct {
			Error struct {
				Code    string            `json:"code"`
				Message string            `json:"message"`
				Fields  map[string]string `json:"fields"`
			} `json:"error"`
			Flows []string `json:"flows"`
		}
		if err := strictDecode(data, &eb); err != nil {
			return fmt.Errorf("%s %s: status %d with a body that is not an API error (%v): %.200s", method, path, resp.StatusCode, err, data)
		}
		return &Error{Status: resp.StatusCode, Code: eb.Error.Code, Message: eb.Error.Message, Fields: eb.Error.Fields, Flows: eb.Flows}
	}
	if out == nil {
		return nil
	}
	if rb, ok := out.(*rawBody); ok {
		*rb = data
		return nil
	}
	if err := strictDecode(data, out); err != nil {
		return fmt.Errorf("%s %s: decoding response: %w", method, path, err)
	}
	return nil
}

func strictDecode(data []byte, out any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	return dec.Decode(out)
}

func listQuery(limit int, cursor string, extra url.Values) string {
	q := url.Values{}
	for k, v := range extra {
		q[k] = v
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}

// ListIMAP returns a page of IMAP configurations.
func (c *Client) ListIMAP(ctx context.Context, limit int, cursor string) (List[imapconf.View], error) {
	var out List[imapconf.View]
	err := c.Do(ctx, http.MethodGet, "/api/v1/imap"+listQuery(limit, cursor, nil), nil, &out)
	return out, err
}

// CreateIMAP creates a configuration from in (an imapconf.Input, a map, or raw JSON bytes).
func (c *Client) CreateIMAP(ctx context.Context, in any) (imapconf.View, error) {
	var out imapconf.View
	err := c.Do(ctx, http.MethodPost, "/api/v1/imap", in, &out)
	return out, err
}

// GetIMAP returns the configuration name.
func (c *Client) GetIMAP(ctx context.Context, name string) (imapconf.View, error) {
	var out imapconf.View
	err := c.Do(ctx, http.MethodGet, "/api/v1/imap/"+url.PathEscape(name), nil, &out)
	return out, err
}

// EditIMAP replaces the configuration name by in.
func (c *Client) EditIMAP(ctx context.Context, name string, in any) (imapconf.View, error) {
	var out imapconf.View
	err := c.Do(ctx, http.MethodPut, "/api/v1/imap/"+url.PathEscape(name), in, &out)
	return out, err
}

// DeleteIMAP deletes the configuration name.
func (c *Client) DeleteIMAP(ctx context.Context, name string) error {
	return c.Do(ctx, http.MethodDelete, "/api/v1/imap/"+url.PathEscape(name), nil, nil)
}

// DuplicateIMAP copies the configuration name.
func (c *Client) DuplicateIMAP(ctx context.Context, name string, in any) (imapconf.View, error) {
	var out imapconf.View
	err := c.Do(ctx, http.MethodPost, "/api/v1/imap/"+url.PathEscape(name)+"/duplicate", in, &out)
	return out, err
}

// Message is a recorded message as the API shows it.
type Message = api.MessageView

// ListMessages returns a page of recorded messages, newest first; imap
// filters by configuration name when not empty.
func (c *Client) ListMessages(ctx context.Context, imap string, limit int, cursor string) (List[Message], error) {
	var out List[Message]
	extra := url.Values{}
	if imap != "" {
		extra.Set("imap", imap)
	}
	err := c.Do(ctx, http.MethodGet, "/api/v1/messages"+listQuery(limit, cursor, extra), nil, &out)
	return out, err
}

// GetMessage returns a recorded message with its bodies.
func (c *Client) GetMessage(ctx context.Context, id int64) (Message, error) {
	var out Message
	err := c.Do(ctx, http.MethodGet, "/api/v1/messages/"+strconv.FormatInt(id, 10), nil, &out)
	return out, err
}

// Get returns the body of a GET of path (a raw message, an attachment).
func (c *Client) Get(ctx context.Context, path string) ([]byte, error) {
	var out rawBody
	err := c.Do(ctx, http.MethodGet, path, nil, &out)
	return out, err
}

// rawBody takes a response body as it is.
type rawBody []byte
