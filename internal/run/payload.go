package run

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"mailtrigger/internal/mail"
	"mailtrigger/internal/store"
)

// PayloadVersion is the version of the webhook body. Fields may be added
// without changing it (receivers ignore what they do not know); removing or
// changing the meaning of a field makes a new version.
const PayloadVersion = 1

// EventType is the Standard Webhooks event type of the webhook body.
const EventType = "email.received"

// Payload is the JSON body of a webhook delivery.
type Payload struct {
	Version int            `json:"version"`
	Type    string         `json:"type"`
	Run     PayloadRun     `json:"run"`
	IMAP    string         `json:"imap"`
	Message PayloadMessage `json:"message"`
}

// PayloadRun identifies the run being delivered.
type PayloadRun struct {
	ID          string    `json:"id"` // also the webhook-id header: the idempotency key
	Flow        string    `json:"flow"`
	Attempt     int       `json:"attempt"`     // 1 for the first delivery attempt
	TriggeredAt time.Time `json:"triggeredAt"` // when the run was created
}

// PayloadMessage is the message that started the run.
type PayloadMessage struct {
	ID         int64          `json:"id"` // the API's message id
	MessageID  string         `json:"messageId"`
	Subject    string         `json:"subject"`
	From       []mail.Address `json:"from"`
	To         []mail.Address `json:"to"`
	Cc         []mail.Address `json:"cc"`
	ReplyTo    []mail.Address `json:"replyTo"`
	Date       *time.Time     `json:"date"` // null when missing or unreadable
	ReceivedAt time.Time      `json:"receivedAt"`
	Size       int64          `json:"size"`
	// TooLarge is set when the message was over the size cap: only its
	// header was kept, so text, html and attachments are empty.
	TooLarge bool `json:"tooLarge"`
	// ParseError says what could not be read, "" for a clean message.
	ParseError  string              `json:"parseError"`
	Text        string              `json:"text"`
	HTML        string              `json:"html"`
	Attachments []PayloadAttachment `json:"attachments"`
}

// PayloadAttachment describes one attachment; with includeAttachments its
// content is inline, or ContentOmitted says why not.
type PayloadAttachment struct {
	Filename       string `json:"filename"`
	ContentType    string `json:"contentType"`
	Size           int64  `json:"size"`
	SHA256         string `json:"sha256"`
	URL            string `json:"url"`
	Content        []byte `json:"content,omitzero"`         // base64 in JSON; "" for an empty file
	ContentOmitted string `json:"contentOmitted,omitempty"` // why Content is absent although asked for
}

// buildPayload returns the body for run r of message m, without attachment
// content.
func (w *Worker) buildPayload(r store.Run, attempt int, m store.StoredMessage) Payload {
	p := Payload{
		Version: PayloadVersion,
		Type:    EventType,
		Run:     PayloadRun{ID: r.PublicID, Flow: r.FlowName, Attempt: attempt, TriggeredAt: r.CreatedAt.UTC()},
		IMAP:    r.IMAPName,
		Message: PayloadMessage{
			ID: m.ID, MessageID: m.MessageID, Subject: m.Subject,
			From: addrs(m.From), To: addrs(m.To), Cc: addrs(m.Cc), ReplyTo: addrs(m.ReplyTo),
			Date: m.Date, ReceivedAt: m.ReceivedAt.UTC(), Size: m.Size, TooLarge: m.TooLarge, ParseError: m.ParseError,
			Text: m.Text, HTML: m.HTML, Attachments: []PayloadAttachment{},
		},
	}
	if p.IMAP == "" {
		p.IMAP = m.IMAPName
	}
	if p.Message.Date != nil {
		d := p.Message.Date.UTC()
		p.Message.Date = &d
	}
	base := strings.TrimRight(w.opts.BaseURL, "/")
	for _, a := range m.Attachments {
		p.Message.Attachments = append(p.Message.Attachments, PayloadAttachment{
			Filename: a.Filename, ContentType: a.ContentType, Size: a.Size, SHA256: a.SHA256,
			URL: fmt.Sprintf("%s/api/v1/messages/%d/attachments/%d", base, m.ID, a.N),
		})
	}
	return p
}

func addrs(a []mail.Address) []mail.Address {
	if a == nil {
		return []mail.Address{}
	}
	return a
}

// contentBytes bounds the attachment content withContent can put in a
// payload of m within limit bytes: all of m's attachments, at most limit.
// It does not repeat withContent's choice of which fit (which counts the
// content it actually read, an attachment no longer stored none), so that
// the two cannot disagree with the bound the smaller.
func contentBytes(m store.StoredMessage, limit int64) int64 {
	var total int64
	for _, a := range m.Attachments {
		total += a.Size
	}
	return min(total, limit)
}

// withContent returns a copy of p whose attachments carry their content, in
// order, as long as the total stays within limit bytes; the others say why
// they were left out.
func (w *Worker) withContent(ctx context.Context, p Payload, m store.StoredMessage, limit int64) (Payload, error) {
	atts := make([]PayloadAttachment, len(p.Message.Attachments))
	copy(atts, p.Message.Attachments)
	var total int64
	for i, a := range m.Attachments {
		if total+a.Size > limit {
			atts[i].ContentOmitted = fmt.Sprintf("over the limit of %d bytes of attachment content per delivery; fetch it from url", limit)
			continue
		}
		_, content, err := w.store.AttachmentContent(ctx, m.ID, a.N)
		if errors.Is(err, store.ErrNotFound) {
			atts[i].ContentOmitted = "not stored"
			continue
		}
		if err != nil {
			return p, err
		}
		if content == nil {
			content = []byte{}
		}
		total += int64(len(content))
		atts[i].Content = content
	}
	p.Message.Attachments = atts
	return p, nil
}

// encode marshals p without escaping <, > and & (HTML bodies stay readable).
// The message's text and HTML, most of the bytes, are written by
// appendJSONString, which gives encoding/json's bytes a fifth faster
// (BenchmarkEncode); the rest by encoding/json.
func encode(p Payload) ([]byte, error) {
	text, html := p.Message.Text, p.Message.HTML
	p.Message.Text, p.Message.HTML = "", ""
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(p); err != nil {
		return nil, err
	}
	out := bytes.TrimSuffix(b.Bytes(), []byte("\n"))
	// The only unescaped `"text":"","html":""` is the fields themselves: a
	// quote inside any string is written \".
	const empty = `"text":"","html":""`
	i := bytes.Index(out, []byte(empty))
	if i < 0 {
		return nil, errors.New("encoding the payload: text and html fields not found")
	}
	body := make([]byte, 0, len(out)+len(text)+len(html)+len(text)/8+len(html)/8+16)
	body = append(body, out[:i]...)
	body = append(body, `"text":`...)
	body = appendJSONString(body, text)
	body = append(body, `,"html":`...)
	body = appendJSONString(body, html)
	body = append(body, out[i+len(empty):]...)
	return body, nil
}

// jsonSafe marks the bytes appendJSONString copies as they are: printable
// ASCII but '"' and '\\'.
var jsonSafe = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// appendJSONString appends s as a JSON string, exactly as encoding/json
// writes it with HTML escaping off: '"', '\\', and the control characters
// escaped (\b, \f, \n, \r, \t by name, the others as \u00xx), invalid
// UTF-8 as \ufffd, U+2028 and U+2029 as \u2028 and \u2029.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		for i < len(s) && jsonSafe[s[i]] {
			i++
		}
		if i >= len(s) {
			break
		}
		c := s[i]
		if c >= 0xC2 && c <= 0xDF && i+1 < len(s) && s[i+1]&0xC0 == 0x80 {
			i += 2 // a valid two-byte sequence (ä, ö, ü, é…): as it is
			continue
		}
		if c < utf8.RuneSelf {
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xF])
		default:
			i += n
			continue
		}
		i += n
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
