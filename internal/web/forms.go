package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"
)

// maxFormBytes bounds a form body, as the API bounds a JSON body.
const maxFormBytes = 1 << 20

func (u *UI) parseForm(w http.ResponseWriter, r *http.Request) bool {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			u.errorPage(w, r, http.StatusRequestEntityTooLarge, "Too much data", "The form is larger than 1 MiB.")
			return false
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			u.errorPage(w, r, http.StatusRequestTimeout, "Request timeout", "The form did not arrive in time.")
			return false
		}
		u.errorPage(w, r, http.StatusBadRequest, "Bad request", "The form could not be read.")
		return false
	}
	if k, m := formProblem(r.PostForm); k != "" {
		u.errorPage(w, r, http.StatusBadRequest, "Bad request", fmt.Sprintf("The form field %s %s.", k, m))
		return false
	}
	return true
}

// formProblem returns the first form field holding NUL or invalid UTF-8
// (which PostgreSQL refuses) and what is wrong with it. No browser sends
// them from a form; the fields' own rules (valid.Strings in Build) refuse
// the other control characters with the form shown again.
func formProblem(v url.Values) (field, msg string) {
	for _, k := range slices.Sorted(maps.Keys(v)) {
		for _, s := range append([]string{k}, v[k]...) {
			switch {
			case !utf8.ValidString(s):
				return k, "must be valid UTF-8"
			case strings.ContainsRune(s, 0):
				return k, "must not contain NUL characters"
			}
		}
	}
	return "", ""
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		http.Error(w, `{"error":{"code":"internal"}}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	w.Write(append(data, '\n'))
}
