package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"mailtrigger/internal/client"
	"mailtrigger/internal/imapconf"
)

// mailbox is how the service reaches one mailbox.
type mailbox struct {
	name     string // the IMAP configuration's name
	host     string
	port     int
	user     string
	password string
	caPEM    []byte
	backlog  string
	// serverType ("" is imaps), afterProcessing ("" is none) and moveTo.
	serverType, after, moveTo string
	// rtt is the round trip put between the service and the server (a
	// delay proxy on port); 0 for none.
	rtt time.Duration
}

func (m mailbox) input(enabled bool, withPassword bool) map[string]any {
	serverType, after := m.serverType, m.after
	if serverType == "" {
		serverType = imapconf.ServerIMAPS
	}
	if after == "" {
		after = imapconf.AfterNone
	}
	in := map[string]any{"name": m.name, "serverType": serverType, "type": imapconf.TypeGeneric,
		"host": m.host, "port": m.port, "username": m.user, "caCert": string(m.caPEM), "backlog": m.backlog,
		"enabled": enabled, "afterProcessing": after}
	if m.moveTo != "" {
		in["moveTo"] = m.moveTo
	}
	if serverType == imapconf.ServerPOP3S {
		in["pollInterval"] = imapconf.MinPollInterval
	}
	if withPassword {
		in["password"] = m.password
	}
	return in
}

// createIMAP creates m's configuration through the API.
func createIMAP(ctx context.Context, api *client.Client, m mailbox, enabled bool) error {
	if err := api.Do(ctx, http.MethodPost, "/api/v1/imap", m.input(enabled, true), nil); err != nil {
		return fmt.Errorf("creating imap configuration %s: %w", m.name, err)
	}
	return nil
}

// enableIMAP turns m's configuration on (the password stays as stored).
func enableIMAP(ctx context.Context, api *client.Client, m mailbox) error {
	if err := api.Do(ctx, http.MethodPut, "/api/v1/imap/"+url.PathEscape(m.name), m.input(true, false), nil); err != nil {
		return fmt.Errorf("enabling imap configuration %s: %w", m.name, err)
	}
	return nil
}

// createFlow creates a flow on imap whose trigger matches subject (prefix)
// and whose one activity posts to hookURL.
func createFlow(ctx context.Context, api *client.Client, name, imap, subject, hookURL string) error {
	body := map[string]any{"name": name, "enabled": true,
		"start":      map[string]any{"emailTrigger": map[string]any{"imap": imap, "subject": subject, "match": "prefix"}},
		"activities": []any{map[string]any{"type": "webhook", "url": hookURL}}}
	if err := api.Do(ctx, http.MethodPost, "/api/v1/flows", body, nil); err != nil {
		return fmt.Errorf("creating flow %s: %w", name, err)
	}
	return nil
}

// waitState waits until the watcher of name is in state.
func waitState(ctx context.Context, api *client.Client, name, state string, within time.Duration) error {
	deadline := time.Now().Add(within)
	var last any
	for time.Now().Before(deadline) {
		v, err := api.GetIMAP(ctx, name)
		switch {
		case err != nil:
			last = err
		case v.Status == nil:
			last = "no status"
		case v.Status.State == state:
			return nil
		default:
			last = *v.Status
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("waiting for imap %s to be %s: not within %v; last %+v: %w", name, state, within, last, errTimeout)
}

// dialIMAPS logs in to host:port over implicit TLS.
func dialIMAPS(addr string, tc *tls.Config, user, password string, opts *imapclient.Options) (*imapclient.Client, error) {
	var o imapclient.Options
	if opts != nil {
		o = *opts
	}
	o.TLSConfig = tc
	c, err := imapclient.DialTLS(addr, &o)
	if err != nil {
		return nil, fmt.Errorf("dialing %s: %w", addr, err)
	}
	if err := c.Login(user, password).Wait(); err != nil {
		c.Close()
		return nil, fmt.Errorf("logging in to %s as %s: %w", addr, user, err)
	}
	return c, nil
}

// appendMessage appends raw to INBOX over c and waits for the server's OK.
func appendMessage(c *imapclient.Client, raw []byte) error {
	cmd := c.Append("INBOX", int64(len(raw)), nil)
	if _, err := cmd.Write(raw); err != nil {
		return fmt.Errorf("appending: %w", err)
	}
	if err := cmd.Close(); err != nil {
		return fmt.Errorf("appending: %w", err)
	}
	if _, err := cmd.Wait(); err != nil {
		return fmt.Errorf("appending: %w", err)
	}
	return nil
}

// smallMessage is a short text message with subject.
func smallMessage(subject, id string) []byte {
	return []byte("From: Sender <sender@example.org>\r\nTo: bench@example.test\r\nSubject: " + subject + "\r\n" +
		"Message-ID: <" + id + "@bench.example.org>\r\nDate: " + time.Now().Format(time.RFC1123Z) + "\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nA message for the bench.\r\n")
}

// backlogMessage returns a message of about 20 KB: quoted-printable text and
// HTML alternatives, and, when attach, a 200 KB base64 attachment.
func backlogMessage(i int, subject string, attach bool) []byte {
	rng := rand.New(rand.NewPCG(uint64(i), 7))
	words := []string{"invoice", "payment", "order", "delivery", "für", "Größe", "naïve", "cliente", "factura", "total",
		"amount", "due", "date", "reference", "customer", "account", "thank", "you", "regards", "please"}
	var text strings.Builder
	for text.Len() < 9000 {
		text.WriteString(words[rng.IntN(len(words))])
		if rng.IntN(12) == 0 {
			text.WriteString(".\r\n")
		} else {
			text.WriteByte(' ')
		}
	}
	var b bytes.Buffer
	boundary := fmt.Sprintf("bench-%d", i)
	fmt.Fprintf(&b, "From: Billing <billing@example.org>\r\nTo: backlog@example.test\r\nSubject: %s\r\n"+
		"Message-ID: <backlog-%d@bench.example.org>\r\nDate: Wed, 25 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n", subject, i)
	alt := boundary + "-alt"
	if attach {
		fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=%q\r\n\r\n--%s\r\n", boundary, boundary)
	}
	fmt.Fprintf(&b, "Content-Type: multipart/alternative; boundary=%q\r\n\r\n", alt)
	fmt.Fprintf(&b, "--%s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n", alt)
	b.WriteString(quotedPrintable(text.String()))
	fmt.Fprintf(&b, "\r\n--%s\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n", alt)
	b.WriteString(quotedPrintable("<html><body><p>" + strings.ReplaceAll(text.String(), ".\r\n", ".</p>\r\n<p>") + "</p></body></html>"))
	fmt.Fprintf(&b, "\r\n--%s--\r\n", alt)
	if attach {
		fmt.Fprintf(&b, "--%s\r\nContent-Type: application/pdf; name=\"statement-%d.pdf\"\r\nContent-Disposition: attachment; "+
			"filename=\"statement-%d.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n", boundary, i, i)
		data := make([]byte, 150<<10) // 200 KB in base64
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		writeBase64Lines(&b, data)
		fmt.Fprintf(&b, "--%s--\r\n", boundary)
	}
	return b.Bytes()
}

// quotedPrintable encodes s as quoted-printable with CRLF line breaks kept
// and soft breaks before 76 characters.
func quotedPrintable(s string) string {
	var b strings.Builder
	col := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\r' && i+1 < len(s) && s[i+1] == '\n' {
			b.WriteString("\r\n")
			i++
			col = 0
			continue
		}
		enc := string(c)
		if c == '=' || c >= 0x80 || c < 0x20 {
			enc = fmt.Sprintf("=%02X", c)
		}
		if col+len(enc) > 75 {
			b.WriteString("=\r\n")
			col = 0
		}
		b.WriteString(enc)
		col += len(enc)
	}
	return b.String()
}

// writeBase64Lines writes data as base64 in lines of 76 characters.
func writeBase64Lines(b *bytes.Buffer, data []byte) {
	line := make([]byte, 76)
	for len(data) > 0 {
		n := min(57, len(data))
		m := base64.StdEncoding.EncodedLen(n)
		base64.StdEncoding.Encode(line[:m], data[:n])
		b.Write(line[:m])
		b.WriteString("\r\n")
		data = data[n:]
	}
}

// bigMessage returns a message of at least size bytes: a short text and a
// base64 attachment.
func bigMessage(size int64, subject, id string) []byte {
	var b bytes.Buffer
	b.Grow(int(size) + 4096)
	fmt.Fprintf(&b, "From: Archive <archive@example.org>\r\nTo: big@example.test\r\nSubject: %s\r\n"+
		"Message-ID: <%s@bench.example.org>\r\nDate: Wed, 25 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"+
		"Content-Type: multipart/mixed; boundary=\"big\"\r\n\r\n--big\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"+
		"The archive is attached.\r\n--big\r\nContent-Type: application/octet-stream\r\n"+
		"Content-Disposition: attachment; filename=\"archive.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n", subject, id)
	rng := rand.NewChaCha8([32]byte{'b', 'i', 'g'})
	chunk := make([]byte, 57<<10)
	end := "--big--\r\n"
	for int64(b.Len()) < size-int64(len(end)) {
		_, _ = rng.Read(chunk)
		n := min(len(chunk), int(size-int64(len(end))-int64(b.Len()))/78*57)
		if n < 57 {
			break
		}
		writeBase64Lines(&b, chunk[:n])
	}
	b.WriteString(end)
	return b.Bytes()
}
