package e2e_test

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"mailtrigger/internal/testenv"
	"mailtrigger/internal/testwait"
	"mailtrigger/internal/tlsconf/tlstest"
)

// TestHTTPSWithCertificateFiles runs the binary with MAILTRIGGER_TLS_CERT and
// MAILTRIGGER_TLS_KEY: it serves HTTPS, serves a renewed certificate
// without a restart, redirects plain HTTP to HTTPS, and its session cookie
// is Secure.
func TestHTTPSWithCertificateFiles(t *testing.T) {
	certDir := t.TempDir()
	first, second := tlstest.NewPair(t, 2001), tlstest.NewPair(t, 2002)
	certPath, keyPath := first.Write(t, certDir)
	roots := tlstest.Pool(first, second)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	// The two ports were free a moment ago; another test's server may take
	// one first: then start again on new ones.
	var s *service
	var httpListen string
	for attempt := 1; ; attempt++ {
		httpListen = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
		s = newService(t, "MAILTRIGGER_TLS_CERT="+certPath, "MAILTRIGGER_TLS_KEY="+keyPath, "MAILTRIGGER_HTTP_LISTEN="+httpListen)
		if !startHTTPS(s, c, "https://"+s.listen+"/readyz", attempt < 3) {
			break
		}
		t.Logf("a port was taken (attempt %d): starting again on other ports", attempt)
	}
	base := "https://" + s.listen

	served := func(want string) func() error {
		return func() error {
			got, err := tlstest.Serial(s.listen, "127.0.0.1", roots)
			if err == nil && got != want {
				err = fmt.Errorf("serial %s served, want %s", got, want)
			}
			return err
		}
	}
	if err := served("2001")(); err != nil {
		s.fatalf("%v", err)
	}

	// Plain HTTP is redirected, path and query kept.
	resp, err := c.Get("http://" + httpListen + "/flows?state=on")
	if err != nil {
		s.fatalf("plain HTTP: %v", err)
	}
	resp.Body.Close()
	if want := base + "/flows?state=on"; resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != want {
		s.errorf("plain HTTP: got %d to %q, want 301 to %q", resp.StatusCode, resp.Header.Get("Location"), want)
	}

	// Logged in over HTTPS, the session cookie is Secure.
	form := url.Values{"username": {"admin"}, "password": {"e2e-admin-password"}}
	req, _ := http.NewRequest(http.MethodPost, base+"/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", base)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	if resp, err = c.Do(req); err != nil {
		s.fatalf("login: %v", err)
	}
	resp.Body.Close()
	cookie := ""
	for _, v := range resp.Header.Values("Set-Cookie") {
		if strings.HasPrefix(v, "mailtrigger_session=") {
			cookie = v
		}
	}
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(cookie, "; Secure") {
		s.errorf("login over HTTPS: got %d with session cookie %q, want 303 and a Secure cookie", resp.StatusCode, cookie)
	}

	// Renewed on disk: served by the running process.
	second.Write(t, certDir)
	if err := testwait.UntilErr(20*time.Second, served("2002")); err != nil {
		s.fatalf("after the certificate files were replaced: %v", err)
	}
	// The line is in the service's output once the test's copy of its
	// stderr has caught up, which may be a moment after the handshake.
	if err := testwait.UntilErr(5*time.Second, func() error {
		if !strings.Contains(s.out.String(), "reloaded TLS certificate") {
			return errors.New("no reload logged")
		}
		return nil
	}); err != nil {
		s.errorf("%v", err)
	}
	s.stop()
}

// startHTTPS starts "mailtrigger serve" like launch, and waits until ready
// answers 200 through c. When
// retryBind is set and the service exited because a port was taken, it
// returns true (start again on other ports).
func startHTTPS(s *service, c *http.Client, ready string, retryBind bool) (portTaken bool) {
	s.t.Helper()
	s.starts++
	cmd := exec.Command(binPath, "serve")
	cmd.Env = s.env
	cmd.Stdout = s.out
	cmd.Stderr = s.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	exited, result, err := testenv.StartLocked(cmd)
	if err != nil {
		s.fatalf("starting %s serve: %v", binPath, err)
	}
	s.cmd, s.exited, s.result = cmd, exited, result
	err = testwait.UntilErr(readyTimeout, func() error {
		select {
		case <-exited:
			return testenv.ErrExited
		default:
		}
		resp, err := c.Get(ready)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s answered %s", ready, resp.Status)
		}
		return nil
	})
	if errors.Is(err, testenv.ErrExited) {
		s.cmd = nil
		if retryBind && strings.Contains(s.out.String(), "address already in use") {
			return true
		}
		s.fatalf("the service exited during start: %v", result())
	} else if err != nil {
		s.fatalf("the service was not ready over HTTPS: %v", err)
	}
	return false
}
