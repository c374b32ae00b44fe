package mail

import (
	"encoding/base64"
	"fmt"
	"strings"
)

// DecodeHeader decodes an unstructured header value such as a Subject into
// UTF-8: folded lines are unfolded, raw 8-bit bytes that are not valid UTF-8
// are read as windows-1252, and RFC 2047 encoded words are decoded in any
// charset golang.org/x/text knows (UTF-8, ISO-8859-*, windows-125x, KOI8-R,
// ISO-2022-JP, Shift_JIS, EUC-JP, GB2312/GBK/GB18030, Big5, EUC-KR, …).
//
// It is lenient the way mail clients are: encoded words are recognised even
// when not separated from surrounding text, white space between adjacent
// encoded words is dropped (RFC 2047 §6.2), adjacent words in the same
// charset are decoded together so a character split across two words
// survives, and an RFC 2231 language suffix ("=?UTF-8*en?Q?…?=") is ignored.
// A word with an unknown charset or a malformed payload is left as it is.
// Line breaks in the result become spaces, NUL becomes U+FFFD, and the result
// is trimmed.
func DecodeHeader(raw string) string {
	s, _ := decodeHeader(raw)
	return s
}

// decodeHeader is DecodeHeader that also reports what it could not decode.
func decodeHeader(raw string) (string, []string) {
	s := rawToUTF8(unfold(raw))
	if !strings.Contains(s, "=?") {
		return cleanHeaderText(s), nil
	}
	s, problems := decodeWords(s)
	return cleanHeaderText(s), problems
}

// unfold removes the line breaks of a folded header value (RFC 5322 §2.2.3):
// a CRLF (or bare LF or CR) followed by white space is removed; any other line
// break is replaced by a space.
func unfold(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\r' && c != '\n' {
			b.WriteByte(c)
			continue
		}
		if c == '\r' && i+1 < len(s) && s[i+1] == '\n' {
			i++
		}
		if i+1 < len(s) && (s[i+1] == ' ' || s[i+1] == '\t') {
			continue
		}
		b.WriteByte(' ')
	}
	return b.String()
}

// cleanHeaderText makes a decoded header value safe to store and show: valid
// UTF-8, no line breaks (they could split a log line or an HTTP header
// downstream), no NUL (PostgreSQL refuses it in text), trimmed.
func cleanHeaderText(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if strings.ContainsAny(s, "\r\n\x00") {
		s = strings.NewReplacer("\r", " ", "\n", " ", "\x00", "\uFFFD").Replace(s)
	}
	return strings.Trim(s, " \t")
}

// decodeWords decodes the RFC 2047 encoded words of s in one pass, in time
// linear in len(s) and memory a small multiple of it, however many words
// it holds (issue 12: a subject of 1.75 million words once took 1.27 GB
// when every word was kept as a piece before joining). White space between
// two encoded words is dropped and a run of adjacent words in the same
// charset is decoded together; one scratch buffer holds the words' bytes.
func decodeWords(s string) (string, []string) {
	d := wordDecoder{s: s}
	d.out.Grow(len(s))
	litStart, pos := 0, 0
	for pos < len(s) {
		i := strings.Index(s[pos:], "=?")
		if i < 0 {
			break
		}
		pos += i
		n, ok := d.word(pos)
		switch {
		case n == 0:
			pos += 2 // not an encoded word: keep "=?" and look further
		case !ok:
			pos += n // shaped like one but not decodable: kept as written
		default:
			lit := s[litStart:pos]
			if !d.inRun || strings.Trim(lit, " 	") != "" {
				d.flush()
				d.out.WriteString(lit)
			}
			if d.inRun && d.charset != d.wordCharset {
				d.flush()
			}
			d.charset, d.inRun = d.wordCharset, true
			d.data = append(d.data, d.scratch...)
			pos += n
			litStart = pos
		}
	}
	d.flush()
	d.out.WriteString(s[litStart:])
	return d.out.String(), d.problems
}

// wordDecoder is the state of decodeWords.
type wordDecoder struct {
	s        string
	out      strings.Builder
	problems []string
	next     int // the first "?=" at or after the last position asked; 0 before the first search
	none     bool
	// The run of adjacent encoded words being gathered.
	inRun   bool
	charset string
	data    []byte
	// The word word last read: its charset and decoded bytes.
	wordCharset string
	scratch     []byte
	// The last charset looked up, as written, and what it is.
	lastRaw, lastName string
	lastKnown         bool
}

// flush decodes the run gathered so far into out.
func (d *wordDecoder) flush() {
	if !d.inRun {
		return
	}
	if d.charset == "utf-8" {
		d.out.WriteString(strings.ToValidUTF8(string(d.data), "\uFFFD"))
	} else {
		text, _ := decodeCharset(d.charset, d.data)
		d.out.WriteString(text)
	}
	d.inRun, d.data = false, d.data[:0]
}

func (d *wordDecoder) problem(p string) {
	if len(d.problems) < 10 {
		d.problems = append(d.problems, p)
	}
}

// terminator finds the next "?=" at or after from, which only moves
// forward, scanning each byte of s once.
func (d *wordDecoder) terminator(from int) int {
	if d.none {
		return -1
	}
	if d.next >= from && d.next > 0 {
		return d.next
	}
	i := strings.Index(d.s[from:], "?=")
	if i < 0 {
		d.none = true
		return -1
	}
	d.next = from + i
	return d.next
}

// word reads the encoded word at s[start:], which starts with "=?", into
// wordCharset and scratch. n is the number of bytes it spans, 0 if it is not
// shaped like an encoded word; ok is false for one that is shaped like one
// but cannot be decoded (a problem is noted).
func (d *wordDecoder) word(start int) (n int, ok bool) {
	s := d.s
	head := s[start+2 : min(len(s), start+2+65)]
	q1 := strings.IndexByte(head, '?')
	if q1 <= 0 {
		return 0, false
	}
	charset := head[:q1]
	if strings.ContainsAny(charset, " \t\"=") {
		return 0, false
	}
	textStart := start + 2 + q1 + 3 // after "=?charset?X?"
	if textStart > len(s) || s[textStart-1] != '?' {
		return 0, false
	}
	enc := s[textStart-2]
	if enc != 'B' && enc != 'b' && enc != 'Q' && enc != 'q' {
		return 0, false
	}
	end := d.terminator(textStart)
	if end < 0 {
		return 0, false
	}
	payload := s[textStart:end]
	n = end + 2 - start
	if charset != d.lastRaw || d.lastName == "" {
		name := strings.ToLower(charset)
		if i := strings.IndexByte(name, '*'); i >= 0 {
			name = name[:i]
		}
		_, kind := lookupCharset(name)
		d.lastRaw, d.lastName, d.lastKnown = charset, name, kind != charsetUnknown
	}
	if !d.lastKnown {
		d.problem(fmt.Sprintf("unknown charset %q in encoded word", charset))
		return n, false
	}
	if enc == 'B' || enc == 'b' {
		d.scratch, ok = decodeWordBase64(d.scratch[:0], payload)
	} else {
		d.scratch, ok = decodeWordQ(d.scratch[:0], payload), true
	}
	if !ok {
		d.problem(fmt.Sprintf("malformed encoded word %q", truncate(s[start:start+n], 80)))
		return n, false
	}
	d.wordCharset = d.lastName
	return n, true
}

// decodeWordBase64 appends the B-encoded p to dst, tolerating white space
// and missing or excess padding.
func decodeWordBase64(dst []byte, p string) ([]byte, bool) {
	if strings.ContainsAny(p, " \t") {
		p = strings.Map(func(r rune) rune {
			if r == ' ' || r == '\t' {
				return -1
			}
			return r
		}, p)
	}
	p = strings.TrimRight(p, "=")
	if len(p)%4 == 1 {
		return dst, false
	}
	n := base64.RawStdEncoding.DecodedLen(len(p))
	dst = append(dst, make([]byte, n)...)
	m, err := base64.RawStdEncoding.Decode(dst[len(dst)-n:], []byte(p))
	if err != nil {
		return dst[:len(dst)-n], false
	}
	return dst[:len(dst)-n+m], true
}

// decodeWordQ appends the Q-encoded p to dst; a "=" not followed by two hex
// digits is kept literally.
func decodeWordQ(dst []byte, p string) []byte {
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c == '_':
			dst = append(dst, ' ')
		case c == '=' && i+2 < len(p) && isHex(p[i+1]) && isHex(p[i+2]):
			dst = append(dst, unhex(p[i+1])<<4|unhex(p[i+2]))
			i += 2
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// truncate shortens s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n] + "…"
}
