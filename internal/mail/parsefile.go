package mail

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/transform"
)

// ParseFile parses a message too big to hold in memory, reading r (of size
// bytes) as a stream: the header as Parse reads it, and the MIME structure
// into Layout, with each attachment's size and SHA-256 computed as it is
// decoded on the fly. Text, HTML and the attachments' Content are left
// empty (Layout derives them on read). It never fails; what could not be
// read is in ParseErrors.
//
// What it holds is bounded whatever the size: the header section (at most
// 4 MiB, as ParseHeader), a 64 KiB read buffer, a part header (64 KiB plus a
// line of up to 64 KiB) and a record per part (at most 1000 parts, as
// Parse). It reads r twice over: once for the structure, then each part's
// content to decode it.
//
// For a message Parse lays out (a well-formed multipart, which Parse's
// fast path takes, or a single part) ParseFile gives the same fields,
// attachment metadata, ParseErrors and Layout (TestParseFileAgrees,
// FuzzParseFileAgrees). A broken multipart, which Parse hands to the
// lenient enmime parser, is taken apart by the same delimiter scan that
// checks Parse's structure limits; then the parts, their problems and the
// attachments can differ from Parse's (see parseFileDifferences in the
// tests). So can a message with a header section over 4 MiB or part header
// lines over 64 KiB.
func ParseFile(r io.ReaderAt, size int64) (m *Message) {
	b := newBuilder(size)
	defer func() {
		if rec := recover(); rec != nil {
			b.problem("internal error: %v", rec)
			m = b.finish()
			m.Layout = &b.layout
		}
	}()
	b.parseFile(r, size)
	m = b.finish()
	m.Layout = &b.layout
	return m
}

func (b *builder) parseFile(r io.ReaderAt, size int64) {
	if size <= 0 {
		b.problem("empty message")
		return
	}
	br := bufio.NewReaderSize(io.NewSectionReader(r, 0, size), 64<<10)
	section, err := readHeaderSection(br)
	if err != nil {
		b.problem("reading message header: %v", err)
		return
	}
	var bodyOff int64
	if len(section) > maxHeaderSize {
		section = section[:maxHeaderSize]
		b.problem("header section longer than %d bytes; the rest was not read", maxHeaderSize)
		// The body starts after the first empty line, if there is one.
		bodyOff = int64(len(section)) + 1 + skipToEmptyLine(br)
	}
	h, body, problems := readHeader(section)
	for _, p := range problems {
		b.problem("%s", p)
	}
	b.fillHeader(h)
	if bodyOff == 0 {
		bodyOff = int64(len(section) - len(body))
	}
	bodyOff = min(bodyOff, size)

	ctRaw := h.get("Content-Type")
	var ignored []string
	mt, params, _, _ := lenientMediaType(ctRaw, &ignored)
	root := fileLeaf{id: "0", root: true, off: bodyOff, end: size, rootCT: mt}
	if !strings.HasPrefix(mt, "multipart/") || params["boundary"] == "" {
		b.fileLeaf(r, root, h)
		return
	}
	root.rootCT = "text/plain" // a multipart that cannot be taken apart
	leaves, parts, unclosed, fail := scanParts(r, bodyOff, size, ctRaw, mt)
	if fail == "" && parts > 0 {
		// What enmime reports of a multipart whose closing delimiter
		// never came, in its words.
		for _, u := range unclosed {
			b.problem("%smissing boundary: Boundary %q was not closed correctly", where(u.id), u.boundary)
		}
	}
	switch {
	case fail != "":
		b.problem("%s; body kept as text", fail)
		leaves = []fileLeaf{root}
	case parts == 0:
		b.problem("no parts could be read (boundary %q); body kept as text", truncate(params["boundary"], 80))
		leaves = []fileLeaf{root}
	}
	for _, l := range leaves {
		b.fileLeaf(r, l, h)
	}
}

// skipToEmptyLine reads br up to and including the first empty line and
// returns the bytes read.
func skipToEmptyLine(br *bufio.Reader) int64 {
	var n int64
	atLineStart := true
	for {
		line, err := br.ReadSlice('\n')
		n += int64(len(line))
		if err == nil {
			if atLineStart && (len(line) == 1 || len(line) == 2 && line[0] == '\r') {
				return n
			}
			atLineStart = true
			continue
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			atLineStart = false
			continue
		}
		return n
	}
}

// fileLeaf is a part with content found by ParseFile: its header from
// hdrOff to off, its content from off to end.
type fileLeaf struct {
	id       string
	root     bool   // the whole body (header: the message's)
	rootCT   string // the root's content type
	digest   bool   // in a multipart/digest
	hdrOff   int64
	off, end int64
}

// scanParts reads the body at [off, size) of r line by line through
// shapeScan and returns its leaves in order, the number of parts found, and
// the multiparts still open at the end of the body (outermost first), and
// what is wrong with its shape (see checkShape), if anything. As in
// Parse's fast path, the line break before a delimiter belongs to the
// delimiter.
func scanParts(r io.ReaderAt, off, size int64, ct, mt string) (leaves []fileLeaf, parts int, unclosed []openPart, fail string) {
	s := newShapeScan(ct)
	type level struct {
		id     string
		n      int
		digest bool
	}
	levels := []level{{digest: mt == "multipart/digest"}}
	var (
		part     fileLeaf // the part whose header is being read
		leaf     fileLeaf // the leaf being read, if inLeaf
		inLeaf   bool
		pos      = off
		prevEOL  int64
		lineBuf  = make([]byte, 0, 64<<10)
		lineRead = newLineReader(io.NewSectionReader(r, off, size-off), lineBuf)
	)
	// longHdr says the leaf's header went on past what shapeScan reads:
	// its content starts after the header's end (as enmime reads it).
	longHdr := false
	handle := func(ev shapeEvent, line []byte, lineStart, n int64) {
		if ev.hdrEnd {
			contentOff := lineStart
			if ev.kind == lineHeader {
				contentOff = lineStart + n
			}
			if ev.container {
				levels = append(levels, level{id: part.id, digest: ev.mt == "multipart/digest"})
			} else {
				leaf, inLeaf = part, true
				leaf.off = contentOff
				longHdr = ev.byLimit
			}
		}
		if longHdr && ev.kind == lineContent {
			if _, _, ok := splitField(line); ok || len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
				leaf.off = lineStart + n
				return
			}
			if len(line) == 0 {
				leaf.off = lineStart + n
			}
			longHdr = false
		}
		if ev.kind != lineDelim && ev.kind != lineFinal {
			return
		}
		longHdr = false
		if inLeaf {
			leaf.end = max(lineStart-prevEOL, leaf.off)
			leaves = append(leaves, leaf)
			inLeaf = false
		}
		levels = levels[:ev.level+1]
		if ev.kind == lineFinal {
			levels = levels[:ev.level]
			return
		}
		lv := &levels[ev.level]
		lv.n++
		parts++
		id := strconv.Itoa(lv.n)
		if lv.id != "" {
			id = lv.id + "." + id
		}
		part = fileLeaf{id: id, digest: lv.digest, hdrOff: lineStart + n}
	}
	for !s.done() {
		line, n, eol := lineRead.next()
		if n == 0 {
			break
		}
		ev := s.line(line, int(n))
		if s.fail != "" {
			return nil, parts, nil, s.fail
		}
		handle(ev, line, pos, n)
		pos += n
		prevEOL = eol
	}
	ev := s.end()
	if s.fail != "" {
		return nil, parts, nil, s.fail
	}
	handle(ev, nil, pos, 0)
	if inLeaf {
		// An unclosed multipart: the part runs to the end.
		leaf.end = pos
		leaves = append(leaves, leaf)
	}
	for i, d := range s.stack {
		if i < len(levels) {
			unclosed = append(unclosed, openPart{id: levels[i].id, boundary: string(d[2:])})
		}
	}
	return leaves, parts, unclosed, ""
}

// openPart is a multipart whose closing delimiter never came.
type openPart struct {
	id, boundary string
}

// lineReader reads lines from a stream, keeping at most the first
// len(buf) bytes of a longer line.
type lineReader struct {
	br  *bufio.Reader
	buf []byte
}

func newLineReader(r io.Reader, buf []byte) *lineReader {
	return &lineReader{br: bufio.NewReaderSize(r, 64<<10), buf: buf}
}

// next returns the next line without its line break (LF or CR LF), the
// bytes it took with its line break, and the length of the line break;
// n is 0 at the end. A line longer than the buffer is cut short (its line
// break then not removed).
func (lr *lineReader) next() (line []byte, n, eol int64) {
	frag, err := lr.br.ReadSlice('\n')
	n = int64(len(frag))
	if !errors.Is(err, bufio.ErrBufferFull) {
		switch {
		case bytes.HasSuffix(frag, []byte("\r\n")):
			return frag[:len(frag)-2], n, 2
		case bytes.HasSuffix(frag, []byte("\n")):
			return frag[:len(frag)-1], n, 1
		}
		return bytes.TrimSuffix(frag, []byte("\r")), n, 0
	}
	line = append(lr.buf[:0], frag...)
	for errors.Is(err, bufio.ErrBufferFull) {
		frag, err = lr.br.ReadSlice('\n')
		n += int64(len(frag))
	}
	switch {
	case bytes.HasSuffix(frag, []byte("\r\n")):
		eol = 2
	case bytes.HasSuffix(frag, []byte("\n")):
		eol = 1
	}
	return line, n, eol
}

// maxPartHeaderRead bounds the part header ParseFile reads again for a
// leaf: shapeScan reads 64 KiB of it plus the line that crosses that.
const maxPartHeaderRead = partHeaderLimit + 64<<10

// fileLeaf reads a leaf's header and decodes its content from r, as leaf
// does with a part in memory.
func (b *builder) fileLeaf(r io.ReaderAt, l fileLeaf, h header) {
	lp := leafPart{id: l.id, located: true, off: l.off}
	parentType := ""
	if l.digest {
		parentType = "multipart/digest"
	}
	if l.root {
		lp.header, lp.contentType = h.get, l.rootCT
	} else {
		hdr := make([]byte, min(l.off-l.hdrOff, maxPartHeaderRead))
		if err := readFullAt(r, hdr, l.hdrOff); err != nil {
			b.problem("%s%v", where(l.id), err)
			return
		}
		if fh, _, ok := fastPartHeader(hdr); ok {
			lp.header = fh.get
		} else {
			ph, _, _ := readHeader(hdr)
			lp.header = ph.get
		}
		if ct := lp.header("Content-Type"); ct != "" {
			var ignored []string
			lp.contentType, _, _, _ = lenientMediaType(ct, &ignored)
		}
	}
	b.leafFrom(lp, parentType, r, l.end-l.off)
}

// leafFrom is leaf for a part whose content, n bytes at lp.off, is read from
// r and decoded as it is read: a body part is checked as appendText would
// convert it (the problems are the same; the text is left to
// Layout.Bodies), an attachment is hashed.
func (b *builder) leafFrom(lp leafPart, parentType string, r io.ReaderAt, n int64) {
	ct := lp.contentType
	if ct == "" {
		ct = "text/plain"
		if parentType == "multipart/digest" {
			ct = "message/rfc822"
		}
	}
	ctParams := parseParams(lp.header("Content-Type"))
	cdRaw := lp.header("Content-Disposition")
	cdParams := parseParams(cdRaw)
	disposition := dispositionType(cdRaw)
	cte := lp.header("Content-Transfer-Encoding")
	span := Span{Off: lp.off, Len: n, Encoding: cte}
	filename := fileName(cdParams, ctParams)
	multipartLeaf := strings.HasPrefix(ct, "multipart/")

	tr := newTransferReader(r, lp.off, n, cte).reuse(&b.scratch)
	transferProblems := func() {
		if d, ok := tr.dec.(*base64Decoder); ok {
			b.transferProblems(lp.id, cte, d.junk, d.truncated)
		} else {
			b.transferProblems(lp.id, cte, 0, false)
		}
		if multipartLeaf {
			b.problem("%s%s without boundary; content kept as text", where(lp.id), ct)
		}
	}
	if (ct == "text/plain" || ct == "text/html" || multipartLeaf) && disposition != "attachment" && filename == "" {
		isHTML := ct == "text/html"
		problems, err := checkText(lp.id, tr, ctParams["charset"], isHTML, b.scratch.textBuf())
		if err != nil {
			b.problem("%s%v", where(lp.id), err)
		}
		transferProblems()
		for _, p := range problems {
			b.problem("%s", p)
		}
		span.Charset = ctParams["charset"]
		if isHTML {
			b.layout.HTML = append(b.layout.HTML, span)
		} else {
			b.layout.Text = append(b.layout.Text, span)
		}
		return
	}
	sum := sha256.New()
	size, err := io.CopyBuffer(sum, tr, b.scratch.textBuf()[:32<<10])
	if err != nil {
		b.problem("%s%v", where(lp.id), err)
	}
	transferProblems()
	if filename == "" && ct == "message/rfc822" {
		// Its subject, from its header section (read again, bounded).
		hs, _ := readHeaderSection(bufio.NewReader(newTransferReader(r, lp.off, n, cte).reuse(&b.scratch)))
		if len(hs) > maxHeaderSize {
			hs = hs[:maxHeaderSize]
		}
		filename = nestedMessageName(hs)
	}
	cid := contentID(lp.header("Content-Id"))
	b.layout.Attachments = append(b.layout.Attachments, span)
	b.m.Attachments = append(b.m.Attachments, Attachment{
		Filename:    filename,
		ContentType: ct,
		Size:        size,
		SHA256:      hex.EncodeToString(sum.Sum(nil)),
		Inline:      disposition == "inline" || disposition == "" && cid != "",
		ContentID:   cid,
	})
}

// checkText reads a body part's decoded content and returns the problems
// appendText would report converting it, in its order; the error is about
// reading it. buf is scratch space of at least 96 KiB.
func checkText(id string, data io.Reader, charset string, isHTML bool, buf []byte) (problems []string, err error) {
	if charset == "" && isHTML {
		// The head goes after the first 32 KiB of buf, which the rest of
		// the reading uses.
		head := buf[32<<10+utf8.UTFMax:][:64<<10]
		n, err := io.ReadFull(data, head)
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, err
		}
		head = head[:n]
		if m := metaCharset.FindSubmatch(head); m != nil {
			charset = string(m[1])
		}
		data = io.MultiReader(bytes.NewReader(head), data)
	}
	enc, kind := lookupCharset(charset)
	switch kind {
	case charsetUnknown:
		problems = append(problems, fmt.Sprintf("%sunknown charset %q; read as utf-8 or windows-1252", where(id), truncate(charset, 40)))
	case charsetUTF8:
		valid, err := validUTF8(data, buf[:32<<10+utf8.UTFMax])
		if err != nil {
			return nil, err
		}
		if !valid {
			problems = append(problems, fmt.Sprintf("%sinvalid utf-8 replaced with U+FFFD", where(id)))
		}
		return problems, nil
	case charsetDecoder:
		// As appendText's textWriter.fromReader reads it.
		tr := transform.NewReader(data, enc.NewDecoder())
		for {
			_, err := tr.Read(buf[:32<<10])
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				var re *readErr
				if errors.As(err, &re) {
					return problems, err
				}
				problems = append(problems, fmt.Sprintf("%sdecoding %s: %v", where(id), truncate(charset, 40), err))
				break
			}
		}
	}
	// Read to the end, for the transfer decoding's problems.
	for {
		_, err := data.Read(buf[:32<<10])
		if errors.Is(err, io.EOF) {
			return problems, nil
		}
		if err != nil {
			return problems, err
		}
	}
}

// validUTF8 reports whether what r gives is valid UTF-8, reading it all
// into buf.
func validUTF8(r io.Reader, buf []byte) (bool, error) {
	carry, valid := 0, true
	for {
		n, err := r.Read(buf[carry:])
		p := buf[:carry+n]
		// An incomplete rune at the end waits for the rest.
		cut := len(p)
		for i := len(p) - 1; i >= 0 && i >= len(p)-utf8.UTFMax+1; i-- {
			if utf8.RuneStart(p[i]) {
				if !utf8.FullRune(p[i:]) {
					cut = i
				}
				break
			}
		}
		if valid && !utf8.Valid(p[:cut]) {
			valid = false
		}
		carry = copy(buf, p[cut:])
		if errors.Is(err, io.EOF) {
			return valid && carry == 0, nil
		}
		if err != nil {
			return false, err
		}
	}
}
