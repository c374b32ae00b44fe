package imapsource

import (
	"bytes"
	"io"
	"math"
	"net"
	"sync"

	"mailtrigger/internal/source"
)

// Bounds of a response from the server, the message data that FETCH
// returns as literals left out.
const (
	// maxResponse bounds any response but SEARCH's: a few kilobytes are
	// enough for every response this client asks for.
	maxResponse = source.MaxLineLength
	// maxSearchResponse bounds a SEARCH or ESEARCH response, which lists
	// the UIDs found on one line (UID SEARCH UID n:* lists the whole
	// backlog): at 11 bytes for the longest UIDs, 6 million of them.
	maxSearchResponse = 64 << 20
	// headLen bounds what responseLimit keeps of a response's start to
	// tell its kind: "* 4294967295 PREAUTH " and more.
	headLen = 32
)

// responseLimit reads the server's side of an IMAP connection for
// imapclient, whose decoder holds a response's line, and the quoted strings
// and literals it takes as strings (mailbox names, envelope fields), in
// memory whatever their length. It fails once a response is longer than
// maxResponse (maxSearchResponse for SEARCH and ESEARCH), with an error
// matching source.ErrLineTooLong that it also keeps (Failure): imapclient
// passes on the errors of its reader only as text.
//
// A response runs from its start to the line end where imapclient's
// decoder takes it to end, and everything in it counts, except message
// data: a literal that follows a body section ("BODY[] {N}", "BINARY[1]
// ~{N}") in a FETCH response. imapclient streams that to the fetch, which
// bounds it with the size cap (readLiteral), so a 50 MB message with long
// lines reads as before. To find the ends, it follows the decoder:
//
//   - A continuation request ("+ …") and a status response (OK, NO, BAD,
//     BYE, PREAUTH, and every tagged response) are text up to the line end,
//     except for a response code ("[…]"), which the decoder skips up to its
//     "]" across line ends.
//   - Any other response is data: a quoted string runs to its closing quote
//     across line ends, and a literal is announced by "{N}" at the end of a
//     line (the line end CRLF, LF, or either after a space), its N bytes
//     part of the response. ("{N+}" is a literal only from client to
//     server; the decoder fails on it, so it is not one here either.)
//
// Where it reads a response differently from the decoder, the decoder
// fails on it, or it counts more than the decoder holds, never less.
type responseLimit struct {
	r io.Reader

	n       int       // bytes of the current response, message data left out
	limit   int       // its bound
	state   scanState // where in the response the next byte is
	head    []byte    // its first bytes, until its kind is known
	fetch   bool      // it is a FETCH response
	ann     announce  // a literal's announcement being read
	literal int64     // bytes of the literal being read still to come
	data    bool      // that literal is message data, not counted

	mu  sync.Mutex
	err error // why it failed
}

type scanState int

const (
	inHead      scanState = iota // the tag or "*", the number, the type
	afterStatus                  // after a status response's type and space
	inCode                       // in a response code, up to "]"
	inText                       // in text, up to the line end
	inData                       // in a data response, outside quoted strings
	inQuoted                     // in a quoted string
	inEscape                     // after a backslash in a quoted string
)

func newResponseLimit(r io.Reader) *responseLimit {
	return &responseLimit{r: r, limit: maxResponse, head: make([]byte, 0, headLen)}
}

// Read reads from the connection. Once a response is over its bound, it
// returns that error and nothing more.
func (l *responseLimit) Read(p []byte) (int, error) {
	if err := l.Failure(); err != nil {
		return 0, err
	}
	n, err := l.r.Read(p)
	if lerr := l.scan(p[:n]); lerr != nil {
		l.mu.Lock()
		l.err = lerr
		l.mu.Unlock()
		return 0, lerr
	}
	return n, err
}

// Failure returns the error of the response that was too long, if one was
// (nil on a nil responseLimit).
func (l *responseLimit) Failure() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// scan follows the responses through b, the next bytes read.
func (l *responseLimit) scan(b []byte) error {
	for len(b) > 0 {
		if l.literal > 0 {
			k := int(min(int64(len(b)), l.literal))
			l.literal -= int64(k)
			b = b[k:]
			if l.data {
				continue
			}
			if err := l.count(k); err != nil {
				return err
			}
			continue
		}
		if err := l.count(1); err != nil {
			return err
		}
		l.step(b[0])
		b = b[1:]
	}
	return nil
}

// count adds k bytes to the current response.
func (l *responseLimit) count(k int) error {
	l.n += k
	if l.n > l.limit {
		return source.LineTooLong(l.limit)
	}
	return nil
}

// step takes c, the next byte outside literals.
func (l *responseLimit) step(c byte) {
	switch l.state {
	case inHead:
		l.headByte(c)
	case afterStatus:
		if c == '[' {
			l.state = inCode
			return
		}
		l.state = inText
		l.step(c)
	case inCode:
		if c == ']' {
			l.state = inText
		}
	case inText:
		if c == '\n' {
			l.end()
		}
	case inData:
		l.dataByte(c)
	case inQuoted:
		switch c {
		case '\\':
			l.state = inEscape
		case '"':
			l.state = inData
		}
	case inEscape:
		l.state = inQuoted
	}
}

// headByte takes c, a byte of a response's start, and finds out the
// response's kind from the tag or "*", the number and the type.
func (l *responseLimit) headByte(c byte) {
	switch {
	case c == '\n':
		l.end()
		return
	case c == '+' && len(l.head) == 0:
		l.state = inText // a continuation request
		return
	}
	l.head = append(l.head, c)
	if c == ' ' {
		l.classify()
	}
	if l.state == inHead && len(l.head) == headLen {
		l.state = inData // the decoder fails on such a start
	}
}

// classify sets the state after the head's last space, once the head holds
// the response's type.
func (l *responseLimit) classify() {
	words := bytes.Split(l.head[:len(l.head)-1], []byte(" "))
	if len(words) < 2 {
		return
	}
	untagged := string(words[0]) == "*"
	typ := words[1]
	numbered := untagged && allDigits(typ)
	if numbered {
		if len(words) < 3 {
			return
		}
		typ = words[2]
	}
	switch {
	case !untagged || isWord(typ, "OK", "NO", "BAD", "BYE", "PREAUTH"):
		// The decoder reads every tagged response as a status response.
		l.state = afterStatus
	case numbered && isWord(typ, "FETCH"):
		l.state, l.fetch = inData, true
	case !numbered && isWord(typ, "SEARCH", "ESEARCH"):
		l.state, l.limit = inData, maxSearchResponse
	default:
		l.state = inData
	}
}

// dataByte takes c, a byte of a data response outside quoted strings.
func (l *responseLimit) dataByte(c byte) {
	switch c {
	case '"':
		l.state = inQuoted
		l.ann = announce{}
	case '\n':
		size, ok := l.ann.done()
		if !ok {
			l.end()
			return
		}
		l.literal = size
		l.data = l.fetch && l.ann.afterSection
		l.ann = announce{}
	default:
		l.ann.step(c)
	}
}

// end starts the next response.
func (l *responseLimit) end() {
	l.n, l.limit, l.state, l.head = 0, maxResponse, inHead, l.head[:0]
	l.fetch, l.ann, l.data = false, announce{}, false
}

// announce reads the announcement of a literal, "{N}" before a line end,
// and what comes before it.
type announce struct {
	state    annState
	size     int64
	overflow bool
	// section is how far the bytes before are the end of a body section
	// and a space: "]" or "]<0>", " ", "~".
	section      int
	afterSection bool // the "{" followed them
}

type annState int

const (
	annNone   annState = iota
	annOpen            // after "{"
	annDigits          // after "{" and one digit or more
	annClosed          // after "}"
	annSpace           // after "} "
	annCR              // after "}\r" or "} \r"
)

// The values of announce.section.
const (
	secNone    = iota
	secBracket // "]"
	secPartial // "]<" and digits
	secEnded   // "]<…>"
	secSpace   // and a space
	secTilde   // and "~"
)

// step takes c, a byte of a data response that is not a line end.
func (a *announce) step(c byte) {
	if c == '{' {
		*a = announce{state: annOpen, afterSection: a.section == secSpace || a.section == secTilde}
		return
	}
	a.stepSection(c)
	switch {
	case (a.state == annOpen || a.state == annDigits) && c >= '0' && c <= '9':
		a.state = annDigits
		d := int64(c - '0')
		a.overflow = a.overflow || a.size > (math.MaxInt64-d)/10
		a.size = a.size*10 + d
	case a.state == annDigits && c == '}':
		a.state = annClosed
	case a.state == annClosed && c == ' ':
		a.state = annSpace
	case (a.state == annClosed || a.state == annSpace) && c == '\r':
		a.state = annCR
	default:
		a.state = annNone
	}
}

func (a *announce) stepSection(c byte) {
	switch {
	case c == ']':
		a.section = secBracket
	case c == '<' && a.section == secBracket:
		a.section = secPartial
	case c >= '0' && c <= '9' && a.section == secPartial:
	case c == '>' && a.section == secPartial:
		a.section = secEnded
	case c == ' ' && (a.section == secBracket || a.section == secEnded):
		a.section = secSpace
	case c == '~' && a.section == secSpace:
		a.section = secTilde
	default:
		a.section = secNone
	}
}

// done reports, at a line end, whether a literal was announced, and its
// size.
func (a *announce) done() (size int64, ok bool) {
	switch a.state {
	case annClosed, annSpace, annCR:
		return a.size, !a.overflow
	}
	return 0, false
}

func isWord(b []byte, words ...string) bool {
	for _, w := range words {
		if bytes.EqualFold(b, []byte(w)) {
			return true
		}
	}
	return false
}

func allDigits(b []byte) bool {
	for _, d := range b {
		if d < '0' || d > '9' {
			return false
		}
	}
	return len(b) > 0
}

// limitedConn is a connection whose reads go through a responseLimit.
type limitedConn struct {
	net.Conn
	limit *responseLimit
}

func (c *limitedConn) Read(p []byte) (int, error) { return c.limit.Read(p) }
