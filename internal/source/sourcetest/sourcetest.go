// Package sourcetest holds what the tests of the mail source clients
// (imapsource, pop3source, the shared dialer in package source) share: a
// server that never answers, a port nothing listens on, test messages. Only
// tests import it.
package sourcetest

import (
	"bytes"
	"fmt"
	"net"
	"strings"
	"testing"
)

// SilentServer listens on 127.0.0.1, accepts connections and never says a
// word; it and its connections are closed when t ends.
func SilentServer(t *testing.T) (host string, port int) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	a := l.Addr().(*net.TCPAddr)
	return a.IP.String(), a.Port
}

// FreePort returns a port on host nothing listens on.
func FreePort(t *testing.T, host string) int {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

// NewMessage returns message n with CRLF line ends and a body of about
// bodySize bytes.
func NewMessage(n, bodySize int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: Sender <sender@example.test>\r\n"+
		"To: <alice@example.test>\r\n"+
		"Subject: message %[1]d\r\n"+
		"Message-ID: <%[1]d.%[2]d@example.test>\r\n"+
		"Date: Mon, 24 Nov 2025 10:00:00 +0000\r\n"+
		"\r\n"+
		"Body of message %[1]d.\r\n", n, bodySize)
	line := strings.Repeat("0123456789", 7) + "abcd\r\n"
	for b.Len() < bodySize {
		b.WriteString(line)
	}
	return b.Bytes()
}

// NewLongLineMessage returns message n as NewMessage does, with a line of
// lineLen bytes in the middle of its body: message data that must not be
// taken for a line of the protocol, which clients bound.
func NewLongLineMessage(n, bodySize, lineLen int) []byte {
	raw := NewMessage(n, bodySize)
	mid := len(raw) / 2
	mid += bytes.Index(raw[mid:], []byte("\r\n")) + 2
	var b bytes.Buffer
	b.Write(raw[:mid])
	b.WriteString(strings.Repeat("L", lineLen) + "\r\n")
	b.Write(raw[mid:])
	return b.Bytes()
}
