package api_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pb33f/libopenapi/datamodel"

	"mailtrigger/internal/api"
)

// TestContractCatchesDrift: the check that every API test's traffic goes
// through fails an exchange that drifts from the document, and passes one
// that does not.
func TestContractCatchesDrift(t *testing.T) {
	c, err := loadContract()
	if err != nil {
		t.Fatal(err)
	}
	const run = `{"id":"r1","flow":"f","imap":"i","messageId":1,"status":"%s","attemptCount":0,"createdAt":"%s"}`
	errBody := `{"error":{"code":"not_found","message":"no such thing"}}`
	tests := []struct {
		name         string
		method, path string
		reqBody      string
		status       int
		respBody     string
		wantProblem  string // "" = none
	}{
		{"a documented answer", "GET", "/api/v1/imap", "", 200, `{"items":[]}`, ""},
		{"a page with its cursor", "GET", "/api/v1/imap?limit=1", "", 200, `{"items":[],"nextCursor":"abc"}`, ""},
		{"a field the document does not have", "GET", "/api/v1/imap", "", 200, `{"items":[],"extra":1}`, "does not match"},
		{"a required field missing", "GET", "/api/v1/imap", "", 200, `{"items":[{"name":"x"}]}`, "does not match"},
		{"a secret in an answer", "GET", "/api/v1/imap/x", "", 200, `{"name":"x","serverType":"imaps","type":"generic","description":"",` +
			`"enabled":true,"username":"u","hasPassword":true,"password":"hunter2","hasClientSecret":false,"folder":"INBOX",` +
			`"afterProcessing":"none","pollInterval":60,"backlog":"new","createdAt":"2026-01-01T00:00:00Z","updatedAt":"2026-01-01T00:00:00Z"}`,
			"does not match"},
		{"a status outside the enum", "GET", "/api/v1/runs/r1", "", 200, strings.ReplaceAll(strings.Replace(run, "%s", "lost", 1), "%s", "2026-01-01T00:00:00Z"), "does not match"},
		{"a time that is not a date-time", "GET", "/api/v1/runs/r1", "", 200, strings.ReplaceAll(strings.Replace(run, "%s", "failed", 1), "%s", "yesterday"), "does not match"},
		{"a run as documented", "GET", "/api/v1/runs/r1", "", 200, strings.ReplaceAll(strings.Replace(run, "%s", "failed", 1), "%s", "2026-01-01T00:00:00Z"), ""},
		{"an undocumented status", "GET", "/api/v1/imap", "", 418, errBody, "does not match"},
		{"an error that is not an Error", "GET", "/api/v1/imap/x", "", 404, `{"message":"gone"}`, "does not match"},
		{"an undocumented route that answers", "GET", "/api/v1/secret_route", "", 200, `{}`, "not in the OpenAPI document"},
		{"an undocumented method that answers", "PATCH", "/api/v1/imap/x", `{}`, 200, `{}`, "not in the OpenAPI document"},
		{"an undocumented route refused", "GET", "/api/v1/secret_route", "", 404, errBody, ""},
		{"an undocumented route refused without an Error", "GET", "/api/v1/secret_route", "", 404, `not found`, "is not an Error"},
		{"a request the document refuses, accepted", "POST", "/api/v1/flows", `{"bogus":1}`, 201, `{}`, "refuses the request"},
		{"a request the document refuses, refused", "POST", "/api/v1/flows", `{"bogus":1}`, 400,
			`{"error":{"code":"validation_failed","message":"bad","fields":{"bogus":"unknown field"}}}`, ""},
		{"validation_failed without its fields", "POST", "/api/v1/flows", `{"bogus":1}`, 400, `{"error":{"code":"validation_failed","message":"bad"}}`, "does not match"},
		{"in_use without its flows", "DELETE", "/api/v1/imap/x", "", 409, `{"error":{"code":"in_use","message":"used"}}`, "does not match"},
		{"in_use with its flows", "DELETE", "/api/v1/imap/x", "", 409, `{"error":{"code":"in_use","message":"used"},"flows":["f"]}`, ""},
		{"an error code outside the enum", "POST", "/api/v1/flows", `{"bogus":1}`, 400, `{"error":{"code":"oops","message":"bad"}}`, "does not match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, "http://127.0.0.1:1"+tt.path, strings.NewReader(tt.reqBody))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer mt_x")
			if tt.reqBody != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			resp := &http.Response{StatusCode: tt.status, Header: http.Header{"Content-Type": {"application/json; charset=utf-8"}},
				Body: io.NopCloser(strings.NewReader(tt.respBody)), Request: req}
			if !json.Valid([]byte(tt.respBody)) {
				resp.Header.Set("Content-Type", "text/plain")
			}
			problems := strings.Join(c.check(req, []byte(tt.reqBody), resp, []byte(tt.respBody)), "\n")
			switch {
			case tt.wantProblem == "" && problems != "":
				t.Errorf("got problems, want none:\n%s", problems)
			case tt.wantProblem != "" && !strings.Contains(problems, tt.wantProblem):
				t.Errorf("got problems %q, want one saying %q", problems, tt.wantProblem)
			}
		})
	}
}

// TestDocumentChecksCanFail: the validator's document checks refuse a
// broken document, so that TestOpenAPIDocumentIsValid means something.
func TestDocumentChecksCanFail(t *testing.T) {
	var doc map[string]any
	if err := json.Unmarshal(api.OpenAPI(), &doc); err != nil {
		t.Fatal(err)
	}
	delete(doc, "info") // required by the OpenAPI 3.1 schema
	doc["paths"].(map[string]any)["/api/v1/imap"].(map[string]any)["get"].(map[string]any)["operationId"] = 7
	data, _ := json.Marshal(doc)
	d, err := libopenapi.NewDocumentWithConfiguration(data, &datamodel.DocumentConfiguration{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	v, errs := validator.NewValidator(d)
	if len(errs) > 0 {
		t.Fatalf("building the validator: %v", errs)
	}
	ok, verrs := v.ValidateDocument()
	if ok {
		t.Fatal("a document without info and with a number for an operationId passed the document checks")
	}
	t.Logf("refused: %s", describe(verrs))
}
