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
)

// headerField is one header field. Its value is as written, a substring of
// the header section: a folded value keeps its line breaks, which get and
// values remove (see unfoldLines), so that reading a header costs no copy
// per line however many lines it has.
type headerField struct {
	key   string // canonical, as by textproto.CanonicalMIMEHeaderKey
	value string
}

// header is a message's or a part's header section in order.
type header []headerField

// get returns the first value of key, unfolded and trimmed, or "".
func (h header) get(key string) string {
	key = textproto.CanonicalMIMEHeaderKey(key)
	for _, f := range h {
		if f.key == key {
			return strings.TrimSpace(unfoldLines(f.value))
		}
	}
	return ""
}

// values returns every value of key, unfolded and trimmed.
func (h header) values(key string) []string {
	key = textproto.CanonicalMIMEHeaderKey(key)
	var vs []string
	for _, f := range h {
		if f.key == key {
			vs = append(vs, strings.TrimSpace(unfoldLines(f.value)))
		}
	}
	return vs
}

// unfoldLines removes the line breaks ("\n" or "\r\n") of a value as
// readHeader keeps it; a line break followed by neither space nor tab (a
// line that lost its indentation) becomes a space.
func unfoldLines(v string) string {
	if !strings.Contains(v, "\n") {
		return v
	}
	var b strings.Builder
	b.Grow(len(v))
	for {
		i := strings.IndexByte(v, '\n')
		if i < 0 {
			b.WriteString(v)
			return b.String()
		}
		b.WriteString(strings.TrimSuffix(v[:i], "\r"))
		v = v[i+1:]
		if v != "" && v[0] != ' ' && v[0] != '\t' {
			b.WriteByte(' ')
		}
	}
}

// maxHeaderFields bounds the fields kept of one header section: real mail
// has a few dozen (a few hundred with a long Received trail), and each kept
// field costs more memory than its shortest form takes in the message.
const maxHeaderFields = 5000

// readHeader reads the header section at the start of raw leniently and
// returns it with the body that follows. The section ends at the first empty
// line; it also ends, with a problem noted, at a line that is neither a field
// nor a continuation, unless the next line is a field again (then the line is
// taken as a continuation that lost its indentation). A leading mbox "From "
// line is skipped. Lines with an invalid field name are skipped with a problem
// noted, and so are the fields after the first maxHeaderFields. Raw bytes are
// kept; decoding is left to the caller. The header section is copied to a
// string once; keys and values are substrings of it.
func readHeader(raw []byte) (h header, body []byte, problems []string) {
	end := headerEnd(raw)
	hs := string(raw[:end])
	pos := 0
	// The last field's value runs from valStart to valEnd in hs while its
	// continuation lines follow it directly; after a skipped line in
	// between it is built by concatenation (rare).
	valStart, valEnd := -1, -1
	dropped, tooMany := 0, false
	extend := func(lineStart, lineEnd int, line string) {
		f := &h[len(h)-1]
		if valStart >= 0 && lineStart > valEnd && strings.Trim(hs[valEnd:lineStart], "\r\n") == "" && strings.Count(hs[valEnd:lineStart], "\n") == 1 {
			valEnd = lineEnd
			f.value = hs[valStart:valEnd]
			return
		}
		f.value += "\n" + line
		valStart = -1
	}
	for pos < len(hs) {
		line, next := nextLineString(hs, pos)
		lineEnd := pos + len(line)
		if len(line) == 0 {
			return h, raw[next:], problems
		}
		switch {
		case line[0] == ' ' || line[0] == '\t':
			if dropped > 0 {
				break
			}
			if len(h) == 0 {
				problems = addProblem(problems, fmt.Sprintf("header section starts with a continuation line %q", truncate(line, 80)))
				break
			}
			extend(pos, lineEnd, line)
		case pos == 0 && strings.HasPrefix(line, "From "):
			// mbox separator
		default:
			key, value, ok := splitFieldString(line)
			if ok {
				dropped = 0
				if key == "" {
					break
				}
				if len(h) >= maxHeaderFields {
					if dropped = 1; !tooMany {
						tooMany = true
						problems = addProblem(problems, fmt.Sprintf("more than %d header fields; the rest were skipped", maxHeaderFields))
					}
					break
				}
				h = append(h, headerField{key: key, value: value})
				valStart, valEnd = lineEnd-len(value), lineEnd
				break
			}
			if nextLineIsField(hs, next) {
				if len(h) > 0 && !strings.ContainsRune(line, ':') {
					problems = addProblem(problems, fmt.Sprintf("header line %q was not indented; taken as a continuation", truncate(line, 80)))
					if dropped == 0 {
						extend(pos, lineEnd, line)
					}
				} else {
					problems = addProblem(problems, fmt.Sprintf("skipped malformed header line %q", truncate(line, 80)))
					valStart = -1
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

// headerEnd returns the length of the header section at the start of raw
// including the empty line that ends it, or len(raw) if there is none.
func headerEnd(raw []byte) int {
	pos := 0
	for pos < len(raw) {
		line, next := nextLine(raw, pos)
		if len(line) == 0 {
			return next
		}
		pos = next
	}
	return len(raw)
}

// nextLineString is nextLine for a string.
func nextLineString(s string, pos int) (line string, next int) {
	i := strings.IndexByte(s[pos:], '\n')
	if i < 0 {
		line, next = s[pos:], len(s)
	} else {
		line, next = s[pos:pos+i], pos+i+1
	}
	return strings.TrimSuffix(line, "\r"), next
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
func nextLineIsField(s string, pos int) bool {
	if pos >= len(s) {
		return false
	}
	line, _ := nextLineString(s, pos)
	if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
		return true
	}
	_, _, ok := splitFieldString(line)
	return ok
}

// splitField splits "Key: value"; the key must be printable ASCII without
// spaces, though spaces before the colon are tolerated.
func splitField(line []byte) (key, value string, ok bool) {
	k, v, ok := splitFieldString(string(line))
	return k, v, ok
}

// splitFieldString is splitField for a string; key and value are
// substrings of line unless the key had to be canonicalised.
func splitFieldString(line string) (key, value string, ok bool) {
	i := strings.IndexByte(line, ':')
	if i < 0 {
		return "", "", false
	}
	k := strings.TrimRight(line[:i], " \t")
	if len(k) == 0 {
		return "", "", false
	}
	for j := 0; j < len(k); j++ {
		if c := k[j]; c < 33 || c > 126 {
			return "", "", false
		}
	}
	return textproto.CanonicalMIMEHeaderKey(k), line[i+1:], true
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
		// One encoded word at a time: decoded at once rather than
		// through a transform.Reader and its two 4 KiB buffers, which a
		// header of many words would allocate again for each one.
		b, err := io.ReadAll(input)
		if err != nil {
			return nil, err
		}
		out, err := enc.NewDecoder().Bytes(b)
		if err != nil {
			return nil, err
		}
		return bytes.NewReader(out), nil
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
	if cut, ok := cutAddresses(s, maxAddresses); ok {
		list, problem := parseAddresses(cut)
		if problem == "" {
			problem = fmt.Sprintf("more than %d addresses or %d bytes of them; the rest were skipped", maxAddresses, maxAddressBytes)
		}
		return list, problem
	}
	return parseAddresses(s)
}

// parseAddresses is parseAddressList for a value already unfolded and cut.
func parseAddresses(s string) ([]Address, string) {
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

// maxAddresses and maxAddressBytes bound what is read of one address
// header (all its fields together): each address kept costs several times
// its text, and each encoded word in a name costs net/mail's decoder several
// hundred bytes. A To of a thousand recipients takes about 60 KB.
const (
	maxAddresses    = 1000
	maxAddressBytes = 256 << 10
)

// cutAddresses returns s up to its n-th top-level comma or the last one
// before maxAddressBytes, and whether there was more; it allocates nothing.
func cutAddresses(s string, n int) (string, bool) {
	if len(s) <= maxAddressBytes && strings.Count(s, ",") < n {
		return s, false
	}
	end := -1
	cut := func(quotes bool) bool {
		end = -1
		k := n
		var balanced bool
		visitCommas(s, quotes, func(i int) bool {
			if i > maxAddressBytes {
				return false
			}
			end, k = i, k-1
			return k > 0
		}, &balanced)
		return balanced
	}
	if !cut(true) {
		cut(false)
	}
	if end < 0 {
		if len(s) <= maxAddressBytes {
			return s, false
		}
		i := maxAddressBytes
		for i > 0 && s[i]&0xC0 == 0x80 {
			i--
		}
		return s[:i], true
	}
	return s[:end], true
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
	start := 0
	visitCommas(s, quotes, func(i int) bool {
		parts = append(parts, s[start:i])
		start = i + 1
		return true
	}, &balanced)
	return append(parts, s[start:]), balanced
}

// visitCommas calls comma with the index of each comma of s outside
// quotes, angle brackets and comments, until it returns false, and reports
// whether the quotes were balanced (when the scan reached the end).
func visitCommas(s string, quotes bool, comma func(i int) bool, balanced *bool) {
	var (
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
			if !comma(i) {
				*balanced = true
				return
			}
		}
	}
	*balanced = !quoted
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
	if t, err := parseMailDate(s); err == nil {
		return t, ""
	}
	c := strings.Join(strings.Fields(dateComment.ReplaceAllString(s, " ")), " ")
	c = dateDayComma.ReplaceAllString(c, "$1, $2")
	if t, err := parseMailDate(c); err == nil {
		return t, ""
	}
	for _, layout := range dateLayouts {
		if t, err := time.Parse(layout, c); err == nil {
			return t, ""
		}
	}
	return time.Time{}, fmt.Sprintf("unparsable date %q", truncate(s, 100))
}

// parseMailDate is net/mail.ParseDate, quicker for the usual form
// ("[Mon, ]2 Jan 2006 15:04:05 -0700", then white space and comments):
// ParseDate tries its 24 layouts in turn, and each that fails costs a
// dozen allocations. A date of that form is parsed with the one layout that
// ParseDate would find first (the first without a day name if it starts
// with a digit; otherwise none of those can match and the first with one
// is next), from the same part of the value; anything else is left to
// ParseDate (FuzzParseMailDate compares them).
func parseMailDate(s string) (time.Time, error) {
	if strings.ContainsAny(s, "\r\n") {
		return mail.ParseDate(s)
	}
	p := strings.TrimLeft(s, " \t")
	ind := strings.IndexAny(p, "+-")
	if ind <= 0 || len(p) < ind+5 || !skipsAsCFWS(p[ind+5:]) {
		return mail.ParseDate(s)
	}
	date := p[:ind+5]
	layout := "2 Jan 2006 15:04:05 -0700"
	if c := date[0]; c < '0' || c > '9' {
		layout = "Mon, 2 Jan 2006 15:04:05 -0700"
	}
	if t, err := time.Parse(layout, date); err == nil {
		return t, nil
	}
	return mail.ParseDate(s)
}

// skipsAsCFWS says whether net/mail.ParseDate accepts what follows the
// zone: white space and comments (nested, with quoted pairs), then
// anything not starting with a comment.
func skipsAsCFWS(s string) bool {
	s = strings.TrimLeft(s, " \t")
	for len(s) > 0 && s[0] == '(' {
		s = s[1:]
		depth := 1
		for len(s) > 0 && depth > 0 {
			switch {
			case s[0] == '\\' && len(s) > 1:
				s = s[1:]
			case s[0] == '(':
				depth++
			case s[0] == ')':
				depth--
			}
			s = s[1:]
		}
		if depth > 0 {
			return false
		}
		s = strings.TrimLeft(s, " \t")
	}
	return true
}
