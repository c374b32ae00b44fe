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
	pieces, problems := splitEncodedWords(s)
	return cleanHeaderText(joinEncodedWords(pieces)), problems
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

// wordPiece is a run of literal text or one RFC 2047 encoded word.
type wordPiece struct {
	text    string // literal text, or the encoded word as written
	encoded bool   // a well-formed encoded word whose charset is known
	charset string // lower-cased charset name without language suffix
	data    []byte // the word's payload after B or Q decoding
}

// splitEncodedWords cuts s into literal text and encoded words, in time
// linear in len(s) however many "=?" it holds.
func splitEncodedWords(s string) ([]wordPiece, []string) {
	var (
		pieces   []wordPiece
		problems []string
		lit      strings.Builder
		terms    = terminators{s: s, next: -1}
	)
	flush := func() {
		if lit.Len() > 0 {
			pieces = append(pieces, wordPiece{text: lit.String()})
			lit.Reset()
		}
	}
	pos := 0
	for pos < len(s) {
		i := strings.Index(s[pos:], "=?")
		if i < 0 {
			lit.WriteString(s[pos:])
			break
		}
		lit.WriteString(s[pos : pos+i])
		pos += i
		w, n, problem := parseEncodedWord(s, pos, &terms)
		if problem != "" && len(problems) < 10 {
			problems = append(problems, problem)
		}
		switch {
		case n == 0:
			// Not an encoded word: keep "=?" and look further.
			lit.WriteString("=?")
			pos += 2
		case !w.encoded:
			lit.WriteString(s[pos : pos+n])
			pos += n
		default:
			flush()
			pieces = append(pieces, w)
			pos += n
		}
	}
	flush()
	return pieces, problems
}

// terminators finds the next "?=" in s at or after a position that only
// moves forward, scanning each byte once.
type terminators struct {
	s    string
	next int // the first "?=" at or after the last position asked; -1 before the first call
	none bool
}

func (t *terminators) find(from int) int {
	if t.none {
		return -1
	}
	if t.next >= from {
		return t.next
	}
	i := strings.Index(t.s[from:], "?=")
	if i < 0 {
		t.none = true
		return -1
	}
	t.next = from + i
	return t.next
}

// parseEncodedWord parses the encoded word at s[start:], which starts with
// "=?". It returns the number of bytes the word spans, 0 if it is not shaped
// like an encoded word. A word that is shaped like one but cannot be decoded
// comes back with encoded false and a problem.
func parseEncodedWord(s string, start int, terms *terminators) (w wordPiece, n int, problem string) {
	head := s[start+2 : min(len(s), start+2+65)]
	q1 := strings.IndexByte(head, '?')
	if q1 <= 0 {
		return w, 0, ""
	}
	charset := head[:q1]
	if strings.ContainsAny(charset, " \t\"=") {
		return w, 0, ""
	}
	textStart := start + 2 + q1 + 3 // after "=?charset?X?"
	if textStart > len(s) || s[textStart-1] != '?' {
		return w, 0, ""
	}
	enc := s[textStart-2]
	if enc != 'B' && enc != 'b' && enc != 'Q' && enc != 'q' {
		return w, 0, ""
	}
	end := terms.find(textStart)
	if end < 0 {
		return w, 0, ""
	}
	payload := s[textStart:end]
	n = end + 2 - start
	w.text = s[start : end+2]

	name := strings.ToLower(charset)
	if i := strings.IndexByte(name, '*'); i >= 0 {
		name = name[:i]
	}
	if _, kind := lookupCharset(name); kind == charsetUnknown {
		return w, n, fmt.Sprintf("unknown charset %q in encoded word", charset)
	}
	var data []byte
	var ok bool
	if enc == 'B' || enc == 'b' {
		data, ok = decodeWordBase64(payload)
	} else {
		data, ok = decodeWordQ(payload)
	}
	if !ok {
		return w, n, fmt.Sprintf("malformed encoded word %q", truncate(w.text, 80))
	}
	w.encoded, w.charset, w.data = true, name, data
	return w, n, ""
}

// decodeWordBase64 decodes the B encoding, tolerating white space and
// missing or excess padding.
func decodeWordBase64(p string) ([]byte, bool) {
	p = strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' {
			return -1
		}
		return r
	}, p)
	p = strings.TrimRight(p, "=")
	if len(p)%4 == 1 {
		return nil, false
	}
	b, err := base64.RawStdEncoding.DecodeString(p)
	if err != nil {
		return nil, false
	}
	return b, true
}

// decodeWordQ decodes the Q encoding; a "=" not followed by two hex digits is
// kept literally.
func decodeWordQ(p string) ([]byte, bool) {
	b := make([]byte, 0, len(p))
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c == '_':
			b = append(b, ' ')
		case c == '=' && i+2 < len(p) && isHex(p[i+1]) && isHex(p[i+2]):
			b = append(b, unhex(p[i+1])<<4|unhex(p[i+2]))
			i += 2
		default:
			b = append(b, c)
		}
	}
	return b, true
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

// joinEncodedWords drops white space between encoded words, decodes runs of
// adjacent words in the same charset together and concatenates the result.
func joinEncodedWords(pieces []wordPiece) string {
	var b strings.Builder
	for i := 0; i < len(pieces); i++ {
		p := pieces[i]
		if !p.encoded {
			if i > 0 && i+1 < len(pieces) && pieces[i-1].encoded && pieces[i+1].encoded &&
				strings.Trim(p.text, " \t") == "" {
				continue
			}
			b.WriteString(p.text)
			continue
		}
		data := p.data
		for i+1 < len(pieces) {
			next := i + 1
			if !pieces[next].encoded && strings.Trim(pieces[next].text, " \t") == "" &&
				next+1 < len(pieces) && pieces[next+1].encoded {
				next++
			}
			if !pieces[next].encoded || pieces[next].charset != p.charset {
				break
			}
			if len(data) == len(p.data) {
				data = append([]byte(nil), p.data...)
			}
			data = append(data, pieces[next].data...)
			i = next
		}
		s, _ := decodeCharset(p.charset, data)
		b.WriteString(s)
	}
	return b.String()
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
