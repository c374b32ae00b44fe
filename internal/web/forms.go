package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"mime"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"
)

// maxFormBytes bounds a form body, as the API bounds a JSON body.
const maxFormBytes = 1 << 20

// maxLoginBytes bounds the login form's body: it is read before anyone is
// known, and its three fields fit in far less.
const maxLoginBytes = 64 << 10

// formError is why a form's body could not be read: the status to answer
// and a heading and message for the person who sent it.
type formError struct {
	status       int
	heading, msg string
}

// readForm reads r's body as a form of at most limit bytes into r.PostForm.
// Only application/x-www-form-urlencoded is accepted, as every form and
// fetch of the UI sends it: a multipart body is never parsed
// (Request.ParseMultipartForm, which PostFormValue and FormValue call,
// writes large file parts to the temporary directory).
func readForm(w http.ResponseWriter, r *http.Request, limit int64) *formError {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/x-www-form-urlencoded" {
		return &formError{http.StatusUnsupportedMediaType, "Unsupported form encoding",
			"The form must be sent as application/x-www-form-urlencoded."}
	}
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	if err := r.ParseForm(); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return &formError{http.StatusRequestEntityTooLarge, "Too much data", "The form is larger than " + sizeText(limit) + "."}
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return &formError{http.StatusRequestTimeout, "Request timeout", "The form did not arrive in time."}
		}
		return &formError{http.StatusBadRequest, "Bad request", "The form could not be read."}
	}
	return nil
}

// sizeText is n bytes in KiB or MiB, as the limits are set.
func sizeText(n int64) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d KiB", n>>10)
}

func (u *UI) parseForm(w http.ResponseWriter, r *http.Request) bool {
	if e := readForm(w, r, maxFormBytes); e != nil {
		u.errorPage(w, r, e.status, e.heading, e.msg)
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
