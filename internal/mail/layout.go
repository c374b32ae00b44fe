package mail

import (
	"fmt"
	"io"
	"strings"
)

// Layout says where a message's text and HTML bodies and its attachments
// are in its raw bytes, with what is needed to decode them: the raw message
// is the record, and what Parse decodes from it is derived again on read
// (Bodies, Attachment) instead of being stored a second time.
//
// A Message has a Layout only when every body part and every attachment was
// found at a place in raw: then Bodies gives exactly Message.Text and
// Message.HTML, and Attachment(n) exactly Message.Attachments[n].Content.
// A message the lenient parser had to take apart has none, and its decoded
// parts are stored as they are.
type Layout struct {
	Text        []Span `json:"text,omitempty"`        // the text/plain body parts, in order
	HTML        []Span `json:"html,omitempty"`        // the text/html body parts, in order
	Attachments []Span `json:"attachments,omitempty"` // one for each of Message.Attachments
}

// Span is one part's content as written in the raw message.
type Span struct {
	Off int64 `json:"o"` // offset in the raw message
	Len int64 `json:"n"` // length there, transfer-encoded
	// Encoding is the part's Content-Transfer-Encoding field as written
	// ("" if absent).
	Encoding string `json:"e,omitempty"`
	// Charset is the body part's charset parameter ("" if absent); not set
	// for attachments, which keep their bytes.
	Charset string `json:"c,omitempty"`
}

// Bodies decodes the text and HTML bodies of a message laid out as l from
// its raw bytes: the same strings Parse put in Message.Text and Message.HTML.
// Problems met while decoding were reported by Parse and are ignored here;
// the error is only about reading raw.
func (l *Layout) Bodies(raw io.ReaderAt) (text, html string, err error) {
	b := &builder{quiet: true}
	for _, part := range []struct {
		spans  []Span
		sb     *strings.Builder
		isHTML bool
	}{{l.Text, &b.text, false}, {l.HTML, &b.html, true}} {
		for _, s := range part.spans {
			content, err := readSpan(raw, s)
			if err != nil {
				return "", "", err
			}
			data, _ := b.decodeTransfer("", content, s.Encoding)
			b.appendText(part.sb, "", data, s.Charset, part.isHTML)
		}
	}
	return b.text.String(), b.html.String(), nil // valid UTF-8, as builder.finish says
}

// Attachment returns a reader of attachment n's content, decoded as Parse
// decoded it into Message.Attachments[n].Content, reading raw as it goes
// (a chunk at a time: nothing the size of the attachment is held). Its
// errors are about reading raw.
func (l *Layout) Attachment(raw io.ReaderAt, n int) (io.Reader, error) {
	if n < 0 || n >= len(l.Attachments) {
		return nil, fmt.Errorf("attachment %d of %d: no such attachment", n, len(l.Attachments))
	}
	s := l.Attachments[n]
	if s.Off < 0 || s.Len < 0 {
		return nil, fmt.Errorf("attachment %d at %d (%d bytes): invalid span", n, s.Off, s.Len)
	}
	// Decoded as it is read (stream.go), to what decodeTransfer gives.
	return newTransferReader(raw, s.Off, s.Len, s.Encoding), nil
}

// readSpan reads a span's bytes from raw.
func readSpan(raw io.ReaderAt, s Span) ([]byte, error) {
	if s.Off < 0 || s.Len < 0 {
		return nil, fmt.Errorf("reading part at %d (%d bytes): invalid span", s.Off, s.Len)
	}
	buf := make([]byte, s.Len)
	if _, err := io.ReadFull(io.NewSectionReader(raw, s.Off, s.Len), buf); err != nil {
		return nil, fmt.Errorf("reading part at %d (%d bytes): %w", s.Off, s.Len, err)
	}
	return buf, nil
}
