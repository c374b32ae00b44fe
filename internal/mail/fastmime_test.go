package mail

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// agreementCorpus is every message of the package's tests: the cases of
// mail_test.go, the hostile shapes (small), the fuzz seeds, and awkward
// real-world samples.
func agreementCorpus() map[string][]byte {
	c := map[string][]byte{}
	for _, tt := range bodiesCases() {
		c["bodies/"+tt.name] = tt.raw
	}
	for _, tt := range malformedCases() {
		c["malformed/"+tt.name] = tt.raw
	}
	for name, raw := range adversarialInputs() {
		c["adversarial/"+name] = []byte(raw)
	}
	for _, tc := range hostileCorpus {
		c["hostile/"+tc.name] = tc.gen(16 << 10)
	}
	for i, s := range fuzzSeedMessages() {
		c[fmt.Sprintf("fuzzseed/%d", i)] = s
	}
	for i, s := range awkwardMessages() {
		c[fmt.Sprintf("awkward/%d", i)] = s
	}
	c["bench/20KB"] = benchMessage(false)
	c["bench/20KB+200KB_attachment"] = benchMessage(true)
	c["bench/20KB+8KB_attachment"] = benchMultipart()
	// A nested boundary that starts with the outer one, and content lines
	// that start with a boundary: content to enmime, as RFC 2046 says.
	c["prefix/nested"] = []byte("Subject: p\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n" +
		"Content-Type: multipart/alternative; boundary=\"b-alt\"\r\n\r\n--b-alt\r\nContent-Type: text/plain\r\n\r\nplain\r\n" +
		"--b-alt\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n--b-alt--\r\n--b\r\nContent-Type: application/pdf\r\n" +
		"Content-Disposition: attachment; filename=a.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--b--\r\n")
	c["prefix/content lines"] = []byte("Subject: p\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n" +
		"Content-Type: text/plain\r\n\r\n--bx is not a delimiter\r\n--b-x neither\r\nnor --b mid-line\r\n--b\r\n" +
		"Content-Type: text/plain\r\n\r\n--b-\r\nlast\r\n--b--\r\n")
	return c
}

// awkwardMessages are well-formed and nearly well-formed multipart messages
// as mailers write them, and the edge cases of enmime's boundary reader.
func awkwardMessages() [][]byte {
	outlook := msg("From: =?iso-8859-1?Q?J=FCrgen?= <j@example.org>", "To: a@example.com", "Subject: Rechnung",
		"Content-Type: multipart/mixed;", "\tboundary=\"_004_AM0PR01MB1234_\"", "MIME-Version: 1.0", "",
		"--_004_AM0PR01MB1234_",
		"Content-Type: multipart/alternative;", "\tboundary=\"_000_AM0PR01MB1234_\"", "",
		"--_000_AM0PR01MB1234_",
		"Content-Type: text/plain; charset=\"iso-8859-1\"", "Content-Transfer-Encoding: quoted-printable", "",
		"Gr=FC=DFe", "", "--_000_AM0PR01MB1234_",
		"Content-Type: text/html; charset=\"iso-8859-1\"", "Content-Transfer-Encoding: quoted-printable", "",
		"<html><body>Gr=FC=DFe</body></html>", "", "--_000_AM0PR01MB1234_--", "",
		"--_004_AM0PR01MB1234_",
		"Content-Type: application/pdf; name=\"Rechnung M=?iso-8859-1?Q?=E4rz?=.pdf\"",
		"Content-Description: Rechnung.pdf",
		"Content-Disposition: attachment;", "\tfilename=\"Rechnung.pdf\"; size=12;",
		"\tcreation-date=\"Tue, 01 Jul 2025 10:00:00 GMT\"", "Content-Transfer-Encoding: base64", "",
		"JVBERi0xLjQKJcfs", "", "--_004_AM0PR01MB1234_--", "")
	gmail := msg("MIME-Version: 1.0", "From: b@example.org", "Subject: hi",
		"Content-Type: multipart/alternative; boundary=\"000000000000a1b2c3\"", "",
		"--000000000000a1b2c3", "Content-Type: text/plain; charset=\"UTF-8\"", "", "caf\xc3\xa9", "",
		"--000000000000a1b2c3", "Content-Type: text/html; charset=\"UTF-8\"", "Content-Transfer-Encoding: quoted-printable", "",
		"<div dir=3D\"ltr\">caf=C3=A9</div>", "", "--000000000000a1b2c3--")
	lf := []byte("Content-Type: multipart/mixed; boundary=lf\n\npreamble\n--lf\nContent-Type: text/plain\n\none\n\n--lf\n" +
		"Content-Type: application/octet-stream\nContent-Disposition: attachment; filename=a.bin\n\n\x00\x01\r\n--lf--\nepilogue\n")
	// Well-formed structure, problems in the parts (they name the part).
	problems := msg("Subject: p", "Content-Type: multipart/mixed; boundary=o", "",
		"--o", "Content-Type: multipart/alternative; boundary=i", "",
		"--i", "Content-Type: text/plain; charset=x-klingon", "", "caf\xe9",
		"--i", "Content-Type: text/html", "Content-Transfer-Encoding: x-uuencode", "", "begin 644",
		"--i--",
		"--o", "Content-Type: application/pdf", "Content-Transfer-Encoding: base64", "", "JVB~ERi0xLjQK=",
		"--o--")
	var out [][]byte
	out = append(out, outlook, gmail, lf, problems, benchMultipart())
	// Variations of one message around the places the fast path is
	// careful about.
	for _, v := range []struct{ part, sep, after string }{
		{"text\r\n", "\r\n", ""},
		{"text\r\n\r\n", "\r\n", ""},
		{"text\r\r\n", "\r\n", ""},
		{"text\rx\n", "\n", ""},
		{"text\r\n\n", "\n", ""},
		{"text\n\r\n", "\r\n", ""},
		{"", "\r\n", ""},
		{"text", "\r\n", " \r\n"},
		{"text", "\r\n", "\t\r\n"},
		{"text", "\r\n", "x\r\n"},
		{"text", "\r\n", "--\r\n"},
		{"a --b inside", "\r\n", ""},
		{"text", "\n", "--"},
		{"text", "\r\n", "--junk"},
	} {
		for _, hdr := range []string{"", "Content-Type: text/plain\r\n", "Content-Type: text/plain\r\n \r\n", "content-type:text/html ;\r\n\tcharset=utf-8 \r\n",
			"X-A: 1\r\nContent-Type: image/png\r\nContent-ID: <a@b>\r\nContent-Type: text/plain\r\n", "Content-Type: text/plain; boundary=z\r\n",
			"Bad line\r\n", " starts folded\r\n", "Content-Type : text/plain\r\n", "Content-Type: multipart/mixed\r\n",
			"Content-Type: multipart/mixed; boundary=c\r\n"} {
			var b bytes.Buffer
			b.WriteString("Subject: v\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n")
			b.WriteString(hdr + "\r\n" + v.part + v.sep + "--b" + v.after + "\r\n" + "Content-Type: text/plain\r\n\r\nlast\r\n--b--\r\n")
			out = append(out, b.Bytes())
		}
	}
	return out
}

// benchMultipart is a typical 20 KB multipart message: text and HTML
// alternatives and an 8 KB PDF attachment.
func benchMultipart() []byte {
	var b bytes.Buffer
	b.WriteString("From: =?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?= <juergen@example.org>\r\nTo: support@example.com\r\n" +
		"Subject: Rechnung 2024-117\r\nMessage-ID: <bench2@example.org>\r\n" +
		"Date: Wed, 25 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"----=_Part_1_2.3\"\r\n\r\n" +
		"------=_Part_1_2.3\r\nContent-Type: multipart/alternative; boundary=\"----=_Part_4_5.6\"\r\n\r\n" +
		"------=_Part_4_5.6\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
	b.WriteString(strings.Repeat("Sehr geehrte Damen und Herren, anbei die Rechnung f=C3=BCr den Monat November.\r\n", 50))
	b.WriteString("------=_Part_4_5.6\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body>")
	b.WriteString(strings.Repeat("<p>Sehr geehrte Damen und Herren, anbei die Rechnung.</p>\r\n", 70))
	b.WriteString("</body></html>\r\n------=_Part_4_5.6--\r\n")
	b.WriteString("------=_Part_1_2.3\r\nContent-Type: application/pdf; name=rechnung.pdf\r\nContent-Disposition: attachment; filename=rechnung.pdf\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\n")
	enc := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("%PDF-1.4 binary"), 8<<10/15))
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n------=_Part_1_2.3--\r\n")
	return b.Bytes()
}

// checkAgrees parses raw on both paths and reports any difference; it
// returns whether the fast path took the body.
func checkAgrees(t *testing.T, raw []byte) bool {
	t.Helper()
	slow, usedSlow := parse(raw, false)
	fast, usedFast := parse(raw, true)
	if usedSlow {
		t.Fatal("the enmime path says it used the fast path")
	}
	// Only the fast path locates the parts it finds (the Layout is
	// checked against the message by TestLayoutAgrees).
	if usedFast && fast.Layout == nil {
		t.Error("the fast path took the message but gave no layout")
	}
	slowCopy, fastCopy := *slow, *fast
	slowCopy.Layout, fastCopy.Layout = nil, nil
	if d := messageDiff(&slowCopy, &fastCopy); d != "" {
		t.Errorf("fast path (taken: %v) differs from enmime path:\n%s", usedFast, d)
	}
	return usedFast
}

// messageDiff describes how b differs from a, field by field; "" if they are
// deeply equal.
func messageDiff(a, b *Message) string {
	if reflect.DeepEqual(a, b) {
		return ""
	}
	var d []string
	va, vb := reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem()
	for i := range va.NumField() {
		name := va.Type().Field(i).Name
		fa, fb := va.Field(i).Interface(), vb.Field(i).Interface()
		if name == "Attachments" {
			aa, ab := a.Attachments, b.Attachments
			if len(aa) != len(ab) {
				d = append(d, fmt.Sprintf("Attachments: %d, fast path %d", len(aa), len(ab)))
			}
			for j := range min(len(aa), len(ab)) {
				x, y := aa[j], ab[j]
				if reflect.DeepEqual(x, y) {
					continue
				}
				if (x.Content == nil) != (y.Content == nil) {
					d = append(d, fmt.Sprintf("Attachments[%d].Content nil: %v, fast path %v", j, x.Content == nil, y.Content == nil))
				}
				x.Content, y.Content = nil, nil
				d = append(d, fmt.Sprintf("Attachments[%d]: %+v (content %q)\n  fast path: %+v (content %q)", j, x, truncate(string(aa[j].Content), 200), y, truncate(string(ab[j].Content), 200)))
			}
			continue
		}
		if !reflect.DeepEqual(fa, fb) {
			d = append(d, fmt.Sprintf("%s: %s\n  fast path: %s", name, truncate(fmt.Sprintf("%#v", fa), 400), truncate(fmt.Sprintf("%#v", fb), 400)))
		}
	}
	return strings.Join(d, "\n")
}

// TestFastPathAgrees parses every message of the test corpus on both paths.
func TestFastPathAgrees(t *testing.T) {
	corpus := agreementCorpus()
	names := make([]string, 0, len(corpus))
	for name := range corpus {
		names = append(names, name)
	}
	sort.Strings(names)
	var taken []string
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			if checkAgrees(t, corpus[name]) {
				taken = append(taken, name)
			}
		})
	}
	t.Logf("the fast path took %d of %d messages", len(taken), len(names))
	// The differential test means something only if the fast path takes
	// the well-formed messages.
	for _, name := range []string{"bench/20KB", "bench/20KB+200KB_attachment", "bench/20KB+8KB_attachment",
		"bodies/multipart/mixed with attachments", "bodies/rfc 2231 examples", "bodies/inline image in multipart/related",
		"bodies/nested message/rfc822", "bodies/bare LF line endings", "prefix/nested", "awkward/0", "awkward/1", "awkward/2", "awkward/3"} {
		if !contains(taken, name) {
			t.Errorf("%s: the fast path did not take it, want it taken", name)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func FuzzFastPathAgrees(f *testing.F) {
	for _, raw := range agreementCorpus() {
		if len(raw) <= 64<<10 {
			f.Add(raw)
		}
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		checkAgrees(t, raw)
		// The same bytes as a part (its header and content) of a
		// well-formed message, where the fast path looks closest.
		framed := append([]byte("Subject: f\r\nContent-Type: multipart/mixed; boundary=fz\r\n\r\n--fz\r\n"), raw...)
		framed = append(framed, "\r\n--fz\r\nContent-Type: text/plain\r\n\r\nlast\r\n--fz--\r\n"...)
		checkAgrees(t, framed)
	})
}
