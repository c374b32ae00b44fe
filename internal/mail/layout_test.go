package mail

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"sort"
	"strings"
	"testing"
)

// layoutMessages are messages whose parts Parse must locate: every way a
// part can be encoded and every charset appendText reads, in single-part
// bodies and in well-formed multiparts (the fast path), nested, with an
// attached message, with problems in the parts.
func layoutMessages() map[string][]byte {
	utf16 := []byte{0xff, 0xfe}
	for _, r := range "Grüße €\r\nzwei" {
		utf16 = append(utf16, byte(r), byte(r>>8))
	}
	utf16be := []byte{0xfe, 0xff}
	for _, r := range "BOM big endian" {
		utf16be = append(utf16be, byte(r>>8), byte(r))
	}
	b64 := func(s []byte) string { return base64.StdEncoding.EncodeToString(s) }
	c := map[string][]byte{
		"single/qp latin-1": msg("Content-Type: text/plain; charset=iso-8859-1", "Content-Transfer-Encoding: quoted-printable", "",
			"Gr=FC=DFe, soft=", "break=3D ok   ", "=E4=", "bad =ZZ =4", "trail=20  ", ""),
		"single/windows-1252 8bit":     msg("Content-Type: text/plain; charset=windows-1252", "Content-Transfer-Encoding: 8bit", "", "\x80 caf\xe9 \x93q\x94"),
		"single/utf-16 BOM base64":     msg("Content-Type: text/plain; charset=utf-16", "Content-Transfer-Encoding: base64", "", b64(utf16)),
		"single/utf-16 BE BOM binary":  append(msg("Content-Type: text/plain; charset=UTF-16", "Content-Transfer-Encoding: binary", "", ""), utf16be...),
		"single/utf-8 BOM":             msg("Content-Type: text/plain; charset=utf-8", "", "\xef\xbb\xbfwith BOM\r\n\x00nul\r"),
		"single/invalid utf-8":         msg("Content-Type: text/plain; charset=utf-8", "", "caf\xe9 \xff\xfe ok"),
		"single/unknown charset":       msg("Content-Type: text/plain; charset=x-klingon", "", "caf\xe9"),
		"single/unknown encoding":      msg("Content-Type: text/plain", "Content-Transfer-Encoding: x-uuencode", "", "begin 644 a"),
		"single/base64 with junk":      msg("Content-Type: text/html; charset=utf-8", "Content-Transfer-Encoding: base64", "", "PHA+R3LD~vMOfZTw!vcD4=", "PHA+", "x"),
		"single/html meta charset":     msg("Content-Type: text/html", "Content-Transfer-Encoding: quoted-printable", "", "<meta charset=3D\"iso-8859-15\"><p>=A4 caf=E9</p>"),
		"single/shift_jis":             msg("Content-Type: text/plain; charset=shift_jis", "", "\x83e\x83X\x83g"),
		"single/gb2312 base64":         msg("Content-Type: text/plain; charset=\"gb2312\"", "Content-Transfer-Encoding: \"Base64\"", "", "xOO6ww=="),
		"single/attachment body":       msg("Content-Type: application/pdf; name=a.pdf", "Content-Transfer-Encoding: base64", "", "JVBERi0xLjQK", "JVBE"),
		"single/multipart no boundary": msg("Content-Type: multipart/mixed", "", "--x", "", "text", "--x--"),
		"single/empty body":            msg("Subject: nothing", "", ""),
		"single/no body":               msg("Subject: no empty line"),
		"single/message/rfc822":        msg("Content-Type: message/rfc822", "", "Subject: inner", "", "inner body"),
		"multipart/everything": msg("Subject: all", "Content-Type: multipart/mixed; boundary=\"o\"", "", "preamble",
			"--o", "Content-Type: multipart/alternative; boundary=a", "",
			"--a", "Content-Type: text/plain; charset=iso-8859-1", "Content-Transfer-Encoding: quoted-printable", "", "Gr=FC=DFe=", "",
			"--a", "Content-Type: multipart/related; boundary=r", "",
			"--r", "Content-Type: text/html; charset=windows-1252", "Content-Transfer-Encoding: 8bit", "", "<p>\x80 5</p>",
			"--r", "Content-Type: image/png", "Content-ID: <logo@x>", "Content-Transfer-Encoding: base64", "", "iVBO!Rw0K", "Gg==",
			"--r--", "epilogue r",
			"--a--",
			"--o", "Content-Type: text/plain; charset=utf-16", "Content-Transfer-Encoding: base64", "", b64(utf16),
			"--o", "Content-Type: message/rfc822", "",
			"From: b@example.org", "Subject: =?utf-8?q?Inner/=C3=BCber?=", "Content-Type: multipart/alternative; boundary=i", "",
			"--i", "Content-Type: text/plain", "", "inner text", "--i--",
			"--o", "Content-Type: text/csv; charset=windows-1252; name=\"prices.csv\"", "Content-Transfer-Encoding: quoted-printable", "", "caf=E9;1=", "",
			"--o", "Content-Type: application/octet-stream", "Content-Disposition: attachment; filename=a.bin", "Content-Transfer-Encoding: base64", "", "AAEC=AwQ", "B",
			"--o", "Content-Type: text/plain; charset=x-klingon", "", "caf\xe9",
			"--o", "Content-Type: text/html", "Content-Transfer-Encoding: x-uuencode", "", "begin",
			"--o", "Content-Type: multipart/mixed", "", "no boundary",
			"--o", "", "no header",
			"--o--", "epilogue"),
	}
	return c
}

// layoutCorpus is every message of the package's tests plus layoutMessages.
func layoutCorpus() map[string][]byte {
	c := agreementCorpus()
	for name, raw := range layoutMessages() {
		c["layout/"+name] = raw
	}
	return c
}

// checkLayout parses raw and, if it has a Layout, checks that the Layout
// gives the message's bodies and attachments; it returns whether it had one.
func checkLayout(t *testing.T, raw []byte) bool {
	t.Helper()
	m := Parse(raw)
	l := m.Layout
	if l == nil {
		return false
	}
	for _, list := range [][]Span{l.Text, l.HTML, l.Attachments} {
		for _, s := range list {
			if s.Off < 0 || s.Len < 0 || s.Off+s.Len > int64(len(raw)) {
				t.Fatalf("span %+v outside the message of %d bytes", s, len(raw))
			}
		}
	}
	text, html, err := l.Bodies(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("Bodies: %v", err)
	}
	if text != m.Text {
		t.Errorf("Bodies text: got %q, want Parse's %q", truncate(text, 300), truncate(m.Text, 300))
	}
	if html != m.HTML {
		t.Errorf("Bodies html: got %q, want Parse's %q", truncate(html, 300), truncate(m.HTML, 300))
	}
	if len(l.Attachments) != len(m.Attachments) {
		t.Fatalf("layout has %d attachments, message %d", len(l.Attachments), len(m.Attachments))
	}
	for n, a := range m.Attachments {
		r, err := l.Attachment(bytes.NewReader(raw), n)
		if err != nil {
			t.Fatalf("Attachment(%d): %v", n, err)
		}
		got, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("Attachment(%d): reading: %v", n, err)
		}
		if !bytes.Equal(got, a.Content) {
			t.Errorf("Attachment(%d): got %q, want Parse's content %q", n, truncate(string(got), 200), truncate(string(a.Content), 200))
		}
	}
	return true
}

// TestLayoutAgrees checks the layout of every message of the test corpus
// that has one against what Parse decoded.
func TestLayoutAgrees(t *testing.T) {
	corpus := layoutCorpus()
	names := make([]string, 0, len(corpus))
	for name := range corpus {
		names = append(names, name)
	}
	sort.Strings(names)
	var laidOut []string
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			if checkLayout(t, corpus[name]) {
				laidOut = append(laidOut, name)
			}
		})
	}
	t.Logf("%d of %d messages laid out", len(laidOut), len(names))
	// The property means something only if the well-formed messages are
	// laid out.
	want := []string{"bench/20KB", "bench/20KB+200KB_attachment", "bench/20KB+8KB_attachment",
		"bodies/multipart/mixed with attachments", "bodies/nested message/rfc822", "bodies/inline image in multipart/related",
		"awkward/0", "awkward/1", "awkward/2", "awkward/3"}
	for name := range layoutMessages() {
		want = append(want, "layout/"+name)
	}
	for _, name := range want {
		if !contains(laidOut, name) {
			t.Errorf("%s: no layout, want one", name)
		}
	}
}

// TestLayoutAttachmentsAndSpans pins down what a layout holds for one
// message: where its parts are, as written, and the content they give.
func TestLayoutAttachmentsAndSpans(t *testing.T) {
	raw := layoutMessages()["multipart/everything"]
	m := Parse(raw)
	if m.Layout == nil {
		t.Fatal("got no layout, want one")
	}
	var got []string
	for _, list := range []struct {
		name  string
		spans []Span
	}{{"text", m.Layout.Text}, {"html", m.Layout.HTML}, {"att", m.Layout.Attachments}} {
		for _, s := range list.spans {
			got = append(got, fmt.Sprintf("%s %q e=%q c=%q", list.name, raw[s.Off:s.Off+s.Len], s.Encoding, s.Charset))
		}
	}
	want := []string{
		`text "Gr=FC=DFe=\r\n" e="quoted-printable" c="iso-8859-1"`,
		`text "//5HAHIA/ADfAGUAIACsIA0ACgB6AHcAZQBpAA==" e="base64" c="utf-16"`,
		`text "caf\xe9" e="" c="x-klingon"`,
		`text "no boundary" e="" c=""`,
		`text "no header" e="" c=""`,
		`html "<p>\x80 5</p>" e="8bit" c="windows-1252"`,
		`html "begin" e="x-uuencode" c=""`,
		`att "iVBO!Rw0K\r\nGg==" e="base64" c=""`,
		`att "From: b@example.org\r\nSubject: =?utf-8?q?Inner/=C3=BCber?=\r\nContent-Type: multipart/alternative; boundary=i\r\n\r\n--i\r\nContent-Type: text/plain\r\n\r\ninner text\r\n--i--" e="" c=""`,
		`att "caf=E9;1=\r\n" e="quoted-printable" c=""`,
		`att "AAEC=AwQ\r\nB" e="base64" c=""`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got spans\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	checkLayout(t, raw)
}

// TestLayoutNoneFromEnmime: the lenient path does not locate its parts, so
// a message it took apart has no layout.
func TestLayoutNoneFromEnmime(t *testing.T) {
	raw := layoutMessages()["multipart/everything"]
	if m, _ := parse(raw, false); m.Layout != nil {
		t.Errorf("enmime path: got layout %+v, want none", m.Layout)
	}
	// A broken multipart the fast path refuses.
	broken := msg("Content-Type: multipart/mixed; boundary=b", "", "--b", "Content-Type: text/plain", "", "one", "--b ", "two", "--b--")
	if m := Parse(broken); m.Layout != nil {
		t.Errorf("broken multipart: got layout %+v, want none", m.Layout)
	}
	if m, _ := ParseHeader(bytes.NewReader(raw), int64(len(raw))); m.Layout != nil {
		t.Errorf("ParseHeader: got layout %+v, want none", m.Layout)
	}
}

func TestLayoutReadErrors(t *testing.T) {
	raw := layoutMessages()["multipart/everything"]
	m := Parse(raw)
	short := bytes.NewReader(raw[:len(raw)/2])
	if _, _, err := m.Layout.Bodies(short); err == nil {
		t.Error("Bodies of a truncated message: got nil error, want one")
	}
	if r, err := m.Layout.Attachment(short, len(m.Layout.Attachments)-1); err == nil {
		if _, err := io.ReadAll(r); err == nil {
			t.Error("Attachment of a truncated message: got nil error, want one")
		}
	}
	if _, err := m.Layout.Attachment(bytes.NewReader(raw), len(m.Layout.Attachments)); err == nil {
		t.Error("Attachment past the last: got nil error, want one")
	}
}

func FuzzLayoutAgrees(f *testing.F) {
	for _, raw := range fuzzSeedMessages() {
		f.Add(raw)
	}
	for _, raw := range layoutMessages() {
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		checkLayout(t, raw)
		// The same bytes as a part of a well-formed message, which the
		// fast path is likely to take.
		framed := append([]byte("Subject: f\r\nContent-Type: multipart/mixed; boundary=fz\r\n\r\n--fz\r\n"), raw...)
		framed = append(framed, "\r\n--fz\r\nContent-Type: text/plain\r\n\r\nlast\r\n--fz--\r\n"...)
		checkLayout(t, framed)
	})
}
