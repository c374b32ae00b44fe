package mail

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime/quotedprintable"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"sort"
	"strings"
	"testing"
	"unicode/utf8"
)

// parseFileDifferences: where ParseFile may differ from Parse.
//
// For every message: the header fields (MessageID, Subject, From, To, Cc,
// ReplyTo, Date), DedupeKey and Size are the same (the header section is
// read the same way) unless the header section is over 4 MiB.
//
// For a message Parse lays out (m.Layout != nil: a single part, a
// multipart Parse keeps as text because of its shape, or a well-formed
// multipart its fast path took) everything else is the same too:
// ParseErrors, the attachments' Filename, ContentType, Size, SHA256,
// Inline and ContentID, and the Layout.
//
// For a broken multipart, which Parse hands to enmime: the parts are those
// of ParseFile's delimiter scan (shapeScan's, innermost boundary first,
// delimiter lines may have trailing white space; a part header ends at its
// first empty line or first line that is not a field; an unclosed part runs
// to the end of the body), so the attachments and body parts can differ,
// and ParseErrors lacks what enmime reports about the structure (malformed
// part headers, boundaries not closed). Either way ParseFile's attachments
// have the size and SHA-256 of what its Layout gives.

// checkFileMessage checks what every ParseFile result promises for raw.
func checkFileMessage(t *testing.T, f *Message, raw []byte) {
	t.Helper()
	if f.Layout == nil {
		t.Fatal("ParseFile: got no layout, want one")
	}
	if f.Text != "" || f.HTML != "" {
		t.Errorf("ParseFile: got text %q html %q, want them empty", truncate(f.Text, 100), truncate(f.HTML, 100))
	}
	if f.Size != int64(len(raw)) {
		t.Errorf("ParseFile: size %d, want %d", f.Size, len(raw))
	}
	strs := append([]string{f.MessageID, f.Subject}, f.ParseErrors...)
	for _, l := range [][]Address{f.From, f.To, f.Cc, f.ReplyTo} {
		if l == nil {
			t.Errorf("ParseFile: got nil address list, want non-nil")
		}
		for _, a := range l {
			strs = append(strs, a.Name, a.Address)
		}
	}
	for _, a := range f.Attachments {
		strs = append(strs, a.Filename, a.ContentType, a.ContentID)
	}
	for _, s := range strs {
		if !utf8.ValidString(s) || strings.Contains(s, "\x00") {
			t.Errorf("ParseFile: got string %q, want valid UTF-8 without NUL", s)
		}
	}
	for _, p := range f.ParseErrors {
		if strings.Contains(p, "internal error") || strings.Contains(p, "reading message") {
			t.Errorf("ParseFile: got parse error %q", p)
		}
	}
	if len(f.Layout.Attachments) != len(f.Attachments) {
		t.Fatalf("ParseFile: layout has %d attachments, message %d", len(f.Layout.Attachments), len(f.Attachments))
	}
	for _, list := range [][]Span{f.Layout.Text, f.Layout.HTML, f.Layout.Attachments} {
		for _, s := range list {
			if s.Off < 0 || s.Len < 0 || s.Off+s.Len > int64(len(raw)) {
				t.Fatalf("ParseFile: span %+v outside the message of %d bytes", s, len(raw))
			}
		}
	}
	if _, _, err := f.Layout.Bodies(bytes.NewReader(raw)); err != nil {
		t.Errorf("ParseFile: Bodies: %v", err)
	}
	for n, a := range f.Attachments {
		if a.Content != nil {
			t.Errorf("ParseFile: attachment %d has content, want none", n)
		}
		r, err := f.Layout.Attachment(bytes.NewReader(raw), n)
		if err != nil {
			t.Fatalf("ParseFile: Attachment(%d): %v", n, err)
		}
		content, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("ParseFile: Attachment(%d): %v", n, err)
		}
		sum := sha256.Sum256(content)
		if a.Size != int64(len(content)) || a.SHA256 != hex.EncodeToString(sum[:]) {
			t.Errorf("ParseFile: attachment %d: size %d sha256 %s, want those of what the layout gives (%d bytes)", n, a.Size, a.SHA256, len(content))
		}
	}
}

// attachmentMeta is an attachment without its content.
func attachmentMeta(as []Attachment) []Attachment {
	out := make([]Attachment, len(as))
	for i, a := range as {
		a.Content = nil
		out[i] = a
	}
	return out
}

// checkParseFileAgrees parses raw with Parse and ParseFile and reports the
// differences parseFileDifferences does not allow; it returns whether Parse
// laid the message out (and everything was compared).
func checkParseFileAgrees(t *testing.T, raw []byte) bool {
	t.Helper()
	m := Parse(raw)
	f := ParseFile(bytes.NewReader(raw), int64(len(raw)))
	checkFileMessage(t, f, raw)
	got := []any{f.MessageID, f.Subject, f.From, f.To, f.Cc, f.ReplyTo, f.Date, f.Size, f.DedupeKey()}
	want := []any{m.MessageID, m.Subject, m.From, m.To, m.Cc, m.ReplyTo, m.Date, m.Size, m.DedupeKey()}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseFile header fields\n%+v\nwant Parse's\n%+v", got, want)
	}
	if m.Layout == nil {
		return false
	}
	if !reflect.DeepEqual(f.ParseErrors, m.ParseErrors) {
		t.Errorf("ParseFile problems\n%q\nwant Parse's\n%q", f.ParseErrors, m.ParseErrors)
	}
	if fa, ma := attachmentMeta(f.Attachments), attachmentMeta(m.Attachments); !reflect.DeepEqual(fa, ma) {
		t.Errorf("ParseFile attachments\n%+v\nwant Parse's\n%+v", fa, ma)
	}
	if !reflect.DeepEqual(f.Layout, m.Layout) {
		t.Errorf("ParseFile layout\n%+v\nwant Parse's\n%+v", f.Layout, m.Layout)
	}
	return true
}

func TestParseFileAgrees(t *testing.T) {
	corpus := layoutCorpus()
	for i := range 200 {
		corpus[fmt.Sprintf("generated/%d", i)] = genMessage(rand.New(rand.NewPCG(uint64(i), 15)))
	}
	for name, raw := range longLineMessages() {
		corpus["long/"+name] = raw
	}
	names := make([]string, 0, len(corpus))
	for name := range corpus {
		names = append(names, name)
	}
	sort.Strings(names)
	var compared []string
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			if checkParseFileAgrees(t, corpus[name]) {
				compared = append(compared, name)
			}
		})
	}
	t.Logf("%d of %d messages compared in full", len(compared), len(names))
	want := []string{"bench/20KB", "bench/20KB+200KB_attachment", "bench/20KB+8KB_attachment",
		"bodies/nested message/rfc822", "bodies/multipart/digest default type", "awkward/0", "awkward/2", "awkward/3",
		"hostile/deep_nesting", "hostile/base64_garbage", "hostile/quoted_printable", "hostile/charset_conversion", "hostile/nested_messages",
		"malformed/unknown transfer encoding", "fuzzseed/0"}
	for name := range layoutMessages() {
		want = append(want, "layout/"+name)
	}
	for i := range 200 {
		want = append(want, fmt.Sprintf("generated/%d", i))
	}
	for name := range longLineMessages() {
		if name != "long part header" { // over the fast path's bounds
			want = append(want, "long/"+name)
		}
	}
	for _, name := range want {
		if _, ok := corpus[name]; !ok {
			t.Errorf("%s: not in the corpus", name)
		} else if !contains(compared, name) {
			t.Errorf("%s: Parse did not lay it out, want it compared in full", name)
		}
	}
}

// longLineMessages have lines longer than ParseFile's buffers, in the
// content and in headers, and white space runs longer than what the
// quoted-printable decoder keeps.
func longLineMessages() map[string][]byte {
	b64 := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("binary\x00\xff"), 30<<10))
	ws := strings.Repeat(" \t", 40<<10)
	return map[string][]byte{
		"base64 on one line": msg("Content-Type: multipart/mixed; boundary=b", "", "--b", "Content-Type: application/octet-stream",
			"Content-Transfer-Encoding: base64", "", b64, "--b", "", "after", "--b--"),
		"qp white space": msg("Content-Type: multipart/alternative; boundary=b", "", "--b", "Content-Type: text/plain; charset=utf-8",
			"Content-Transfer-Encoding: quoted-printable", "", "a"+ws+"b"+ws, "c"+ws+"=", "d", "--b",
			"Content-Type: text/html", "Content-Transfer-Encoding: quoted-printable", "", strings.Repeat("<p>x</p>", 10<<10)+"<meta charset=3Dkoi8-r>\xf0", "--b--"),
		"long part header": msg("Content-Type: multipart/mixed; boundary=b", "", "--b", "Content-Type: application/pdf;",
			" name=\""+strings.Repeat("n", 70<<10)+".pdf\"", "X-Long: "+strings.Repeat("x", 200<<10), "", "%PDF", "--b--"),
		"long body line single part": msg("Content-Type: text/plain; charset=utf-8", "", strings.Repeat("caf\xc3\xa9 ", 50<<10)+"\xff", "end"),
		"attached message without a name": msg("Content-Type: multipart/mixed; boundary=b", "", "--b", "Content-Type: message/rfc822",
			"Content-Transfer-Encoding: base64", "", base64.StdEncoding.EncodeToString([]byte("X-Pad: "+strings.Repeat("p", 100<<10)+"\r\nSubject: far down\r\n\r\nbody")), "--b--"),
	}
}

// genMessage generates a well-formed message: nested multiparts of text,
// HTML and attachments in the usual encodings and charsets, with CRLF or
// LF line breaks.
func genMessage(rng *rand.Rand) []byte {
	eol := "\r\n"
	if rng.IntN(5) == 0 {
		eol = "\n"
	}
	var b strings.Builder
	line := func(s string) { b.WriteString(s + eol) }
	line("From: =?utf-8?q?J=C3=BCrgen?= <j@example.org>")
	line("To: a@example.com, b@example.com")
	line(fmt.Sprintf("Subject: generated %d", rng.IntN(1000)))
	line(fmt.Sprintf("Message-ID: <gen%d@example.org>", rng.IntN(1e6)))
	line("Date: Wed, 25 Nov 2026 10:00:00 +0100")
	line("MIME-Version: 1.0")
	boundaries := 0
	var part func(depth int)
	content := func() []byte {
		words := []string{"Grüße", "caf\xc3\xa9", "line", "=", " ", "\t", "€", "a", "b", "long-word-without-break"}
		var c []byte
		for range rng.IntN(60) {
			c = append(c, words[rng.IntN(len(words))]...)
			if rng.IntN(8) == 0 {
				c = append(c, "\r\n"...)
			}
		}
		if rng.IntN(4) == 0 {
			for range rng.IntN(300) {
				c = append(c, byte(rng.IntN(256)))
			}
		}
		return c
	}
	encode := func(c []byte) (string, string) {
		switch rng.IntN(4) {
		case 0:
			s := base64.StdEncoding.EncodeToString(c)
			var out []string
			for len(s) > 76 {
				out, s = append(out, s[:76]), s[76:]
			}
			return "base64", strings.Join(append(out, s), eol)
		case 1:
			var qb bytes.Buffer
			w := quotedprintable.NewWriter(&qb)
			w.Write(c)
			w.Close()
			return "quoted-printable", strings.ReplaceAll(qb.String(), "\r\n", eol)
		case 2:
			return "8bit", strings.ToValidUTF8(strings.NewReplacer("\r", "", "\n", "").Replace(string(c)), "?")
		}
		return "", strings.ToValidUTF8(strings.NewReplacer("\r", "", "\n", "").Replace(string(c)), "?")
	}
	leaf := func() {
		kinds := []string{"text/plain; charset=utf-8", "text/plain; charset=iso-8859-1", "text/html; charset=windows-1252",
			"text/html", "text/plain", "application/pdf; name=\"r.pdf\"", "image/png", "message/rfc822", "text/csv; name=a.csv"}
		ct := kinds[rng.IntN(len(kinds))]
		if ct == "message/rfc822" {
			line("Content-Type: message/rfc822")
			line("")
			b.WriteString("Subject: inner " + fmt.Sprint(rng.IntN(9)) + eol + eol + "inner body")
			return
		}
		line("Content-Type: " + ct)
		switch rng.IntN(4) {
		case 0:
			line("Content-Disposition: attachment; filename=\"f" + fmt.Sprint(rng.IntN(9)) + ".bin\"")
		case 1:
			line("Content-Disposition: inline")
		case 2:
			line("Content-ID: <c" + fmt.Sprint(rng.IntN(9)) + "@x>")
		}
		cte, body := encode(content())
		if cte != "" {
			line("Content-Transfer-Encoding: " + cte)
		}
		line("")
		b.WriteString(body)
	}
	part = func(depth int) {
		if depth > 3 || rng.IntN(3) > 0 {
			leaf()
			return
		}
		boundaries++
		bd := fmt.Sprintf("=_b%d_%d", boundaries, rng.IntN(1000))
		types := []string{"mixed", "alternative", "related"}
		line(fmt.Sprintf("Content-Type: multipart/%s; boundary=\"%s\"", types[rng.IntN(len(types))], bd))
		line("")
		if rng.IntN(2) == 0 {
			line("preamble")
		}
		for range 1 + rng.IntN(4) {
			line("--" + bd)
			part(depth + 1)
			b.WriteString(eol)
		}
		b.WriteString("--" + bd + "--")
		if rng.IntN(2) == 0 {
			b.WriteString(eol + "epilogue")
		}
	}
	part(0)
	b.WriteString(eol)
	return []byte(b.String())
}

func FuzzParseFileAgrees(f *testing.F) {
	for _, raw := range layoutCorpus() {
		if len(raw) <= 64<<10 {
			f.Add(raw)
		}
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		checkParseFileAgrees(t, raw)
		framed := append([]byte("Subject: f\r\nContent-Type: multipart/mixed; boundary=fz\r\n\r\n--fz\r\n"), raw...)
		framed = append(framed, "\r\n--fz\r\nContent-Type: text/plain\r\n\r\nlast\r\n--fz--\r\n"...)
		checkParseFileAgrees(t, framed)
	})
}

// bigMessage writes a message of about size bytes with a base64 attachment
// to a file in dir and returns its path and the attachment's content hash.
func bigMessage(t *testing.T, dir string, size int) (string, string) {
	t.Helper()
	path := filepath.Join(dir, "big.eml")
	file, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	w := &errWriter{w: file}
	w.write("From: a@example.org\r\nSubject: big\r\nMessage-ID: <big@example.org>\r\nContent-Type: multipart/mixed; boundary=big\r\n\r\n" +
		"--big\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee the scan.\r\n" +
		"--big\r\nContent-Type: application/pdf; name=scan.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	sum := sha256.New()
	chunk := make([]byte, 57*1000) // 1000 lines of 76 characters
	rng := rand.New(rand.NewPCG(1, 2))
	enc := make([]byte, 0, 78*1000)
	for written := 0; written < size*3/4; written += len(chunk) {
		for i := range chunk {
			chunk[i] = byte(rng.Uint32())
		}
		sum.Write(chunk)
		enc = enc[:0]
		for i := 0; i < len(chunk); i += 57 {
			enc = base64.StdEncoding.AppendEncode(enc, chunk[i:i+57])
			enc = append(enc, "\r\n"...)
		}
		w.write(string(enc))
	}
	w.write("--big--\r\n")
	if w.err != nil {
		t.Fatal(w.err)
	}
	return path, hex.EncodeToString(sum.Sum(nil))
}

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) write(s string) {
	if e.err == nil {
		_, e.err = io.WriteString(e.w, s)
	}
}

// TestParseFileBigMessageMemory parses a 50 MB message from a file and reads
// its attachment back through the layout: what is allocated in all stays
// far below the message's size.
func TestParseFileBigMessageMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a 50 MB file")
	}
	path, want := bigMessage(t, t.TempDir(), 50<<20)
	file, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	st, err := file.Stat()
	if err != nil {
		t.Fatal(err)
	}
	const bound = 4 << 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	m := ParseFile(file, st.Size())
	runtime.ReadMemStats(&after)
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("ParseFile of %d bytes allocated %d bytes in all", st.Size(), alloc)
	if alloc > bound {
		t.Errorf("ParseFile of %d bytes allocated %d bytes, want at most %d", st.Size(), alloc, bound)
	}
	if len(m.ParseErrors) > 0 || len(m.Attachments) != 1 || m.Attachments[0].SHA256 != want || m.Subject != "big" {
		t.Fatalf("got problems %q, %d attachments (%+v), subject %q; want a clean message with the attachment of sha256 %s",
			m.ParseErrors, len(m.Attachments), m.Attachments, m.Subject, want)
	}
	runtime.GC()
	runtime.ReadMemStats(&before)
	r, err := m.Layout.Attachment(file, 0)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.New()
	n, err := io.Copy(sum, r)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(sum.Sum(nil)); got != want || n != m.Attachments[0].Size {
		t.Errorf("Attachment: got %d bytes of sha256 %s, want %d of %s", n, got, m.Attachments[0].Size, want)
	}
	alloc = after.TotalAlloc - before.TotalAlloc
	t.Logf("reading its attachment of %d bytes allocated %d bytes in all", n, alloc)
	if alloc > bound {
		t.Errorf("reading the attachment of %d bytes allocated %d bytes, want at most %d", n, alloc, bound)
	}
	text, _, err := m.Layout.Bodies(file)
	if err != nil || text != "See the scan." {
		t.Errorf("Bodies: got %q, %v; want the text", text, err)
	}
}

// failingReaderAt fails after limit bytes.
type failingReaderAt struct {
	r     io.ReaderAt
	limit int64
}

func (f failingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > f.limit {
		return 0, errors.New("disk on fire")
	}
	return f.r.ReadAt(p, off)
}

func TestParseFileReadError(t *testing.T) {
	raw := layoutMessages()["multipart/everything"]
	for _, limit := range []int64{0, 10, 100, int64(len(raw)) / 2, int64(len(raw)) - 1} {
		m := ParseFile(failingReaderAt{bytes.NewReader(raw), limit}, int64(len(raw)))
		if m.Layout == nil || !strings.Contains(m.ParseError(), "disk on fire") {
			t.Errorf("failing after %d bytes: got problems %q, want the read error reported", limit, m.ParseErrors)
		}
	}
	if m := ParseFile(bytes.NewReader(nil), 0); m.Layout == nil || m.ParseError() != "empty message" {
		t.Errorf("empty: got %+v", m)
	}
}

// TestParseFileManyPartsMemory: ParseFile reuses its buffers from part to
// part, so a message of many small parts costs a few times its size (at
// most 16×, TestHostileMemory's bound; about 7× here, 11× with -race), not
// its parts times the buffers (over 200× before).
func TestParseFileManyPartsMemory(t *testing.T) {
	var b bytes.Buffer
	b.WriteString("Subject: s\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n")
	for i := range 999 {
		switch i % 3 {
		case 0:
			b.WriteString("--b\r\nContent-Type: text/html\r\n\r\n" + strings.Repeat("x", 1000) + "\r\n")
		case 1:
			b.WriteString("--b\r\nContent-Type: text/plain; charset=iso-8859-2\r\n\r\n" + strings.Repeat("\xe9", 1000) + "\r\n")
		default:
			b.WriteString("--b\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n")
		}
	}
	b.WriteString("--b--\r\n")
	raw := b.Bytes()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	m := ParseFile(bytes.NewReader(raw), int64(len(raw)))
	runtime.ReadMemStats(&after)
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("%d bytes in %d parts: allocated %d bytes", len(raw), 999, alloc)
	if alloc > uint64(16*len(raw)) {
		t.Errorf("allocated %d bytes, want at most 16× the message's %d", alloc, len(raw))
	}
	if len(m.Attachments) != 333 || len(m.Layout.HTML) != 333 || len(m.Layout.Text) != 333 || len(m.ParseErrors) > 0 {
		t.Errorf("got %d attachments, %d html and %d text parts, problems %q; want 333 each and none", len(m.Attachments), len(m.Layout.HTML), len(m.Layout.Text), m.ParseErrors)
	}
	checkParseFileAgrees(t, raw)
}

// TestParseFileUnclosed: a multipart whose closing delimiter never comes
// is reported, as Parse reports it, so that a big malformed message is
// stored with its parse error.
func TestParseFileUnclosed(t *testing.T) {
	for _, raw := range []string{
		"Subject: ub\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nfirst\r\n--b\r\nContent-Type: text/html\r\n\r\n<i>second</i>\r\n",
		"Subject: ub\r\nContent-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nfirst\r\n--b--\r\n--a\r\nContent-Type: text/html\r\n\r\n<i>second</i>\r\n",
	} {
		m := Parse([]byte(raw))
		f := ParseFile(bytes.NewReader([]byte(raw)), int64(len(raw)))
		if len(m.ParseErrors) == 0 || !reflect.DeepEqual(f.ParseErrors, m.ParseErrors) {
			t.Errorf("ParseFile problems %q, want Parse's %q", f.ParseErrors, m.ParseErrors)
		}
	}
	// Nested and unclosed: enmime numbers the inner part "1.0"; ParseFile
	// says "part 1", but reports it too.
	raw := "Subject: ub\r\nContent-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nfirst\r\n"
	f := ParseFile(bytes.NewReader([]byte(raw)), int64(len(raw)))
	if len(f.ParseErrors) != 2 {
		t.Errorf("ParseFile problems %q, want the two unclosed boundaries", f.ParseErrors)
	}
}
