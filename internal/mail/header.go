package mail

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"net/textproto"
	"regexp"
	"strings"
	"time"

	"golang.org/x/text/transform"
)

// headerField is one header field, its value unfolded (line breaks removed,
// the white space after them kept) but otherwise as written.
type headerField struct {
	key   string // canonical, as by textproto.CanonicalMIMEHeaderKey
	value string
	more  []string // continuation lines while reading; joined into value at the end
}

// header is a message's or a part's header section in order.
type header []headerField

// get returns the first value of key, trimmed, or "".
func (h header) get(key string) string {
	key = textproto.CanonicalMIMEHeaderKey(key)
	for _, f := range h {
		if f.key == key {
			return strings.TrimSpace(f.value)
		}
	}
	return ""
}

// values returns every value of key, trimmed.
func (h header) values(key string) []string {
	key = textproto.CanonicalMIMEHeaderKey(key)
	var vs []string
	for _, f := range h {
		if f.key == key {
			vs = append(vs, strings.TrimSpace(f.value))
		}
	}
	return vs
}

// readHeader reads the header section at the start of raw leniently and
// returns it with the body that follows. The section ends at the first empty
// line; it also ends, with a problem noted, at a line that is neither a field
// nor a continuation, unless the next line is a field again (then the line is
// taken as a continuation that lost its indentation). A leading mbox "From "
// line is skipped. Lines with an invalid field name are skipped with a problem
// noted. Raw bytes are kept; decoding is left to the caller.
func readHeader(raw []byte) (h header, body []byte, problems []string) {
	defer func() {
		for i := range h {
			if h[i].more != nil {
				h[i].value += strings.Join(h[i].more, "")
				h[i].more = nil
			}
		}
	}()
	pos := 0
	for pos < len(raw) {
		line, next := nextLine(raw, pos)
		if len(line) == 0 {
			return h, raw[next:], problems
		}
		switch {
		case line[0] == ' ' || line[0] == '\t':
			if len(h) == 0 {
				problems = addProblem(problems, fmt.Sprintf("header section starts with a continuation line %q", truncate(string(line), 80)))
				pos = next
				continue
			}
			h[len(h)-1].more = append(h[len(h)-1].more, string(line))
		case pos == 0 && bytes.HasPrefix(line, []byte("From ")):
			// mbox separator
		default:
			key, value, ok := splitField(line)
			if ok {
				if key != "" {
					h = append(h, headerField{key: key, value: value})
				}
				break
			}
			if nextLineIsField(raw, next) {
				if len(h) > 0 && !bytes.ContainsRune(line, ':') {
					problems = addProblem(problems, fmt.Sprintf("header line %q was not indented; taken as a continuation", truncate(string(line), 80)))
					h[len(h)-1].more = append(h[len(h)-1].more, " "+string(line))
				} else {
					problems = addProblem(problems, fmt.Sprintf("skipped malformed header line %q", truncate(string(line), 80)))
				}
				break
			}
			if len(h) > 0 {
				problems = addProblem(problems, "header section not ended by an empty line")
			} else {
				problems = addProblem(problems, "no header section")
			}
			return h, raw[pos:], problems
		}
		pos = next
	}
	return h, nil, problems
}

// addProblem adds p unless there are plenty already (a hostile header can
// have millions of bad lines).
func addProblem(problems []string, p string) []string {
	if len(problems) > 2*maxProblems {
		return problems
	}
	return append(problems, p)
}

// nextLine returns the line starting at pos without its line ending, and the
// position after the line ending.
func nextLine(raw []byte, pos int) (line []byte, next int) {
	i := bytes.IndexByte(raw[pos:], '\n')
	if i < 0 {
		line, next = raw[pos:], len(raw)
	} else {
		line, next = raw[pos:pos+i], pos+i+1
	}
	return bytes.TrimSuffix(line, []byte{'\r'}), next
}

// nextLineIsField reports whether the line at pos is a header field or a
// continuation line.
func nextLineIsField(raw []byte, pos int) bool {
	if pos >= len(raw) {
		return false
	}
	line, _ := nextLine(raw, pos)
	if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
		return true
	}
	_, _, ok := splitField(line)
	return ok
}

// splitField splits "Key: value"; the key must be printable ASCII without
// spaces, though spaces before the colon are tolerated.
func splitField(line []byte) (key, value string, ok bool) {
	i := bytes.IndexByte(line, ':')
	if i < 0 {
		return "", "", false
	}
	k := bytes.TrimRight(line[:i], " \t")
	if len(k) == 0 {
		return "", "", false
	}
	for _, c := range k {
		if c < 33 || c > 126 {
			return "", "", false
		}
	}
	return textproto.CanonicalMIMEHeaderKey(string(k)), string(line[i+1:]), true
}

// headerValue prepares a structured header value for parsing: unfolded,
// raw 8-bit read as windows-1252, trimmed.
func headerValue(raw string) string {
	return strings.TrimSpace(rawToUTF8(unfold(raw)))
}

// addressParser decodes RFC 2047 words in display names in any charset.
var addressParser = mail.AddressParser{WordDecoder: &mime.WordDecoder{CharsetReader: charsetReader}}

func charsetReader(charset string, input io.Reader) (io.Reader, error) {
	enc, kind := lookupCharset(charset)
	switch kind {
	case charsetUTF8:
		return input, nil
	case charsetRaw:
		b, err := io.ReadAll(input)
		if err != nil {
			return nil, err
		}
		return strings.NewReader(rawToUTF8(string(b))), nil
	case charsetDecoder:
		return transform.NewReader(input, enc.NewDecoder()), nil
	default:
		return nil, fmt.Errorf("unknown charset %q", charset)
	}
}

// parseAddressList parses an address list header (From, To, …). What net/mail
// cannot parse is split at top-level commas and each piece read as well as it
// can be: an address in angle brackets or a word with an "@" is the address,
// the rest is the display name.
func parseAddressList(raw string) ([]Address, string) {
	s := headerValue(raw)
	if s == "" {
		return nil, ""
	}
	list, err := addressParser.ParseList(s)
	if err == nil {
		out := make([]Address, 0, len(list))
		for _, a := range list {
			out = append(out, Address{Name: cleanName(a.Name), Address: cleanHeaderText(a.Address)})
		}
		return out, ""
	}
	var out []Address
	for _, piece := range splitTopLevel(s) {
		if a, ok := lenientAddress(piece); ok {
			out = append(out, a)
		}
	}
	return out, fmt.Sprintf("parsing address list %q: %v", truncate(s, 200), err)
}

// cleanName decodes what net/mail leaves encoded (encoded words inside a
// quoted string, which many mailers write).
func cleanName(name string) string {
	if strings.Contains(name, "=?") {
		return DecodeHeader(name)
	}
	return cleanHeaderText(name)
}

// splitTopLevel splits an address list at commas outside quotes, angle
// brackets and comments. If a quote is never closed, quotes are ignored.
func splitTopLevel(s string) []string {
	parts, balanced := splitAtCommas(s, true)
	if !balanced {
		parts, _ = splitAtCommas(s, false)
	}
	return parts
}

func splitAtCommas(s string, quotes bool) (parts []string, balanced bool) {
	var (
		start          int
		quoted         bool
		angle, comment int
	)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && (quoted || comment > 0):
			i++
		case c == '"' && comment == 0 && quotes:
			quoted = !quoted
		case quoted:
		case c == '(':
			comment++
		case c == ')' && comment > 0:
			comment--
		case comment > 0:
		case c == '<':
			angle++
		case c == '>' && angle > 0:
			angle--
		case c == ',' && angle == 0:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:]), !quoted
}

var groupPrefix = regexp.MustCompile(`^[^"<>@,;()]*:`)

// lenientAddress reads one address that net/mail rejected.
func lenientAddress(piece string) (Address, bool) {
	piece = strings.TrimSpace(piece)
	if loc := groupPrefix.FindStringIndex(piece); loc != nil {
		piece = strings.TrimSpace(piece[loc[1]:])
	}
	piece = strings.TrimSpace(strings.TrimSuffix(piece, ";"))
	if piece == "" {
		return Address{}, false
	}
	if a, err := addressParser.Parse(piece); err == nil {
		return Address{Name: cleanName(a.Name), Address: cleanHeaderText(a.Address)}, true
	}
	var name, addr string
	if i := strings.LastIndexByte(piece, '<'); i >= 0 {
		name = piece[:i]
		addr = piece[i+1:]
		if j := strings.IndexByte(addr, '>'); j >= 0 {
			addr = addr[:j]
		}
	} else {
		fields := strings.Fields(piece)
		for i, f := range fields {
			if strings.Contains(f, "@") {
				addr = f
				name = strings.Join(append(fields[:i:i], fields[i+1:]...), " ")
				break
			}
		}
		if addr == "" {
			name = piece
		}
	}
	addr = strings.Trim(strings.TrimSpace(addr), `"'()<>`)
	name = strings.TrimSpace(name)
	if strings.Count(name, `"`) == 1 {
		name = strings.TrimSpace(strings.ReplaceAll(name, `"`, ""))
	}
	if len(name) >= 2 && (name[0] == '"' && name[len(name)-1] == '"' || name[0] == '(' && name[len(name)-1] == ')') {
		name = name[1 : len(name)-1]
	}
	name = strings.ReplaceAll(name, `\"`, `"`)
	a := Address{Name: DecodeHeader(name), Address: cleanHeaderText(addr)}
	return a, a.Name != "" || a.Address != ""
}

// parseMessageID returns the Message-ID without angle brackets, or "".
func parseMessageID(raw string) string {
	s := headerValue(raw)
	if i := strings.IndexByte(s, '<'); i >= 0 {
		s = s[i+1:]
		if j := strings.IndexByte(s, '>'); j >= 0 {
			s = s[:j]
		}
	} else if f := strings.Fields(s); len(f) > 0 {
		s = f[0]
	}
	s = cleanHeaderText(s)
	if len(s) > maxMessageIDLen {
		s = truncate(s, maxMessageIDLen)
	}
	return s
}

// maxMessageIDLen bounds the Message-ID (the RFC 5322 line length), so that it
// always fits a database index.
const maxMessageIDLen = 995

var (
	dateComment  = regexp.MustCompile(`\([^()]*\)`)
	dateDayComma = regexp.MustCompile(`^([A-Za-z]+),(\S)`)
	dateLayouts  = []string{
		time.RFC3339,
		"2006-01-02 15:04:05 -0700",
		"2006-01-02 15:04:05 MST",
		"2006-01-02 15:04:05",
		"2006-01-02T15:04:05",
		time.ANSIC,
		time.UnixDate,
		"Mon, 2 Jan 2006 15:04:05",
		"2 Jan 2006 15:04:05",
		"Mon, 2 Jan 2006 15:04",
		"Monday, 2 January 2006 15:04:05 -0700",
		"Monday, January 2, 2006 15:04:05 -0700",
		"Mon, 2 January 2006 15:04:05 -0700",
		"Mon, 2 Jan 2006 15:04:05 -0700 -0700",
	}
)

// parseDate parses a Date header as net/mail does and, failing that, tries the
// cleaned-up value against forms seen in the wild. A date without a zone is
// taken as UTC.
func parseDate(raw string) (time.Time, string) {
	s := headerValue(raw)
	if s == "" {
		return time.Time{}, ""
	}
	if t, err := mail.ParseDate(s); err == nil {
		return t, ""
	}
	c := strings.Join(strings.Fields(dateComment.ReplaceAllString(s, " ")), " ")
	c = dateDayComma.ReplaceAllString(c, "$1, $2")
	if t, err := mail.ParseDate(c); err == nil {
		return t, ""
	}
	for _, layout := range dateLayouts {
		if t, err := time.Parse(layout, c); err == nil {
			return t, ""
		}
	}
	return time.Time{}, fmt.Sprintf("unparsable date %q", truncate(s, 100))
}
