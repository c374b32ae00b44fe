package api

import "net/http"

// RoutePatterns returns the patterns Routes registers, in order, for the
// test that holds them to the OpenAPI document.
func RoutePatterns() []string {
	var out []string
	New(Deps{}).routes(nil, func(pattern string, _ http.Handler) { out = append(out, pattern) })
	return out
}
