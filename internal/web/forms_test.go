package web

import (
	"bytes"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
)

// multipartBody is a multipart form of fields with a file part of size
// bytes, written as it is read, and its Content-Type.
func multipartBody(fields map[string]string, size int) (io.Reader, string) {
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		for k, v := range fields {
			mw.WriteField(k, v)
		}
		fw, err := mw.CreateFormFile("blob", "blob.bin")
		if err != nil {
			pw.CloseWithError(err)
			return
		}
		chunk := bytes.Repeat([]byte("A"), 64<<10)
		for n := 0; n < size; n += len(chunk) {
			if _, err := fw.Write(chunk[:min(len(chunk), size-n)]); err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		pw.CloseWithError(mw.Close())
	}()
	return pr, mw.FormDataContentType()
}

// TestLoginMultipartRefused: POST /login, which anyone may send, takes only
// a URL-encoded form of at most 64 KiB. A 40 MiB multipart upload (more
// than net/http keeps in memory, 32 MiB) is answered 415 and nothing is
// written to the temporary directory; a normal login still works.
func TestLoginMultipartRefused(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	h := newHarness(t, storetest.Open(t, store.SQLite), false)

	// Watch the temporary directory while the request runs: net/http
	// removes a multipart form's files when the handler returns.
	var seen atomic.Value
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			if es, _ := os.ReadDir(tmp); len(es) > 0 && seen.Load() == nil {
				seen.Store(es[0].Name())
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	body, ct := multipartBody(map[string]string{"username": adminName, "password": adminPassword}, 40<<20)
	req, err := http.NewRequest(http.MethodPost, h.url+"/login", body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Origin", h.url)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp := h.do(h.client(), req)
	close(stop)
	<-stopped
	if resp.StatusCode != http.StatusUnsupportedMediaType || !strings.Contains(resp.Body, "application/x-www-form-urlencoded") {
		t.Errorf("multipart upload to /login: got %d, want 415 naming the form encoding\n%s", resp.StatusCode, resp.Body)
	}
	if name := seen.Load(); name != nil {
		t.Errorf("multipart upload to /login wrote %v to the temporary directory, want nothing", name)
	}
	if strings.Contains(h.logs.String(), "user logged in") {
		t.Error("a multipart login logged in")
	}

	h.login(h.client())
}

// TestFormLimits: every UI form takes only URL-encoded bodies, the login
// form at most 64 KiB and the others at most 1 MiB; anything else is
// refused before a field is read, and changes nothing.
func TestFormLimits(t *testing.T) {
	h := newHarness(t, storetest.Open(t, store.SQLite), false)
	c := loggedIn(t, h)
	login := url.Values{"username": {adminName}, "password": {adminPassword}}
	// big is form v with a field that takes it over n bytes.
	big := func(v url.Values, n int) string {
		return v.Encode() + "&next=/" + strings.Repeat("a", n)
	}
	small, smallCT := multipartBody(map[string]string{"username": adminName, "password": adminPassword}, 10)
	smallBody, _ := io.ReadAll(small)
	tokenMP, tokenCT := multipartBody(map[string]string{"name": "from_multipart"}, 10)
	tokenBody, _ := io.ReadAll(tokenMP)
	for _, tc := range []struct {
		name, path, ct, body string
		client               *http.Client
		status               int
		want                 string
	}{
		{"login multipart", "/login", smallCT, string(smallBody), h.client(), 415, "must be sent as application/x-www-form-urlencoded"},
		{"login text", "/login", "text/plain", login.Encode(), h.client(), 415, "must be sent as application/x-www-form-urlencoded"},
		{"login no type", "/login", "", login.Encode(), h.client(), 415, "must be sent as application/x-www-form-urlencoded"},
		{"login over 64 KiB", "/login", "application/x-www-form-urlencoded", big(login, 64<<10), h.client(), 413, "larger than 64 KiB"},
		{"login with charset", "/login", "application/x-www-form-urlencoded;charset=UTF-8", login.Encode(), h.client(), 303, ""},
		{"token multipart", "/settings/tokens", tokenCT, string(tokenBody), c, 415, "must be sent as application/x-www-form-urlencoded"},
		{"token over 1 MiB", "/settings/tokens", "application/x-www-form-urlencoded", big(url.Values{"name": {"big"}}, 1<<20), c, 413, "larger than 1 MiB"},
		{"test multipart", "/imap/test", tokenCT, string(tokenBody), c, 415, `"error":"The form must be sent as application/x-www-form-urlencoded."`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := snapshotAll(t, h.st)
			req, err := http.NewRequest(http.MethodPost, h.url+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if tc.ct != "" {
				req.Header.Set("Content-Type", tc.ct)
			}
			req.Header.Set("Origin", h.url)
			req.Header.Set("Sec-Fetch-Site", "same-origin")
			resp := h.do(tc.client, req)
			if resp.StatusCode != tc.status || !strings.Contains(resp.Body, tc.want) {
				t.Errorf("got %d, want %d with %q\n%s", resp.StatusCode, tc.status, tc.want, resp.Body)
			}
			if tc.status != 303 {
				if after := snapshotAll(t, h.st); after != before {
					t.Error("a refused form changed something")
				}
			}
		})
	}
}
