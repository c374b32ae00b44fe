package web

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"mailtrigger/internal/control"
	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/store"
	"mailtrigger/internal/valid"
)

// imapTest tries the configuration in the form without saving it. A secret
// left empty is taken from the saved configuration the form edits (_orig).
func (u *UI) imapTest(w http.ResponseWriter, r *http.Request) {
	if e := readForm(w, r, maxFormBytes); e != nil {
		writeJSON(w, e.status, testAnswer{Error: e.msg})
		return
	}
	if k, m := formProblem(r.PostForm); k != "" {
		writeJSON(w, http.StatusBadRequest, testAnswer{Error: "Fix the marked fields first.", Fields: valid.Errors{k: m}})
		return
	}
	ctx := r.Context()
	in, e := inputFromValues(r.PostForm)
	var prev *imapconf.Config
	if orig := r.PostForm.Get("_orig"); orig != "" {
		c, err := u.store.GetIMAP(ctx, orig)
		if store.OnlySecret(err) {
			err = nil // its secret does not open: it must be given again
		}
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			u.log.Error("reading imap configuration", "imap", orig, "err", err)
			writeJSON(w, http.StatusInternalServerError, testAnswer{Error: "internal error; see the server log"})
			return
		}
		if err == nil {
			prev = &c
		}
	}
	// The name plays no part in a connection: a name still being typed
	// must not stop the test.
	name := "unsaved"
	if prev != nil {
		name = prev.Name
	}
	in.Name = &name
	c, err := imapconf.Build(in, prev)
	if e, err = merge(e, err); err != nil {
		writeJSON(w, http.StatusInternalServerError, testAnswer{Error: "internal error; see the server log"})
		return
	}
	if len(e) > 0 {
		writeJSON(w, http.StatusBadRequest, testAnswer{Error: "Fix the marked fields first.", Fields: e})
		return
	}
	c = imapconf.ForTest(c, prev)
	tctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	res, err := u.rt.Test(tctx, c)
	switch {
	case errors.Is(err, control.ErrUnavailable):
		writeJSON(w, http.StatusNotImplemented, testAnswer{Error: "testing connections is not available in this process"})
		return
	case err != nil:
		u.log.Error("testing imap connection", "imap", c.Name, "err", err)
		writeJSON(w, http.StatusInternalServerError, testAnswer{Error: "internal error; see the server log"})
		return
	}
	u.log.Info("imap connection tested", "imap", c.Name, "user", userFrom(ctx))
	writeJSON(w, http.StatusOK, inUIWords(res))
}

type testAnswer struct {
	OK     bool              `json:"ok"`
	Error  string            `json:"error,omitempty"`
	Fields map[string]string `json:"fields,omitempty"`
}

// inUIWords returns a test's result with its error in the UI's words
// (uiError); a result of another shape as it is.
func inUIWords(res any) any {
	data, err := json.Marshal(res)
	if err != nil {
		return res
	}
	var m map[string]any
	if json.Unmarshal(data, &m) != nil {
		return res
	}
	if e, ok := m["error"].(string); ok {
		m["error"] = uiError(e)
	}
	return m
}
