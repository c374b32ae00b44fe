// Package api is the REST API (v1): JSON in and out, a bearer token on every
// route. Handlers decode input, read from the store, make every change
// through the control plane (internal/control, shared with the web UI), and
// map domain errors to status codes in one place (writeError).
package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"mailtrigger/internal/auth"
	"mailtrigger/internal/clientip"
	"mailtrigger/internal/control"
	"mailtrigger/internal/store"
	"mailtrigger/internal/valid"
)

// MaxBodyBytes is the largest request body the API reads.
const MaxBodyBytes = 1 << 20

// Deps are what the API needs.
type Deps struct {
	Store  *store.Store
	Logger *slog.Logger
	// Runtime is the running service: it is told of changes and asked for
	// status, connection tests and the replicas. nil: control.Offline.
	Runtime control.Runtime
	// BaseURL is the service's public URL (MAILTRIGGER_BASE_URL): the
	// sign-in callback URL is under it; "" takes the request's origin.
	BaseURL string
	// Proxies says which peers are reverse proxies whose
	// X-Forwarded-Proto tells the request's scheme.
	Proxies clientip.Resolver
}

// API serves /api/v1.
type API struct {
	store   *store.Store
	log     *slog.Logger
	rt      control.Runtime
	changes *control.Changes
	baseURL string
	proxies clientip.Resolver
}

// New returns the API.
func New(d Deps) *API {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Runtime == nil {
		d.Runtime = control.Offline{}
	}
	return &API{store: d.Store, log: d.Logger, rt: d.Runtime, changes: control.New(d.Store, d.Logger, d.Runtime),
		baseURL: d.BaseURL, proxies: d.Proxies}
}

// Routes registers every /api/v1 route on mux, each behind the token check
// but the OpenAPI document.
func (a *API) Routes(mux *http.ServeMux) { a.routes(mux, mux.Handle) }

// routes registers the routes with handle; the tests read the patterns from
// it (every one must be in the OpenAPI document).
func (a *API) routes(mux *http.ServeMux, handle func(pattern string, h http.Handler)) {
	handle("GET "+OpenAPIPath, http.HandlerFunc(serveOpenAPI))
	h := func(pattern string, fn http.HandlerFunc) {
		handle(pattern, a.requireToken(refuseControls(fn)))
	}
	h("GET /api/v1/imap", a.listIMAP)
	h("POST /api/v1/imap", a.createIMAP)
	h("GET /api/v1/imap/{name}", a.getIMAP)
	h("PUT /api/v1/imap/{name}", a.editIMAP)
	h("DELETE /api/v1/imap/{name}", a.deleteIMAP)
	h("POST /api/v1/imap/{name}/duplicate", a.duplicateIMAP)
	h("POST /api/v1/imap/{name}/test", a.testSavedIMAP)
	h("POST /api/v1/imap/test", a.testUnsavedIMAP)
	h("POST /api/v1/imap/{name}/oauth/start", a.startSignIn)
	h("DELETE /api/v1/imap/{name}/oauth", a.signOut)
	a.messageRoutes(h)
	a.flowRoutes(h)
	a.runRoutes(h)
	a.alertRoutes(h)
	h("GET /api/v1/cluster", a.getCluster)
	configSchemaRoute(handle)
	h("/api/v1/", func(w http.ResponseWriter, r *http.Request) { unmatched(mux, w, r) })
}

// unmatched answers a request no API route took: 405 with Allow when the path
// exists for other methods, else 404, both as JSON errors.
func unmatched(mux *http.ServeMux, w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete} {
		r2 := r.Clone(r.Context())
		r2.Method = m
		if _, pattern := mux.Handler(r2); pattern != "" && pattern != "/api/v1/" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeJSONError(w, http.StatusMethodNotAllowed, apiError{Code: "method_not_allowed", Message: r.Method + " is not allowed here; use " + strings.Join(allow, ", ")})
		return
	}
	writeJSONError(w, http.StatusNotFound, apiError{Code: "not_found", Message: "no such API route: " + r.Method + " " + r.URL.Path})
}

// refuseControls answers a request whose path has a control character or
// is not UTF-8 with 404 (no name or id has one), and one with such a query
// parameter with 400 naming it, before a handler passes them to the
// database (PostgreSQL refuses NUL and invalid UTF-8 with an error).
func refuseControls(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if valid.Line(r.URL.Path) != "" {
			writeJSONError(w, http.StatusNotFound, apiError{Code: "not_found", Message: "no such resource: the path has a control character or is not UTF-8"})
			return
		}
		if err := valid.Query(r.URL.Query()).Err(); err != nil {
			writeJSONError(w, http.StatusBadRequest, apiError{Code: "validation_failed", Message: "the request has invalid query parameters",
				Fields: err.(valid.Errors)})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// requireToken answers 401 unless the request carries a valid bearer token.
// A failure is logged with the reason, never with the token.
func (a *API) requireToken(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reason := ""
		h := r.Header.Get("Authorization")
		scheme, token, ok := strings.Cut(h, " ")
		switch {
		case h == "":
			reason = "missing Authorization header"
		case !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "":
			reason = "Authorization is not a Bearer token"
		default:
			t, err := a.store.TokenByHash(r.Context(), auth.HashToken(strings.TrimSpace(token)))
			if errors.Is(err, store.ErrNotFound) {
				reason = "unknown or revoked token"
				break
			}
			if err != nil {
				a.log.Error("checking api token", "err", err)
				writeJSONError(w, http.StatusServiceUnavailable, apiError{Code: "unavailable", Message: "cannot check the token now"})
				return
			}
			if t.LastUsedAt == nil || time.Since(*t.LastUsedAt) > time.Minute {
				if err := a.store.TouchToken(r.Context(), t.ID, time.Now()); err != nil {
					a.log.Warn("recording token use", "token_name", t.Name, "err", err)
				}
			}
			next.ServeHTTP(w, r)
			return
		}
		a.log.Warn("api authentication failed", "reason", reason, "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
		w.Header().Set("WWW-Authenticate", `Bearer realm="mailtrigger"`)
		writeJSONError(w, http.StatusUnauthorized, apiError{Code: "unauthorized", Message: reason})
	})
}

// apiError is the body of every error response.
type apiError struct {
	Code    string            `json:"code"`
	Message string            `json:"message"`
	Fields  map[string]string `json:"fields,omitempty"`
}

type errorBody struct {
	Error apiError `json:"error"`
	Flows []string `json:"flows,omitempty"`
}

// errBody is a request body that could not be read whole: it stopped
// arriving within the server's read timeout (408), or the client ended it
// before its declared length (400).
type errBody struct {
	status int
	code   string
	msg    string
	err    error
}

func (e *errBody) Error() string { return e.msg + ": " + e.err.Error() }
func (e *errBody) Unwrap() error { return e.err }

// bodyError classifies an error from reading a request body. A body larger
// than allowed keeps its *http.MaxBytesError (413).
func bodyError(err error) error {
	var tooLarge *http.MaxBytesError
	var ne net.Error
	switch {
	case errors.As(err, &tooLarge):
		return err
	case errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		return &errBody{status: http.StatusRequestTimeout, code: "request_timeout", msg: "the request body did not arrive in time", err: err}
	default: // io.ErrUnexpectedEOF, a reset connection, a broken chunked encoding
		return &errBody{status: http.StatusBadRequest, code: "incomplete_body", msg: "the request body ended before its declared length", err: err}
	}
}

// errBadJSON is a body that is not the JSON expected, without a field to blame.
type errBadJSON struct{ msg string }

func (e *errBadJSON) Error() string { return e.msg }

// writeError maps err to a status code and an error body. Unexpected errors
// are logged and answered 500 without detail.
func (a *API) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var ve valid.Errors
	var inUse *store.InUseError
	var tooLarge *http.MaxBytesError
	var bad *errBadJSON
	var body *errBody
	switch {
	case errors.As(err, &body):
		a.log.Info("request body not read whole", "method", r.Method, "path", r.URL.Path, "err", body.err)
		writeJSONError(w, body.status, apiError{Code: body.code, Message: body.msg})
	case errors.As(err, &ve):
		writeJSONError(w, http.StatusBadRequest, apiError{Code: "validation_failed", Message: "the request has invalid fields", Fields: ve})
	case errors.As(err, &bad):
		writeJSONError(w, http.StatusBadRequest, apiError{Code: "invalid_json", Message: bad.msg})
	case errors.As(err, &tooLarge):
		writeJSONError(w, http.StatusRequestEntityTooLarge, apiError{Code: "too_large", Message: fmt.Sprintf("request body is larger than %d bytes", tooLarge.Limit)})
	case errors.As(err, &inUse):
		writeJSON(w, http.StatusConflict, errorBody{
			Error: apiError{Code: "in_use", Message: inUse.Error() + ": change or delete those flows first"},
			Flows: inUse.Flows,
		})
	case errors.Is(err, store.ErrNotFound):
		writeJSONError(w, http.StatusNotFound, apiError{Code: "not_found", Message: err.Error()})
	case errors.Is(err, store.ErrConflict):
		writeJSONError(w, http.StatusConflict, apiError{Code: "conflict", Message: err.Error(),
			Fields: map[string]string{"name": "already taken (names are compared case-insensitively)"}})
	default:
		a.log.Error("api request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		writeJSONError(w, http.StatusInternalServerError, apiError{Code: "internal", Message: "internal error; see the server log"})
	}
}

func writeJSONError(w http.ResponseWriter, status int, e apiError) {
	writeJSON(w, status, errorBody{Error: e})
}

// writeJSON renders v into a buffer first, so that an encoding error never
// leaves half a response.
func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		http.Error(w, `{"error":{"code":"internal","message":"encoding response"}}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// decode reads one JSON value of at most MaxBodyBytes into v, refusing
// unknown fields. A type error or an unknown field names the field by its
// path (start.emailTrigger.subject, activities[0].url).
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		return bodyError(err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err = dec.Decode(v)
	if err == nil {
		if _, err := dec.Token(); !errors.Is(err, io.EOF) {
			return &errBadJSON{"request body has data after the JSON object"}
		}
		return nil
	}
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		if typeErr.Field == "" {
			return &errBadJSON{"request body must be a JSON object"}
		}
		return valid.Errors{typeErr.Field: "must be " + jsonKind(typeErr.Type.Kind().String())}
	case errors.As(err, &syntaxErr):
		return &errBadJSON{fmt.Sprintf("request body is not valid JSON (at byte %d)", syntaxErr.Offset)}
	case errors.Is(err, io.EOF):
		return &errBadJSON{"request body is empty; a JSON object is expected"}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &errBadJSON{"request body ends in the middle of the JSON"}
	}
	if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		name, _ := strconv.Unquote(f)
		if name == "" {
			name = f
		}
		var tree any
		if json.Unmarshal(data, &tree) == nil {
			if path := unknownPath(tree, reflect.TypeOf(v), ""); path != "" {
				name = path
			}
		}
		return valid.Errors{name: "unknown field"}
	}
	return &errBadJSON{"request body is not the JSON expected"}
}

// unknownPath walks a decoded JSON tree along the Go type it was decoded
// into and returns the path of the first key the type does not have.
func unknownPath(tree any, t reflect.Type, prefix string) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch node := tree.(type) {
	case map[string]any:
		if t.Kind() == reflect.Map {
			return ""
		}
		if t.Kind() != reflect.Struct {
			return ""
		}
		fields := map[string]reflect.Type{}
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" {
				continue
			}
			if name == "" {
				name = f.Name
			}
			fields[strings.ToLower(name)] = f.Type
		}
		for _, k := range slices.Sorted(maps.Keys(node)) {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			ft, ok := fields[strings.ToLower(k)]
			if !ok {
				return p
			}
			if found := unknownPath(node[k], ft, p); found != "" {
				return found
			}
		}
	case []any:
		if t.Kind() != reflect.Slice && t.Kind() != reflect.Array {
			return ""
		}
		for i, el := range node {
			if found := unknownPath(el, t.Elem(), fmt.Sprintf("%s[%d]", prefix, i)); found != "" {
				return found
			}
		}
	}
	return ""
}

func jsonKind(kind string) string {
	switch {
	case kind == "string":
		return "a string"
	case kind == "bool":
		return "true or false"
	case strings.HasPrefix(kind, "int") || strings.HasPrefix(kind, "uint"):
		return "a whole number"
	case strings.HasPrefix(kind, "float"):
		return "a number"
	case kind == "map" || kind == "struct":
		return "an object"
	case kind == "slice":
		return "an array"
	}
	return "of another type"
}

// List is the body of every list response.
type List[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"nextCursor,omitempty"`
}

const (
	defaultLimit = 100
	maxLimit     = 500
)

// paging reads limit and cursor from the query.
func paging(r *http.Request) (limit int, cursor string, err error) {
	e := valid.Errors{}
	limit = defaultLimit
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxLimit {
			e.Add("limit", fmt.Sprintf("must be a whole number from 1 to %d", maxLimit))
		}
		limit = n
	}
	if s := r.URL.Query().Get("cursor"); s != "" {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil || valid.Line(string(b)) != "" {
			e.Add("cursor", "not a cursor returned by this API")
		}
		cursor = string(b)
	}
	return limit, cursor, e.Err()
}

func encodeCursor(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// getCluster lists the replicas serving the database: on SQLite the one
// process, on PostgreSQL every replica with its heartbeat and the number of
// mailboxes it holds.
func (a *API) getCluster(w http.ResponseWriter, r *http.Request) {
	v, err := a.rt.Cluster(r.Context())
	if errors.Is(err, control.ErrUnavailable) {
		writeJSONError(w, http.StatusNotFound, apiError{Code: "not_found", Message: "this server does not keep a replica registry"})
		return
	}
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}
