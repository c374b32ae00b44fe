package api

import (
	"net/http"

	"mailtrigger/internal/configschema"
)

// configSchemaRoute serves the JSON Schema of the export/apply file, without
// a token (like the OpenAPI document): it describes, it reveals nothing.
func configSchemaRoute(handle func(pattern string, h http.Handler)) {
	handle("GET "+configschema.Path, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/schema+json")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(configschema.JSON)
	}))
}
