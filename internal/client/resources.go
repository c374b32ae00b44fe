package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"mailtrigger/internal/api"
	"mailtrigger/internal/imapconf"
)

// The calls the CLI makes beyond those of client.go: flows, runs, message
// re-triggering, connection tests, and whole lists across pages.

// Flow is a flow as the API shows it.
type Flow = api.FlowView

// Run is a run as the API shows it.
type Run = api.RunView

// TriggerResult is the answer of a re-trigger.
type TriggerResult = api.TriggerResult

// TestResult is the answer of a connection test: ok, step, error,
// capabilities, messages … (its fields depend on the kind of mailbox).
type TestResult map[string]any

// RunFilter narrows a list of runs; empty fields do not filter.
type RunFilter struct {
	Flow, IMAP, Status string
}

// maxPages bounds the pages All* follow, against a server that never ends a list.
const maxPages = 100000

// AllIMAP returns every IMAP configuration, following the pages.
func (c *Client) AllIMAP(ctx context.Context) ([]imapconf.View, error) {
	return all(func(cursor string) (List[imapconf.View], error) { return c.ListIMAP(ctx, 0, cursor) })
}

// AllFlows returns every flow, following the pages.
func (c *Client) AllFlows(ctx context.Context) ([]Flow, error) {
	return all(func(cursor string) (List[Flow], error) { return c.ListFlows(ctx, 0, cursor) })
}

func all[T any](page func(cursor string) (List[T], error)) ([]T, error) {
	var out []T
	cursor := ""
	for range maxPages {
		l, err := page(cursor)
		if err != nil {
			return nil, err
		}
		out = append(out, l.Items...)
		if l.NextCursor == "" {
			return out, nil
		}
		cursor = l.NextCursor
	}
	return nil, fmt.Errorf("the list did not end after %d pages", maxPages)
}

// TestIMAP tests the saved configuration name's connection.
func (c *Client) TestIMAP(ctx context.Context, name string) (TestResult, error) {
	var out TestResult
	err := c.Do(ctx, http.MethodPost, "/api/v1/imap/"+url.PathEscape(name)+"/test", nil, &out)
	return out, err
}

// TestUnsavedIMAP tests the configuration in (not saved; a secret left out
// is taken from the saved configuration of that name).
func (c *Client) TestUnsavedIMAP(ctx context.Context, in any) (TestResult, error) {
	var out TestResult
	err := c.Do(ctx, http.MethodPost, "/api/v1/imap/test", in, &out)
	return out, err
}

// ListFlows returns a page of flows.
func (c *Client) ListFlows(ctx context.Context, limit int, cursor string) (List[Flow], error) {
	var out List[Flow]
	err := c.Do(ctx, http.MethodGet, "/api/v1/flows"+listQuery(limit, cursor, nil), nil, &out)
	return out, err
}

// GetFlow returns the flow name.
func (c *Client) GetFlow(ctx context.Context, name string) (Flow, error) {
	var out Flow
	err := c.Do(ctx, http.MethodGet, "/api/v1/flows/"+url.PathEscape(name), nil, &out)
	return out, err
}

// CreateFlow creates a flow from in (a flow.Input, a map, or raw JSON bytes).
// A webhook secret generated for it is in the answer, once.
func (c *Client) CreateFlow(ctx context.Context, in any) (Flow, error) {
	var out Flow
	err := c.Do(ctx, http.MethodPost, "/api/v1/flows", in, &out)
	return out, err
}

// EditFlow replaces the flow name by in.
func (c *Client) EditFlow(ctx context.Context, name string, in any) (Flow, error) {
	var out Flow
	err := c.Do(ctx, http.MethodPut, "/api/v1/flows/"+url.PathEscape(name), in, &out)
	return out, err
}

// DeleteFlow deletes the flow name.
func (c *Client) DeleteFlow(ctx context.Context, name string) error {
	return c.Do(ctx, http.MethodDelete, "/api/v1/flows/"+url.PathEscape(name), nil, nil)
}

// ListRuns returns a page of runs, newest first.
func (c *Client) ListRuns(ctx context.Context, f RunFilter, limit int, cursor string) (List[Run], error) {
	var out List[Run]
	extra := url.Values{}
	for k, v := range map[string]string{"flow": f.Flow, "imap": f.IMAP, "status": f.Status} {
		if v != "" {
			extra.Set(k, v)
		}
	}
	err := c.Do(ctx, http.MethodGet, "/api/v1/runs"+listQuery(limit, cursor, extra), nil, &out)
	return out, err
}

// GetRun returns the run id with its attempts.
func (c *Client) GetRun(ctx context.Context, id string) (Run, error) {
	var out Run
	err := c.Do(ctx, http.MethodGet, "/api/v1/runs/"+url.PathEscape(id), nil, &out)
	return out, err
}

// RetryRun queues the failed run id again.
func (c *Client) RetryRun(ctx context.Context, id string) (Run, error) {
	var out Run
	err := c.Do(ctx, http.MethodPost, "/api/v1/runs/"+url.PathEscape(id)+"/retry", nil, &out)
	return out, err
}

// RawMessage returns the message id as it was received (RFC 5322).
func (c *Client) RawMessage(ctx context.Context, id int64) ([]byte, error) {
	return c.Get(ctx, "/api/v1/messages/"+strconv.FormatInt(id, 10)+"/raw")
}

// Retrigger matches the message id against the flows again and starts the
// runs of those that match and have none for it yet (force: a new run even
// for those that have one).
func (c *Client) Retrigger(ctx context.Context, id int64, force bool) (TriggerResult, error) {
	var out TriggerResult
	var body any
	if force {
		body = api.TriggerInput{Force: true}
	}
	err := c.Do(ctx, http.MethodPost, "/api/v1/messages/"+strconv.FormatInt(id, 10)+"/trigger", body, &out)
	return out, err
}
