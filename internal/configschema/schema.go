// Package configschema holds the JSON Schema of the configuration file that
// "mailtrigger export" writes and "mailtrigger apply" reads. The API serves
// it at /api/v1/config.schema.json, beside the OpenAPI document, so that
// editors can complete and check the file; apply checks files against it.
package configschema

import _ "embed"

// JSON is the schema (JSON Schema draft 2020-12).
//
//go:embed config.schema.json
var JSON []byte

// Path is where the API serves it.
const Path = "/api/v1/config.schema.json"
