package api

import (
	"bytes"
	_ "embed" // the OpenAPI document
	"net/http"
)

// openAPIDocument is the OpenAPI 3.1 document of every /api/v1 route, kept
// by hand beside the handlers. The tests of this package hold it to the
// API: they check it with an OpenAPI validator, validate every request and
// answer they make against it, and fail when a registered route is missing
// from it (see docs/api.md).
//
//go:embed openapi.json
var openAPIDocument []byte

// OpenAPIPath is where the document is served, without a token.
const OpenAPIPath = "/api/v1/openapi.json"

// OpenAPI returns the OpenAPI 3.1 document of the API (JSON).
func OpenAPI() []byte { return bytes.Clone(openAPIDocument) }

// serveOpenAPI answers the document. It is public: it describes the API,
// it holds nothing of this service's data.
func serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Write(openAPIDocument)
}
