package mail

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/jhillyerd/enmime/v2"
	"github.com/jhillyerd/enmime/v2/mediatype"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/transform"
)

// parseBody fills the builder's message with the text and HTML bodies and
// the attachments found in body, the part of the message after header h.
//
// enmime does the MIME structure: it finds the parts even with broken
// boundaries and headers. It is told to hand over each part's content as
// written (RawContent) so that transfer and charset decoding happen here, the
// same way for every part: bodies are converted to UTF-8, attachments keep
// their bytes (a windows-1252 CSV stays windows-1252, so its SHA-256 is the
// file's). enmime sees only the MIME fields of the top-level header, which
// readHeader has already cleaned up, so a broken top-level header cannot make
// it give up.
func (b *builder) parseBody(h header, body []byte) {
	defer func() {
		if r := recover(); r != nil {
			b.problem("internal error in mime parser: %v", r)
			b.text.Reset()
			b.html.Reset()
			b.m.Attachments = nil
			b.layout = Layout{}
			b.leaf(b.rootLeaf(h, body), "")
		}
	}()

	var ignored []string
	if mt, params, _, _ := lenientMediaType(h.get("Content-Type"), &ignored); !strings.HasPrefix(mt, "multipart/") || params["boundary"] == "" {
		// One part: enmime would only copy the body (growing a buffer to
		// twice its size on the way).
		lp := b.rootLeaf(h, body)
		if strings.HasPrefix(mt, "multipart/") {
			lp.contentType = mt // reported as without boundary, kept as text
		}
		b.leaf(lp, "")
		return
	}
	if problem := checkShape(h.get("Content-Type"), body); problem != "" {
		b.problem("%s; body kept as text", problem)
		b.leaf(b.rootLeaf(h, body), "")
		return
	}

	if b.fast {
		if leaves, ok := fastParts(h, body, b.bodyOff); ok {
			b.usedFast = true
			for _, l := range leaves {
				b.leaf(l.lp, l.parentType)
			}
			return
		}
	}

	// What enmime takes apart is not located in raw; nor is what is kept
	// when it fails (it is broken).
	b.unlocated = true
	var mtProblems []string
	parser := enmime.NewParser(
		enmime.RawContent(true),
		enmime.SkipMalformedParts(true),
		enmime.MultipartWOBoundaryAsSinglePart(true),
		enmime.MaxStoredPartErrors(10),
		enmime.SetCustomParseMediaType(func(ct string) (string, map[string]string, []string, error) {
			return lenientMediaType(ct, &mtProblems)
		}),
	)
	root, err := parser.ReadParts(io.MultiReader(strings.NewReader(mimeHeader(h)), bytes.NewReader(body)))
	for _, p := range mtProblems {
		b.problem("%s", p)
	}
	if err != nil {
		b.problem("reading mime structure: %v", err)
		b.leaf(b.rootLeaf(h, body), "")
		return
	}
	_ = root.DepthMatchAll(func(p *enmime.Part) bool {
		// Sorted: enmime reports a header's malformed parameters in map
		// order, and the same message must give the same problems.
		var problems []string
		for _, e := range p.Errors {
			if e.Name == enmime.ErrorMissingContentType {
				continue // RFC 2045 defaults it; not a problem
			}
			problems = append(problems, fmt.Sprintf("%s%s: %s", where(p.PartID), strings.ToLower(e.Name), e.Detail))
		}
		slices.Sort(problems)
		for _, pr := range problems {
			b.problem("%s", pr)
		}
		return false
	})
	b.walk(root, "", true, h, body)
}

// where prefixes a problem with the part it is about.
func where(partID string) string {
	if partID == "" || partID == "0" {
		return "body: "
	}
	return "part " + partID + ": "
}

// mimeHeader renders the MIME fields of the top-level header for enmime. A
// field longer than any real one (a hostile header of millions of
// parameters) is not handed over as written, which would cost several times
// its size in enmime's header reader: a Content-Type is rendered again from
// its media type and boundary, the others left out (the root part's
// disposition and encoding are read from h, not from enmime).
func mimeHeader(h header) string {
	var sb strings.Builder
	for _, k := range []string{"Content-Type", "Content-Transfer-Encoding", "Content-Disposition", "Content-Id"} {
		v := h.get(k)
		if len(v) > maxMIMEField {
			if k != "Content-Type" {
				continue
			}
			var ignored []string
			mt, params, _, _ := lenientMediaType(v, &ignored)
			if mt == "" {
				continue
			}
			v = mt
			if bd := params["boundary"]; bd != "" {
				v += `; boundary="` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(bd) + `"`
			}
		}
		if v != "" {
			sb.WriteString(k)
			sb.WriteString(": ")
			sb.WriteString(strings.NewReplacer("\r", " ", "\n", " ").Replace(v))
			sb.WriteString("\r\n")
		}
	}
	sb.WriteString("\r\n")
	return sb.String()
}

// maxMIMEField is the longest top-level MIME field handed to enmime as
// written.
const maxMIMEField = 16 << 10

// leafPart is a MIME part with content, from enmime or, when enmime failed,
// the whole message body.
type leafPart struct {
	id          string
	header      func(key string) string // raw field value, "" if absent
	contentType string                  // lower-case media type, "" if none
	content     []byte                  // as written (transfer-encoded)
	shared      bool                    // content is the caller's memory
	// located says content is at offset off in the raw message (a
	// sub-slice of it); the enmime path's parts are not.
	located bool
	off     int64
}

// rootLeaf is the whole body as one part, for when the structure is unusable.
func (b *builder) rootLeaf(h header, body []byte) leafPart {
	var ignored []string
	ct, _, _, _ := lenientMediaType(h.get("Content-Type"), &ignored)
	if strings.HasPrefix(ct, "multipart/") {
		ct = "text/plain"
	}
	// Not a copy: leaf copies what an attachment keeps, so that none
	// shares memory with the caller's raw.
	return leafPart{id: "0", header: h.get, contentType: ct, content: body, shared: true, located: true, off: b.bodyOff}
}

// walk visits the part tree depth first.
func (b *builder) walk(p *enmime.Part, parentType string, isRoot bool, h header, body []byte) {
	container := p.Boundary != "" && p.ContentType != "text/plain" && p.ContentType != "text/html"
	if isRoot {
		container = p.Boundary != "" && strings.HasPrefix(p.ContentType, "multipart/")
	}
	if !container {
		lp := leafPart{id: p.PartID, header: p.Header.Get, contentType: p.ContentType, content: p.Content}
		if isRoot {
			lp.header = h.get
		}
		b.leaf(lp, parentType)
		return
	}
	if p.FirstChild == nil {
		if isRoot {
			b.problem("no parts could be read (boundary %q); body kept as text", truncate(p.Boundary, 80))
			lp := b.rootLeaf(h, body)
			lp.contentType = "text/plain"
			b.leaf(lp, "")
			return
		}
		b.problem("%s%s has no parts", where(p.PartID), p.ContentType)
		return
	}
	for c := p.FirstChild; c != nil; c = c.NextSibling {
		b.walk(c, p.ContentType, false, h, body)
	}
}

// leaf turns a part with content into body text or an attachment. A text/plain
// or text/html part is body unless it is marked as an attachment or has a file
// name; every other part is an attachment, so nothing is lost.
func (b *builder) leaf(lp leafPart, parentType string) {
	ct := lp.contentType
	if ct == "" {
		ct = "text/plain"
		if parentType == "multipart/digest" {
			ct = "message/rfc822"
		}
	}
	ctRaw := lp.header("Content-Type")
	cdRaw := lp.header("Content-Disposition")
	ctParams := parseParams(ctRaw)
	cdParams := parseParams(cdRaw)
	disposition := dispositionType(cdRaw)
	cte := lp.header("Content-Transfer-Encoding")
	data, decoded := b.decodeTransfer(lp.id, lp.content, cte)
	span := Span{Off: lp.off, Len: int64(len(lp.content)), Encoding: cte}
	if !lp.located {
		b.unlocated = true
	}
	filename := fileName(cdParams, ctParams)

	multipartLeaf := strings.HasPrefix(ct, "multipart/")
	if multipartLeaf {
		b.problem("%s%s without boundary; content kept as text", where(lp.id), ct)
	}
	if (ct == "text/plain" || ct == "text/html" || multipartLeaf) && disposition != "attachment" && filename == "" {
		isHTML := ct == "text/html"
		sb, spans := &b.text, &b.layout.Text
		if isHTML {
			sb, spans = &b.html, &b.layout.HTML
		}
		b.appendText(sb, lp.id, data, ctParams["charset"], isHTML)
		span.Charset = ctParams["charset"]
		if lp.located {
			*spans = append(*spans, span)
		}
		return
	}
	if filename == "" && ct == "message/rfc822" {
		filename = nestedMessageName(data)
	}
	if lp.shared && !decoded {
		data = bytes.Clone(data)
	}
	sum := sha256.Sum256(data)
	cid := contentID(lp.header("Content-Id"))
	if lp.located {
		b.layout.Attachments = append(b.layout.Attachments, span)
	}
	b.m.Attachments = append(b.m.Attachments, Attachment{
		Filename:    filename,
		ContentType: ct,
		Size:        int64(len(data)),
		SHA256:      hex.EncodeToString(sum[:]),
		Content:     data,
		Inline:      disposition == "inline" || disposition == "" && cid != "",
		ContentID:   cid,
	})
}

// Limits on the MIME structure. enmime's cost grows with size times depth
// and its memory with the number of parts, so a hostile message below the
// size cap could otherwise stall a mailbox for hours or exhaust memory; no
// real message comes near these.
const (
	maxDepth = 25
	maxParts = 1000
	// maxOpen bounds the multipart levels left unclosed at the end of the
	// body: enmime's time doubles with each (20 levels of a 1.4 KB message
	// took 0.4 s, 24 about 7 s); a truncated real message leaves two or
	// three.
	maxOpen = 10
)

// checkShape scans the body's multipart structure in one pass, the way enmime
// will see it, and says what is wrong if it is nested deeper than maxDepth,
// has more than maxParts parts or leaves more than maxOpen levels unclosed;
// "" if it is fine. The scan is shapeScan's, which ParseFile runs over a
// stream.
func checkShape(contentType string, body []byte) string {
	s := newShapeScan(contentType)
	if s == nil {
		return ""
	}
	for pos := 0; pos < len(body) && !s.done() && s.fail == ""; {
		if !s.inHdr && pos > 0 {
			// Outside a part's header only a line beginning "--" can
			// change the scan: go straight to the next one.
			pos = nextDashLine(body, pos)
			if pos == len(body) {
				break
			}
		}
		line, next := nextLine(body, pos)
		s.line(line, next-pos)
		pos = next
	}
	if s.fail == "" {
		s.end()
	}
	return s.fail
}

// nextDashLine returns the start of the first line at or after pos, a
// line start past 0, that begins with "--"; len(body) if none does. It
// looks for '-', rare in text, rather than at every line.
func nextDashLine(body []byte, pos int) int {
	for {
		i := bytes.IndexByte(body[pos:], '-')
		if i < 0 {
			return len(body)
		}
		j := pos + i
		if body[j-1] == '\n' && j+1 < len(body) && body[j+1] == '-' {
			return j
		}
		pos = j + 1
	}
}

// decodeTransfer undoes the Content-Transfer-Encoding, leniently. decoded
// says whether data is new memory rather than content itself.
func (b *builder) decodeTransfer(id string, content []byte, cte string) (data []byte, decoded bool) {
	switch transferEncoding(cte) {
	case "base64":
		data, junk, truncated := decodeBase64(content)
		b.transferProblems(id, cte, junk, truncated)
		return data, true
	case "quoted-printable":
		return decodeQuotedPrintable(content), true
	default:
		b.transferProblems(id, cte, 0, false)
		return content, false
	}
}

// transferProblems reports what decodeTransfer found wrong with a part's
// transfer encoding: bytes of base64 outside the alphabet (junk), an
// incomplete final group, an unknown encoding.
func (b *builder) transferProblems(id, cte string, junk int, truncated bool) {
	switch transferEncoding(cte) {
	case "base64":
		if junk > 0 {
			b.problem("%smalformed base64: %d bytes outside the alphabet ignored", where(id), junk)
		}
		if truncated {
			b.problem("%smalformed base64: incomplete final group dropped", where(id))
		}
	case "quoted-printable", "", "7bit", "8bit", "binary":
	default:
		b.problem("%sunknown content-transfer-encoding %q; content kept as is", where(id), truncate(cte, 40))
	}
}

// decodeBase64 decodes base64 leniently: white space is skipped, other bytes
// outside the alphabet are counted and skipped, padding ends a group and
// decoding goes on after it (some encoders concatenate padded chunks), and an
// incomplete final group of one character is dropped.
func decodeBase64(in []byte) (out []byte, junk int, truncated bool) {
	// Most mail is well-formed (the alphabet in CRLF lines, padded at the
	// end): the standard decoder, which skips line breaks, takes it several
	// times faster than the loop below, which gives the same bytes.
	out = make([]byte, base64.StdEncoding.DecodedLen(len(in)))
	if n, err := base64.StdEncoding.Decode(out, in); err == nil {
		return out[:n], 0, false
	}
	out = out[:0]
	group := make([]byte, 0, 1024)
	flush := func() {
		if len(group)%4 == 1 {
			truncated = true
			group = group[:len(group)-1]
		}
		if len(group) == 0 {
			return
		}
		n := base64.RawStdEncoding.DecodedLen(len(group))
		if cap(out)-len(out) < n {
			out = append(out, make([]byte, n)...)[:len(out)]
		}
		m, err := base64.RawStdEncoding.Decode(out[len(out):len(out)+n], group)
		if err != nil {
			truncated = true
		}
		out = out[:len(out)+m]
		group = group[:0]
	}
	for _, c := range in {
		switch {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '+', c == '/':
			group = append(group, c)
			if len(group) == cap(group) {
				flush() // a whole number of quads: decode as they come
			}
		case c == '=':
			flush()
		case c == ' ', c == '\t', c == '\r', c == '\n':
		default:
			junk++
		}
	}
	flush()
	return out, junk, truncated
}

// decodeQuotedPrintable decodes quoted-printable leniently: "=" not followed
// by two hex digits is kept literally; trailing white space on a line is
// dropped; line endings are kept as written.
func decodeQuotedPrintable(in []byte) []byte {
	// The output is never longer than the input: it is written in place
	// of append, line by line, the bytes between escapes copied whole.
	out := make([]byte, len(in))
	n := 0
	for len(in) > 0 {
		line := in
		i := bytes.IndexByte(in, '\n')
		hasNL := i >= 0
		if hasNL {
			line, in = in[:i], in[i+1:]
		} else {
			in = nil
		}
		crlf := len(line) > 0 && line[len(line)-1] == '\r'
		if crlf {
			line = line[:len(line)-1]
		}
		for len(line) > 0 && (line[len(line)-1] == ' ' || line[len(line)-1] == '\t') {
			line = line[:len(line)-1]
		}
		soft := len(line) > 0 && line[len(line)-1] == '='
		if soft {
			line = line[:len(line)-1]
		}
		for len(line) > 0 {
			if line[0] != '=' {
				i := bytes.IndexByte(line, '=')
				if i < 0 {
					n += copy(out[n:], line)
					break
				}
				n += copy(out[n:], line[:i])
				line = line[i:]
			}
			if len(line) >= 3 && isHex(line[1]) && isHex(line[2]) {
				out[n] = unhex(line[1])<<4 | unhex(line[2])
				line = line[3:]
			} else {
				out[n] = '='
				line = line[1:]
			}
			n++
		}
		if hasNL && !soft {
			if crlf {
				out[n] = '\r'
				n++
			}
			out[n] = '\n'
			n++
		}
	}
	return out[:n]
}

var metaCharset = regexp.MustCompile(`(?i)<meta[^>]*charset\s*=\s*["']?\s*([a-z0-9_.:-]+)`)

// appendText adds a body part to sb, on a new line if need be, converted to
// UTF-8 with "\n" line endings: a leading byte order mark is dropped, NUL and
// invalid UTF-8 become U+FFFD. It converts in chunks straight into sb, so a
// big body costs little more than its text (issue 12).
func (b *builder) appendText(sb *strings.Builder, id string, data []byte, charset string, isHTML bool) {
	if charset == "" && isHTML {
		head := data
		if len(head) > 64<<10 {
			head = head[:64<<10]
		}
		if m := metaCharset.FindSubmatch(head); m != nil {
			charset = string(m[1])
		}
	}
	enc, kind := lookupCharset(charset)
	if kind == charsetUnknown {
		b.problem("%sunknown charset %q; read as utf-8 or windows-1252", where(id), truncate(charset, 40))
		kind = charsetRaw
	}
	valid := kind != charsetDecoder && utf8.Valid(data)
	if kind == charsetUTF8 && !valid {
		b.problem("%sinvalid utf-8 replaced with U+FFFD", where(id))
	}
	w := textWriter{sb: sb, sep: sb.Len() > 0 && !strings.HasSuffix(sb.String(), "\n"), start: true}
	switch {
	case kind == charsetDecoder:
		sb.Grow(len(data) + len(data)/2 + 1) // most charsets take fewer bytes than UTF-8
		if err := w.fromReader(transform.NewReader(bytes.NewReader(data), enc.NewDecoder())); err != nil {
			b.problem("%sdecoding %s: %v", where(id), truncate(charset, 40), err)
		}
	case kind == charsetRaw && !valid:
		sb.Grow(len(data) + len(data)/4 + 1)
		_ = w.fromReader(transform.NewReader(bytes.NewReader(data), charmap.Windows1252.NewDecoder()))
	case valid && bytes.IndexByte(data, 0) < 0:
		// Valid UTF-8 without NUL, most text: only the byte order mark
		// goes and "\r\n" becomes "\n", in runs between the line ends.
		w.plain(data)
	default:
		// The exact size first: invalid UTF-8 and NUL grow, and a
		// builder growing by doubling would need up to three times it.
		count := textWriter{sep: w.sep, start: true}
		count.write(data)
		count.end()
		sb.Grow(count.n)
		w.write(data)
	}
	w.end()
}

// textWriter normalises text into sb (see appendText).
type textWriter struct {
	sb    *strings.Builder // nil: only count into n
	n     int
	sep   bool   // a "\n" is owed before the first byte written
	start bool   // nothing read yet (for the byte order mark)
	cr    bool   // the last chunk ended in "\r"
	inv   bool   // the last thing written replaced invalid UTF-8 (a run of it becomes one U+FFFD)
	carry []byte // an incomplete rune at the end of the last chunk
}

func (w *textWriter) out(s string) {
	w.inv = false
	if w.sep {
		w.sep = false
		w.outByte('\n')
	}
	if w.sb == nil {
		w.n += len(s)
		return
	}
	w.sb.WriteString(s)
}

func (w *textWriter) outByte(c byte) {
	w.inv = false
	if w.sep {
		w.sep = false
		w.outByte('\n')
	}
	if w.sb == nil {
		w.n++
		return
	}
	w.sb.WriteByte(c)
}

// write adds a chunk of UTF-8 text.
func (w *textWriter) write(p []byte) {
	if len(w.carry) > 0 {
		// A rune split across chunks (chunks from a reader are small).
		p = append(w.carry, p...)
		w.carry = nil
	}
	if w.start {
		p = bytes.TrimPrefix(p, []byte("\uFEFF"))
		w.start = len(p) == 0
	}
	for len(p) > 0 {
		if w.cr {
			w.cr = false
			if p[0] != '\n' {
				w.outByte('\r')
			}
		}
		i := textRun(p)
		if i > 0 {
			w.out(unsafeString(p[:i]))
			p = p[i:]
			continue
		}
		switch c := p[0]; {
		case c == '\r' && len(p) == 1:
			w.cr = true
			p = p[1:]
		case c == '\r' && p[1] == '\n':
			p = p[1:] // the "\n" is written next
		case c == 0:
			w.out("\uFFFD")
			p = p[1:]
		case c < utf8.RuneSelf:
			w.outByte(c)
			p = p[1:]
		case !utf8.FullRune(p):
			w.carry = append([]byte(nil), p...)
			return
		default:
			r, n := utf8.DecodeRune(p)
			if r == utf8.RuneError && n == 1 {
				if !w.inv {
					w.out("\uFFFD")
					w.inv = true
				}
			} else {
				w.out(unsafeString(p[:n]))
			}
			p = p[n:]
		}
	}
}

// plain writes valid UTF-8 without NUL into w.sb (it does not count), in
// which write would change nothing but a leading byte order mark and
// "\r\n" line ends: the same result, the exact size grown at once and the
// runs between line ends copied whole.
func (w *textWriter) plain(p []byte) {
	p = bytes.TrimPrefix(p, []byte("\uFEFF"))
	w.start = false
	if len(p) == 0 {
		return
	}
	n := len(p) - bytes.Count(p, []byte("\r\n"))
	if w.sep {
		n++
	}
	w.sb.Grow(n)
	for len(p) > 0 {
		i := bytes.Index(p, []byte("\r\n"))
		if i < 0 {
			w.out(unsafeString(p))
			break
		}
		if i > 0 {
			w.out(unsafeString(p[:i]))
		}
		w.outByte('\n')
		p = p[i+2:]
	}
}

// textRun returns the length of p's leading run of text written as it
// is: printable ASCII and whole, valid multi-byte UTF-8 sequences.
func textRun(p []byte) int {
	i := 0
	for i < len(p) {
		i += printableASCII(p[i:])
		if i >= len(p) || p[i] < utf8.RuneSelf || !utf8.FullRune(p[i:]) {
			break
		}
		r, n := utf8.DecodeRune(p[i:])
		if r == utf8.RuneError && n == 1 {
			break
		}
		i += n
	}
	return i
}

// printableASCII returns the length of p's leading run of printable ASCII
// (0x20 to 0x7F), eight bytes at a time while it lasts.
func printableASCII(p []byte) int {
	i := 0
	for ; i+8 <= len(p); i += 8 {
		v := binary.LittleEndian.Uint64(p[i:])
		// A byte at or above 0x80, or one below 0x20, in the eight.
		if v&0x8080808080808080 != 0 || (v-0x2020202020202020)&^v&0x8080808080808080 != 0 {
			break
		}
	}
	for i < len(p) && p[i] >= 0x20 && p[i] < utf8.RuneSelf {
		i++
	}
	return i
}

func (w *textWriter) fromReader(r io.Reader) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		w.write(buf[:n])
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (w *textWriter) end() {
	if len(w.carry) > 0 && !w.inv {
		w.out("\uFFFD")
	}
	if w.cr {
		w.outByte('\r')
	}
}

// unsafeString is p as a string for the time of a write, without a copy.
func unsafeString(p []byte) string {
	return unsafe.String(unsafe.SliceData(p), len(p))
}

// maxParams bounds the parameters read from one Content-Type or
// Content-Disposition value: real ones have a handful (a long file name in
// RFC 2231 sections a few more), and each one kept costs more memory than
// its text.
const maxParams = 100

// lenientMediaType parses a Content-Type with enmime's tolerant parser and,
// when even that fails or the value is long or has many parameters, takes
// the type before the first ";" (if it looks like one) and the parameters as
// parseParams reads them. It never fails.
func lenientMediaType(ct string, problems *[]string) (string, map[string]string, []string, error) {
	if len(ct) <= 4<<10 && strings.Count(ct, ";") <= maxParams {
		if mt, params, ok := simpleMediaType(ct); ok {
			return mt, params, nil, nil
		}
	}
	return parseMediaType(ct, problems)
}

// parseMediaType is lenientMediaType without simpleMediaType's shortcut.
func parseMediaType(ct string, problems *[]string) (string, map[string]string, []string, error) {
	// enmime's parser takes time quadratic in the number of parameters
	// (issue 12: 900 parts of 1,500 parameters took 16 s); real values are
	// far shorter than this.
	many := strings.Count(ct, ";") > maxParams
	if len(ct) <= 4<<10 && !many {
		mt, params, invalid, err := mediatype.Parse(ct)
		if err == nil {
			return mt, params, invalid, nil
		}
		*problems = append(*problems, fmt.Sprintf("malformed content type %q: %v", truncate(ct, 100), err))
	}
	if many {
		*problems = append(*problems, fmt.Sprintf("content type with more than %d parameters; the rest were ignored", maxParams))
	}
	mt := ct
	if i := strings.IndexByte(mt, ';'); i >= 0 {
		mt = mt[:i]
	}
	mt = strings.ToLower(strings.TrimSpace(mt))
	if !validMediaType.MatchString(mt) {
		mt = ""
	}
	return mt, parseParams(ct), nil, nil
}

// simpleMediaType parses a value of the plainest form, as almost every
// Content-Type and Content-Disposition is written ("type/subtype" or a
// token, then "; name=value" with token or quoted values), to what enmime's
// parser gives for it, which costs dozens of allocations (its repairs run
// on every value). ok is false for anything else (FuzzSimpleMediaType
// compares the two).
func simpleMediaType(ct string) (mt string, params map[string]string, ok bool) {
	s := ct
	if s == "" || s[len(s)-1] == ' ' || s[len(s)-1] == '\t' {
		return "", nil, false
	}
	i := tokenEnd(s, 0)
	if i == 0 {
		return "", nil, false
	}
	if i < len(s) && s[i] == '/' {
		j := tokenEnd(s, i+1)
		if j == i+1 {
			return "", nil, false
		}
		i = j
	}
	mt = strings.ToLower(s[:i])
	params = make(map[string]string)
	for i < len(s) {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
		if i == len(s) || s[i] != ';' {
			return "", nil, false
		}
		i++
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
		k := tokenEnd(s, i)
		if k == i || k == len(s) || s[k] != '=' || strings.IndexByte(s[i:k], '*') >= 0 {
			return "", nil, false
		}
		// enmime drops a parameter whose "name=" is in the text before it.
		if strings.Contains(s[:i], s[i:k+1]) {
			return "", nil, false
		}
		key := strings.ToLower(s[i:k])
		i = k + 1
		var val string
		if i < len(s) && s[i] == '"' {
			j := i + 1
			for j < len(s) && s[j] != '"' {
				if c := s[j]; c < 0x20 || c > 0x7e || c == '\\' || c == '<' || c == '>' || c == ';' {
					return "", nil, false
				}
				j++
			}
			if j == len(s) {
				return "", nil, false
			}
			val, i = s[i+1:j], j+1
		} else {
			j := tokenEnd(s, i)
			if j == i {
				return "", nil, false
			}
			val, i = s[i:j], j
		}
		if _, dup := params[key]; dup || strings.Contains(val, "=?") {
			return "", nil, false
		}
		params[key] = val
	}
	return mt, params, true
}

// tokenEnd returns the end of the MIME token (RFC 2045) at s[i:].
func tokenEnd(s string, i int) int {
	for ; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?=`, c) >= 0 {
			break
		}
	}
	return i
}

var validMediaType = regexp.MustCompile(`^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$`)

// dispositionType returns the lower-case disposition ("inline",
// "attachment") or "".
func dispositionType(raw string) string {
	if i := strings.IndexByte(raw, ';'); i >= 0 {
		raw = raw[:i]
	}
	return strings.ToLower(strings.Trim(strings.TrimSpace(raw), `"`))
}

// contentID returns a Content-ID without angle brackets.
func contentID(raw string) string {
	s := strings.TrimSpace(raw)
	s = strings.TrimPrefix(s, "<")
	if i := strings.IndexByte(s, '>'); i >= 0 {
		s = s[:i]
	}
	return cleanHeaderText(rawToUTF8(s))
}

// parseParams reads the parameters of a Content-Type or Content-Disposition
// value into a map with lower-case names, values unquoted but otherwise raw
// (RFC 2231 sections are kept under their own names, like "filename*0*"). The
// first occurrence of a name wins. In a quoted value a backslash escapes only
// a quote or a backslash, so Windows paths survive.
func parseParams(raw string) map[string]string {
	params := make(map[string]string)
	i := indexUnquoted(raw, ';')
	if i < 0 {
		return params
	}
	s := raw[i+1:]
	for {
		s = strings.TrimLeft(s, " \t\r\n;")
		if s == "" {
			return params
		}
		j := strings.IndexAny(s, "=;")
		if j < 0 {
			return params
		}
		if s[j] == ';' {
			s = s[j+1:]
			continue
		}
		key := strings.ToLower(strings.TrimSpace(s[:j]))
		s = strings.TrimLeft(s[j+1:], " \t\r\n")
		var val string
		if strings.HasPrefix(s, `"`) {
			var sb strings.Builder
			k := 1
			for ; k < len(s); k++ {
				c := s[k]
				if c == '\\' && k+1 < len(s) && (s[k+1] == '"' || s[k+1] == '\\') {
					k++
					sb.WriteByte(s[k])
					continue
				}
				if c == '"' {
					break
				}
				sb.WriteByte(c)
			}
			val = sb.String()
			if k+1 < len(s) {
				s = s[k+1:]
			} else {
				s = ""
			}
			if m := strings.IndexByte(s, ';'); m >= 0 {
				s = s[m:]
			} else {
				s = ""
			}
		} else {
			m := strings.IndexByte(s, ';')
			if m < 0 {
				val, s = s, ""
			} else {
				val, s = s[:m], s[m:]
			}
			val = strings.TrimSpace(val)
		}
		if _, dup := params[key]; key != "" && !dup {
			params[key] = val
			if len(params) >= maxParams {
				return params
			}
		}
	}
}

// indexUnquoted is the index of the first c outside a quoted string, or -1.
func indexUnquoted(s string, c byte) int {
	quoted := false
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if quoted {
				i++
			}
		case '"':
			quoted = !quoted
		case c:
			if !quoted {
				return i
			}
		}
	}
	return -1
}

// paramValue returns parameter name decoded: RFC 2231 extended values
// (name*=charset'lang'%XX…, in any charset) and continuations (name*0*=…,
// name*1=…) first, else the plain value with RFC 2047 words and raw 8-bit
// bytes decoded as mailers write them.
func paramValue(params map[string]string, name string) (string, bool) {
	if v, ok := params[name+"*"]; ok {
		cs, v := splitExtValue(v)
		s, _ := decodeCharset(cs, percentDecode(v))
		return cleanHeaderText(s), true
	}
	_, ext0 := params[name+"*0*"]
	_, plain0 := params[name+"*0"]
	if ext0 || plain0 {
		var (
			buf []byte
			cs  string
		)
		for n := 0; ; n++ {
			k := name + "*" + strconv.Itoa(n)
			if v, ok := params[k+"*"]; ok {
				if n == 0 {
					cs, v = splitExtValue(v)
				}
				buf = append(buf, percentDecode(v)...)
			} else if v, ok := params[k]; ok {
				buf = append(buf, v...)
			} else {
				break
			}
		}
		s, _ := decodeCharset(cs, buf)
		return cleanHeaderText(s), true
	}
	if v, ok := params[name]; ok {
		return DecodeHeader(v), true
	}
	return "", false
}

// splitExtValue splits an RFC 2231 extended value into charset and the
// percent-encoded text (the language is dropped).
func splitExtValue(v string) (charset, text string) {
	cs, rest, ok := strings.Cut(v, "'")
	if !ok {
		return "", v
	}
	_, text, ok = strings.Cut(rest, "'")
	if !ok {
		return cs, rest
	}
	return cs, text
}

// percentDecode decodes %XX; a "%" not followed by two hex digits is kept.
func percentDecode(s string) []byte {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
			continue
		}
		b = append(b, s[i])
	}
	return b
}

// fileName returns the attachment's file name from Content-Disposition's
// filename or else Content-Type's name, reduced to a base name without
// control characters.
func fileName(cdParams, ctParams map[string]string) string {
	v, ok := paramValue(cdParams, "filename")
	if !ok || v == "" {
		v, _ = paramValue(ctParams, "name")
	}
	return cleanFileName(v)
}

func cleanFileName(s string) string {
	if i := strings.LastIndexAny(s, `/\`); i >= 0 {
		s = s[i+1:]
	}
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if s == "." || s == ".." {
		return ""
	}
	return s
}

// nestedMessageName names an attached message without a file name after its
// subject.
func nestedMessageName(data []byte) string {
	h, _, _ := readHeader(data)
	subject := DecodeHeader(h.get("Subject"))
	subject = strings.NewReplacer("/", "_", `\`, "_").Replace(subject)
	subject = truncate(cleanFileName(subject), 100)
	if subject == "" {
		return "message.eml"
	}
	return subject + ".eml"
}
