package testenv

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Recorder is a listener on 127.0.0.1 that keeps everything its clients send
// in plaintext: the stand-in for a server an attacker controls, to prove that
// a secret never reaches it. StartTLSRecorder ends TLS with a certificate
// of its own CA (CACertPEM) and forwards the plaintext to a real server, so
// that a mail client goes as far as logging in; StartHTTPRecorder answers
// every HTTP request with 400 invalid_client.
//
// Its methods may be called from any goroutine.
type Recorder struct {
	// Host and Port are where it listens; URL is set for an HTTP recorder.
	Host      string
	Port      int
	URL       string
	CACertPEM []byte

	mu   sync.Mutex
	got  bytes.Buffer
	hits int
}

// StartTLSRecorder listens with TLS on 127.0.0.1 and forwards each
// connection's plaintext to upstream (host:port) over TLS with upstreamTLS.
// It is closed when the test ends.
func StartTLSRecorder(t testing.TB, upstream string, upstreamTLS *tls.Config) *Recorder {
	t.Helper()
	caPEM, certPEM, keyPEM, err := Certificates("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	r := &Recorder{Host: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port, CACertPEM: caPEM}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.mu.Lock()
			r.hits++
			r.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				d := &net.Dialer{Timeout: proxyDialTimeout}
				up, err := tls.DialWithDialer(d, "tcp", upstream, upstreamTLS)
				if err != nil {
					return
				}
				defer up.Close()
				deadline := time.Now().Add(time.Minute)
				c.SetDeadline(deadline)
				up.SetDeadline(deadline)
				done := make(chan struct{})
				go func() {
					io.Copy(c, up)
					c.Close()
					close(done)
				}()
				io.Copy(io.MultiWriter(up, r), c)
				up.Close()
				<-done
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return r
}

// StartHTTPRecorder starts a plain HTTP server on 127.0.0.1 that records
// every request (head and body) and answers 400 invalid_client. It is
// closed when the test ends.
func StartHTTPRecorder(t testing.TB) *Recorder {
	t.Helper()
	r := &Recorder{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		dump, _ := httputil.DumpRequest(req, true)
		r.mu.Lock()
		r.hits++
		r.got.Write(dump)
		r.got.WriteString("\n")
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		w.Write([]byte(`{"error":"invalid_client"}`))
	}))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	r.URL, r.Host = srv.URL, u.Hostname()
	r.Port, _ = strconv.Atoi(u.Port())
	return r
}

// Write records p.
func (r *Recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got.Write(p)
}

// Hits returns how many connections (TLS) or requests (HTTP) it received.
func (r *Recorder) Hits() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.hits
}

// Received returns everything recorded so far.
func (r *Recorder) Received() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got.String()
}

// Saw reports whether secret was received in any of the forms a client
// sends it: as is, URL-encoded (a form body), or inside a base64 token (SASL
// PLAIN, XOAUTH2, HTTP basic authentication).
func (r *Recorder) Saw(secret string) bool {
	got := r.Received()
	if strings.Contains(got, secret) || strings.Contains(got, url.QueryEscape(secret)) {
		return true
	}
	for _, f := range strings.FieldsFunc(got, func(c rune) bool { return c == ' ' || c == '\r' || c == '\n' || c == '"' }) {
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding} {
			if dec, err := enc.DecodeString(f); err == nil && bytes.Contains(dec, []byte(secret)) {
				return true
			}
		}
	}
	return false
}
