package mail

import (
	"bytes"
	"encoding/base64"
	"flag"
	"mime/quotedprintable"
	"strings"
	"testing"
)

// benchMessage is about 20 KB of text and HTML, with a 200 KB attachment
// when withAttachment is set: the shape of issue 7's backlog scenario.
func benchMessage(withAttachment bool) []byte {
	var b bytes.Buffer
	b.WriteString("From: =?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?= <juergen@example.org>\r\nTo: support@example.com\r\n" +
		"Subject: =?UTF-8?B?UmVjaG51bmcgw5xiZXJmw6RsbGln?= 2024-117\r\nMessage-ID: <bench@example.org>\r\n" +
		"Date: Wed, 25 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=outer\r\n\r\n" +
		"--outer\r\nContent-Type: multipart/alternative; boundary=inner\r\n\r\n" +
		"--inner\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
	line := "Sehr geehrte Damen und Herren, anbei die Rechnung f=C3=BCr den Monat November.\r\n"
	b.WriteString(strings.Repeat(line, 120))
	b.WriteString("--inner\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body>")
	b.WriteString(strings.Repeat("<p>Sehr geehrte Damen und Herren, anbei die Rechnung.</p>\r\n", 180))
	b.WriteString("</body></html>\r\n--inner--\r\n")
	if withAttachment {
		b.WriteString("--outer\r\nContent-Type: application/pdf; name=rechnung.pdf\r\nContent-Disposition: attachment; filename=rechnung.pdf\r\n" +
			"Content-Transfer-Encoding: base64\r\n\r\n")
		enc := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("%PDF-1.4 binary"), 200<<10/15))
		for len(enc) > 76 {
			b.WriteString(enc[:76] + "\r\n")
			enc = enc[76:]
		}
		b.WriteString(enc + "\r\n")
	}
	b.WriteString("--outer--\r\n")
	return b.Bytes()
}

// benchPlain is a 20 KB text/plain message without MIME structure.
func benchPlain() []byte {
	var b bytes.Buffer
	b.WriteString("From: =?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?= <juergen@example.org>\r\nTo: support@example.com\r\n" +
		"Subject: Rechnung 2024-117\r\nMessage-ID: <bench3@example.org>\r\nDate: Wed, 25 Nov 2026 10:00:00 +0000\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
	for b.Len() < 20<<10 {
		b.WriteString("Sehr geehrte Damen und Herren, anbei die Rechnung f=C3=BCr den Monat November.\r\n")
	}
	return b.Bytes()
}

// benchBacklog is the shape of the bench's backlog message (internal/bench's
// backlogMessage): about 9 KB of words, some with umlauts, as
// quoted-printable text and HTML alternatives.
func benchBacklog() []byte {
	words := []string{"invoice", "payment", "order", "delivery", "für", "Größe", "naïve", "cliente", "factura", "total",
		"amount", "due", "date", "reference", "customer", "account", "thank", "you", "regards", "please"}
	var text strings.Builder
	for i := 0; text.Len() < 9000; i++ {
		text.WriteString(words[(i*7+i/3)%len(words)])
		if i%12 == 11 {
			text.WriteString(".\r\n")
		} else {
			text.WriteByte(' ')
		}
	}
	qp := func(s string) string {
		var b strings.Builder
		w := quotedprintable.NewWriter(&b)
		_, _ = w.Write([]byte(s))
		_ = w.Close()
		return b.String()
	}
	var b bytes.Buffer
	b.WriteString("From: Billing <billing@example.org>\r\nTo: backlog@example.test\r\nSubject: Invoice 1\r\n" +
		"Message-ID: <backlog-1@bench.example.org>\r\nDate: Wed, 25 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/alternative; boundary=\"bench-1-alt\"\r\n\r\n" +
		"--bench-1-alt\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
	b.WriteString(qp(text.String()))
	b.WriteString("\r\n--bench-1-alt\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
	b.WriteString(qp("<html><body><p>" + strings.ReplaceAll(text.String(), ".\r\n", ".</p>\r\n<p>") + "</p></body></html>"))
	b.WriteString("\r\n--bench-1-alt--\r\n")
	return b.Bytes()
}

// benchFastPath lets BenchmarkParse measure the enmime path alone, as it
// was before the fast path: go test -bench Parse -args -fastpath=false
var benchFastPath = flag.Bool("fastpath", true, "BenchmarkParse: try the fast MIME path")

func BenchmarkParse(b *testing.B) {
	defer func(old bool) { fastPathEnabled = old }(fastPathEnabled)
	fastPathEnabled = *benchFastPath
	for _, tt := range []struct {
		name string
		raw  []byte
	}{
		{"20KB", benchMessage(false)},
		{"20KB+200KB_attachment", benchMessage(true)},
		{"20KB_multipart_with_attachment", benchMultipart()},
		{"20KB_plain_text", benchPlain()},
		{"20KB_backlog", benchBacklog()},
	} {
		b.Run(tt.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(tt.raw)))
			for b.Loop() {
				if m := Parse(tt.raw); len(m.ParseErrors) > 0 {
					b.Fatal(m.ParseErrors)
				}
			}
		})
	}
}

func BenchmarkParseHeader(b *testing.B) {
	raw := benchMessage(true)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseHeader(bytes.NewReader(raw), int64(len(raw))); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeHeader(b *testing.B) {
	for _, tt := range []struct{ name, raw string }{
		{"plain", "Invoice 2024-117 from Acme GmbH"},
		{"utf8_b", "=?UTF-8?B?UmVjaG51bmcgw5xiZXJmw6RsbGln?="},
		{"iso2022jp", "=?ISO-2022-JP?B?GyRCJDMkcyRLJEEkTxsoQg==?="},
		{"latin1_raw", "Rechnung f\xfcr M\xe4rz"},
	} {
		b.Run(tt.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				DecodeHeader(tt.raw)
			}
		})
	}
}

// BenchmarkParseFile parses a 5 MB message with a base64 attachment and
// quoted-printable text from memory.
func BenchmarkParseFile(b *testing.B) {
	var buf bytes.Buffer
	buf.Write(benchMessage(false)[:len(benchMessage(false))-len("--outer--\r\n")])
	buf.WriteString("--outer\r\nContent-Type: application/pdf; name=scan.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	enc := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("%PDF-1.4 binary"), 5<<20/15))
	for len(enc) > 76 {
		buf.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	buf.WriteString(enc + "\r\n--outer--\r\n")
	raw := buf.Bytes()
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if m := ParseFile(bytes.NewReader(raw), int64(len(raw))); len(m.ParseErrors) > 0 || len(m.Attachments) != 1 {
			b.Fatal(m.ParseErrors, len(m.Attachments))
		}
	}
}
