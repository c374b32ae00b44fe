// Package mail reads raw RFC 5322 messages into a Message: decoded subject,
// addresses, date, Message-ID, text and HTML bodies, and attachments with
// their content, size and SHA-256.
//
// Parsing is lenient, as real mail needs: Parse never fails and never panics.
// Whatever could not be read is described in Message.ParseErrors, and the
// rest of the message is still returned, so one bad message never stops a
// mailbox; the caller stores the raw message beside it.
//
// Parse takes a whole message in memory and is meant for messages below the
// size cap; ParseHeader reads only the header section of a bigger message
// from a stream. Both read the header the same way, so the fields they
// return, and DedupeKey, agree for the same message.
//
// All strings in a Message are valid UTF-8 without NUL bytes, ready for JSON
// and for PostgreSQL text columns.
package mail

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Address is a mailbox from an address header.
type Address struct {
	Name    string `json:"name"`
	Address string `json:"address"`
}

// Attachment is a message part that is not the text or HTML body: a file, an
// inline image, an attached message, a calendar invitation, a signature.
type Attachment struct {
	// Filename is from Content-Disposition's filename, else Content-Type's
	// name (RFC 2231 and RFC 2047 decoded), reduced to a base name; an
	// attached message without one is named after its subject plus ".eml".
	// It may be empty.
	Filename    string `json:"filename"`
	ContentType string `json:"contentType"` // lower-case media type without parameters
	Size        int64  `json:"size"`        // of Content
	SHA256      string `json:"sha256"`      // hex SHA-256 of Content
	// Content is the part after transfer decoding (base64,
	// quoted-printable); text attachments keep their charset.
	Content   []byte `json:"-"`
	Inline    bool   `json:"inline"`              // disposition inline, or none but a Content-ID
	ContentID string `json:"contentId,omitempty"` // without angle brackets, for cid: URLs
}

// Message is a parsed message.
type Message struct {
	// MessageID is the Message-ID without angle brackets, "" if absent.
	MessageID string    `json:"messageId"`
	Subject   string    `json:"subject"` // decoded, see DecodeHeader
	From      []Address `json:"from"`
	To        []Address `json:"to"`
	Cc        []Address `json:"cc"`
	ReplyTo   []Address `json:"replyTo"`
	// Date is the Date header; zero if it is missing or unparsable.
	Date time.Time `json:"date,omitzero"`
	// Text is every text/plain body part and HTML every text/html body part,
	// concatenated, converted to UTF-8 with "\n" line endings. Text is not
	// made up from the HTML when the message has none.
	Text        string       `json:"text"`
	HTML        string       `json:"html"`
	Attachments []Attachment `json:"attachments"`
	// Size is the size of the raw message in bytes.
	Size int64 `json:"size"`
	// TooLarge is set by ParseHeader: only the header was read.
	TooLarge bool `json:"tooLarge"`
	// ParseErrors says what could not be read; empty for a clean message.
	// They are never fatal.
	ParseErrors []string `json:"parseErrors,omitempty"`
	// Layout, when set, locates Text, HTML and every attachment's content
	// in the raw message (see Layout). ParseFile always sets it, and leaves
	// Text, HTML and the attachments' Content empty.
	Layout *Layout `json:"-"`
}

// maxHeaderSize bounds the header section ParseHeader reads.
const maxHeaderSize = 4 << 20

// maxProblems bounds ParseErrors.
const maxProblems = 50

// Parse parses a whole message held in memory. It never fails: whatever could
// not be read is in ParseErrors. A multipart structure nested deeper than 25
// levels or with more than 1000 parts is not taken apart (the body is kept as
// text, with a parse error): no real message comes near that, and it bounds
// the time and memory a hostile message can cost. Past other budgets the rest
// is skipped, with a parse error naming the limit: 5000 header fields, 100
// parameters per Content-Type or Content-Disposition, 1000 addresses or
// 256 KiB per address header. Attachment contents never share memory with
// raw. The heap needed beyond raw stays below four times len(raw) whatever
// the message's shape (TestHostileMemory), and the work is linear in it.
func Parse(raw []byte) *Message {
	m, _ := parse(raw, fastPathEnabled)
	return m
}

// parse is Parse, trying the fast path for multipart bodies first if fast
// is set; usedFast says whether the fast path took the body.
func parse(raw []byte, fast bool) (m *Message, usedFast bool) {
	b := newBuilder(int64(len(raw)))
	b.fast = fast
	defer func() {
		if r := recover(); r != nil {
			b.problem("internal error: %v", r)
			m, usedFast = b.finish(), b.usedFast
		}
	}()
	if len(raw) == 0 {
		b.problem("empty message")
		m = b.finish()
		m.Layout = &Layout{}
		return m, false
	}
	h, body, problems := readHeader(raw)
	for _, p := range problems {
		b.problem("%s", p)
	}
	b.fillHeader(h)
	// body is the end of raw (or nil, at its end).
	b.bodyOff = int64(len(raw) - len(body))
	b.parseBody(h, body)
	m = b.finish()
	if !b.unlocated {
		m.Layout = &b.layout
	}
	return m, b.usedFast
}

// ParseHeader reads only the header section of a message from r, for
// messages over the size cap; size is the whole message's size. It reads r up
// to the empty line that ends the header (at most 4 MiB of header, plus what
// a bufio.Reader buffers beyond it) and never reads the body into memory;
// the caller discards or limits the rest of r. The result has TooLarge set
// and no bodies or attachments. The error is only about reading r; problems
// with the header itself are in ParseErrors, as with Parse.
func ParseHeader(r io.Reader, size int64) (*Message, error) {
	b := newBuilder(size)
	b.m.TooLarge = true
	raw, err := readHeaderSection(bufio.NewReader(r))
	if err != nil {
		return nil, fmt.Errorf("reading message header: %w", err)
	}
	if len(raw) == 0 {
		b.problem("empty message")
	}
	if len(raw) > maxHeaderSize {
		raw = raw[:maxHeaderSize]
		b.problem("header section longer than %d bytes; the rest was not read", maxHeaderSize)
	}
	h, _, problems := readHeader(raw)
	for _, p := range problems {
		if p != "header section not ended by an empty line" {
			b.problem("%s", p)
		}
	}
	b.fillHeader(h)
	return b.finish(), nil
}

// readHeaderSection returns the bytes of the header section including the
// empty line that ends it, or up to maxHeaderSize+1 bytes.
func readHeaderSection(br *bufio.Reader) ([]byte, error) {
	var raw []byte
	atLineStart := true
	for len(raw) <= maxHeaderSize {
		line, err := br.ReadSlice('\n')
		raw = append(raw, line...)
		if err == nil {
			if atLineStart && (len(line) == 1 || len(line) == 2 && line[0] == '\r') {
				return raw, nil
			}
			atLineStart = true
			continue
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			atLineStart = false
			continue
		}
		if errors.Is(err, io.EOF) {
			return raw, nil
		}
		return nil, err
	}
	return raw, nil
}

// builder accumulates a Message and its problems.
type builder struct {
	m          *Message
	text, html strings.Builder
	seen       map[string]bool
	more       int  // problems not recorded beyond maxProblems
	fast       bool // try the fast path (fastmime.go) before enmime
	usedFast   bool // the fast path took the body
	quiet      bool // problems are not wanted (decoding again on read)
	// bodyOff is the offset of the body in the raw message; layout
	// locates the leaves there, unless one was not located or enmime read
	// the body (unlocated).
	bodyOff   int64
	layout    Layout
	unlocated bool
	scratch   scratch // ParseFile's buffers
}

func newBuilder(size int64) *builder {
	return &builder{m: &Message{Size: size}, seen: make(map[string]bool)}
}

// problem records what went wrong, once per distinct text.
func (b *builder) problem(format string, args ...any) {
	if b.quiet {
		return
	}
	p := cleanHeaderText(truncate(fmt.Sprintf(format, args...), 300))
	if p == "" || b.seen[p] {
		return
	}
	if len(b.m.ParseErrors) >= maxProblems {
		b.more++
		return
	}
	b.seen[p] = true
	b.m.ParseErrors = append(b.m.ParseErrors, p)
}

// fillHeader sets the fields that come from the top-level header.
func (b *builder) fillHeader(h header) {
	m := b.m
	subject, problems := decodeHeader(h.get("Subject"))
	m.Subject = subject
	for _, p := range problems {
		b.problem("subject: %s", p)
	}
	m.MessageID = parseMessageID(h.get("Message-Id"))
	var problem string
	if m.Date, problem = parseDate(h.get("Date")); problem != "" {
		b.problem("%s", problem)
	}
	for _, f := range []struct {
		key string
		dst *[]Address
	}{{"From", &m.From}, {"To", &m.To}, {"Cc", &m.Cc}, {"Reply-To", &m.ReplyTo}} {
		values := h.values(f.key)
		if len(values) == 0 {
			continue
		}
		list, problem := parseAddressList(strings.Join(values, ", "))
		*f.dst = list
		if problem != "" {
			b.problem("%s: %s", strings.ToLower(f.key), problem)
		}
	}
}

// finish makes empty lists non-nil, so that JSON shows [] rather than null.
func (b *builder) finish() *Message {
	m := b.m
	if b.more > 0 {
		m.ParseErrors = append(m.ParseErrors, fmt.Sprintf("and %d more problems", b.more))
		b.more = 0
	}
	for _, l := range []*[]Address{&m.From, &m.To, &m.Cc, &m.ReplyTo} {
		if *l == nil {
			*l = []Address{}
		}
	}
	if m.Attachments == nil {
		m.Attachments = []Attachment{}
	}
	// Valid UTF-8 without NUL as they are: textWriter writes nothing else
	// (invalid bytes and NUL become U+FFFD, and plain takes only valid
	// UTF-8 without NUL), which checkInvariants holds Parse to in
	// FuzzParse (and FuzzLayoutAgrees holds Layout.Bodies to Parse).
	// Checking them again here was a fifth of the parse of a backlog's
	// text bodies.
	m.Text = b.text.String()
	m.HTML = b.html.String()
	return m
}

// ParseError returns ParseErrors as one line, "" for a clean message.
func (m *Message) ParseError() string {
	return strings.Join(m.ParseErrors, "; ")
}

// DedupeKey identifies the message across a UIDVALIDITY change, when the
// folder must be read again without triggering what was already recorded.
// It is "message-id:" plus the Message-ID if there is one, else "sha256:"
// plus the hex SHA-256 of the date (RFC 3339, UTC; empty if unknown), the
// sender (first From address, lower-cased, else its name), the decoded
// subject and the size. The prefixes keep the two kinds apart. It depends
// only on exported fields, so it can be recomputed from a stored Message; it
// changes if the decoding of those fields changes, so store it rather than
// recompute it for old messages.
func (m *Message) DedupeKey() string {
	if m.MessageID != "" {
		return "message-id:" + m.MessageID
	}
	var date, sender string
	if !m.Date.IsZero() {
		date = m.Date.UTC().Format(time.RFC3339)
	}
	if len(m.From) > 0 {
		sender = strings.ToLower(m.From[0].Address)
		if sender == "" {
			sender = m.From[0].Name
		}
	}
	h := sha256.New()
	for _, s := range []string{date, sender, m.Subject, strconv.FormatInt(m.Size, 10)} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}
