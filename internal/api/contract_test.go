package api_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pb33f/libopenapi-validator/config"
	liberrors "github.com/pb33f/libopenapi-validator/errors"
	"github.com/pb33f/libopenapi-validator/helpers"
	"github.com/pb33f/libopenapi-validator/paths"
	"github.com/pb33f/libopenapi-validator/schema_validation"
	"github.com/pb33f/libopenapi/datamodel/high/base"
	v3 "github.com/pb33f/libopenapi/datamodel/high/v3"

	"mailtrigger/internal/api"
)

// contract is the OpenAPI document of the API, loaded once, with the
// validator the tests hold the API's traffic to.
type contract struct {
	doc     libopenapi.Document
	model   *v3.Document
	opts    *config.ValidationOptions
	v       validator.Validator
	schemas schema_validation.SchemaValidator
	errBody *base.Schema // components/schemas/Error
}

var (
	contractOnce sync.Once
	theContract  *contract
	contractErr  error
)

func validationOptions() []config.Option {
	return []config.Option{
		config.WithFormatAssertions(), // date-time, uri, int64
	}
}

// loadContract parses and builds the document kept in the repository.
func loadContract() (*contract, error) {
	contractOnce.Do(func() {
		doc, err := libopenapi.NewDocument(api.OpenAPI())
		if err != nil {
			contractErr = fmt.Errorf("parsing the OpenAPI document: %w", err)
			return
		}
		m, err := doc.BuildV3Model()
		if err != nil {
			contractErr = fmt.Errorf("building the OpenAPI model: %w", err)
			return
		}
		v, errs := validator.NewValidator(doc, validationOptions()...)
		if len(errs) > 0 {
			contractErr = fmt.Errorf("making the validator: %v", errs)
			return
		}
		c := &contract{doc: doc, model: &m.Model, opts: config.NewValidationOptions(validationOptions()...), v: v,
			schemas: schema_validation.NewSchemaValidator(validationOptions()...)}
		if p := m.Model.Components.Schemas.GetOrZero("Error"); p != nil {
			c.errBody = p.Schema()
		}
		if c.errBody == nil {
			contractErr = fmt.Errorf("the OpenAPI document has no components/schemas/Error")
			return
		}
		theContract = c
	})
	return theContract, contractErr
}

// check holds one exchange with the API to the document and returns what is
// wrong with it:
//   - a request to a route the document does not have must be answered 404
//     or 405 (401 without a valid token) with an error body, else the route
//     is undocumented;
//   - the answer must be one the document gives for that operation: status,
//     content type, headers and body;
//   - a request the document refuses must be refused (4xx): an API that
//     accepts it does what the document says it does not.
func (c *contract) check(req *http.Request, reqBody []byte, resp *http.Response, respBody []byte) []string {
	newReq := func() *http.Request {
		r := req.Clone(req.Context())
		r.Body = io.NopCloser(bytes.NewReader(reqBody))
		r.ContentLength = int64(len(reqBody))
		// The API reads every body as JSON, whatever its Content-Type
		// says (the document's info.description says so); a body sent
		// without one is checked as the JSON it is read as.
		if len(reqBody) > 0 && r.Header.Get("Content-Type") == "" {
			r.Header.Set("Content-Type", "application/json")
		}
		return r
	}
	newResp := func() *http.Response {
		r := *resp
		r.Body = io.NopCloser(bytes.NewReader(respBody))
		return &r
	}
	var problems []string
	if item, errs, _ := paths.FindPath(newReq(), c.model, c.opts); item == nil || routeMissing(errs) {
		// The token is checked before the route: without one, 401.
		switch resp.StatusCode {
		case http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusUnauthorized:
		default:
			return []string{fmt.Sprintf("the route is not in the OpenAPI document, yet the API answered %d (%s)", resp.StatusCode, describe(errs))}
		}
		if ok, errs := c.schemas.ValidateSchemaBytes(c.errBody, respBody); !ok {
			problems = append(problems, fmt.Sprintf("a %d answer to an undocumented route is not an Error: %s", resp.StatusCode, describe(errs)))
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			problems = append(problems, fmt.Sprintf("a %d answer to an undocumented route has Content-Type %q", resp.StatusCode, ct))
		}
		return problems
	}
	if ok, errs := c.v.ValidateHttpResponse(newReq(), newResp()); !ok {
		problems = append(problems, "the answer does not match the document: "+describe(errs))
	}
	if ok, errs := c.v.ValidateHttpRequestSync(newReq()); !ok && resp.StatusCode < 400 {
		problems = append(problems, fmt.Sprintf("the document refuses the request (%s), yet the API answered %d", describe(errs), resp.StatusCode))
	}
	return problems
}

func routeMissing(errs []*liberrors.ValidationError) bool {
	for _, e := range errs {
		if e.ValidationType == helpers.PathValidation || e.ValidationType == helpers.RequestValidation &&
			e.ValidationSubType == helpers.ValidationMissingOperation {
			return true
		}
	}
	return false
}

func describe(errs []*liberrors.ValidationError) string {
	var out []string
	for _, e := range errs {
		s := e.Message
		if e.Reason != "" && e.Reason != e.Message {
			s += ": " + e.Reason
		}
		for _, f := range e.SchemaValidationErrors {
			s += " [" + f.Error() + "]"
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return strings.Join(slices.Compact(out), "; ")
}

// contractCheck is an http.RoundTripper that holds every exchange with
// /api/v1 to the OpenAPI document, failing t on a mismatch.
type contractCheck struct {
	t    testing.TB
	next http.RoundTripper
}

func (cc *contractCheck) RoundTrip(req *http.Request) (*http.Response, error) {
	var reqBody []byte
	out := req
	if req.Body != nil && req.Body != http.NoBody {
		var err error
		reqBody, err = io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		out = req.Clone(req.Context())
		out.Body = io.NopCloser(bytes.NewReader(reqBody))
	}
	resp, err := cc.next.RoundTrip(out)
	if err != nil || !strings.HasPrefix(req.URL.Path, "/api/") {
		return resp, err
	}
	respBody, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(respBody))
	c, err := loadContract()
	if err != nil {
		cc.t.Errorf("OpenAPI contract: %v", err)
		return resp, nil
	}
	if problems := c.check(req, reqBody, resp, respBody); len(problems) > 0 {
		cc.t.Errorf("OpenAPI contract: %s %s → %d:\n\t%s\n\trequest body: %.300s\n\tanswer: %.300s", req.Method, req.URL.RequestURI(),
			resp.StatusCode, strings.Join(problems, "\n\t"), reqBody, respBody)
	}
	return resp, nil
}
