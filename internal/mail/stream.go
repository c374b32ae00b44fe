package mail

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"
)

// Streaming transfer decoding: a part's content is decoded as it is read
// from the raw message, a chunk at a time, to exactly what decodeBase64 and
// decodeQuotedPrintable give for the whole of it (FuzzStreamDecoders
// compares them). ParseFile hashes attachments through it and
// Layout.Attachment returns it.

// transferEncoding is a Content-Transfer-Encoding field reduced to its
// token, lower-case, as decodeTransfer reads it.
func transferEncoding(cte string) string {
	enc := strings.ToLower(strings.Trim(strings.TrimSpace(cte), `"`))
	if i := strings.IndexAny(enc, "; \t"); i >= 0 {
		enc = enc[:i]
	}
	return enc
}

// streamDecoder decodes a transfer encoding incrementally. write consumes
// input from the start of p, appending output to out, and returns how much
// it consumed; it stops early only when a long run of white space must be
// copied from the source first (spill). close flushes what is pending at
// the end of the input.
type streamDecoder interface {
	write(p, out []byte) ([]byte, int)
	close(out []byte) []byte
	spill() (off, n int64)
	spilled(n int64)
}

// identityDecoder passes the content through (7bit, 8bit, binary and
// unknown encodings).
type identityDecoder struct{ noSpill }

func (identityDecoder) write(p, out []byte) ([]byte, int) { return append(out, p...), len(p) }
func (identityDecoder) close(out []byte) []byte           { return out }

type noSpill struct{}

func (noSpill) spill() (int64, int64) { return 0, 0 }
func (noSpill) spilled(int64)         {}

// base64Decoder is decodeBase64's lenient loop, fed in chunks. (When the
// standard decoder accepts the whole input, which decodeBase64 tries first,
// the loop gives the same bytes.)
type base64Decoder struct {
	noSpill
	group     [1024]byte
	n         int
	junk      int
	truncated bool
}

// base64Class sorts bytes for base64Decoder: 0 alphabet, 1 padding,
// 2 white space (skipped), 3 junk (counted and skipped).
var base64Class = func() (t [256]byte) {
	for i := range t {
		t[i] = 3
	}
	for _, c := range []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/") {
		t[c] = 0
	}
	t['='] = 1
	for _, c := range []byte(" \t\r\n") {
		t[c] = 2
	}
	return t
}()

func (d *base64Decoder) write(p, out []byte) ([]byte, int) {
	for i := 0; i < len(p); {
		// A run of the alphabet (most of a line) is copied at once.
		j := i
		for j < len(p) && base64Class[p[j]] == 0 {
			j++
		}
		for i < j {
			k := copy(d.group[d.n:], p[i:j])
			d.n += k
			i += k
			if d.n == len(d.group) {
				out = d.flush(out)
			}
		}
		if i == len(p) {
			break
		}
		switch base64Class[p[i]] {
		case 1:
			out = d.flush(out)
		case 3:
			d.junk++
		}
		i++
	}
	return out, len(p)
}

func (d *base64Decoder) flush(out []byte) []byte {
	if d.n%4 == 1 {
		d.truncated = true
		d.n--
	}
	if d.n == 0 {
		return out
	}
	l := len(out)
	out = slices.Grow(out, base64.RawStdEncoding.DecodedLen(d.n))
	m, err := base64.RawStdEncoding.Decode(out[l:cap(out)], d.group[:d.n])
	if err != nil {
		d.truncated = true
	}
	d.n = 0
	return out[:l+m]
}

func (d *base64Decoder) close(out []byte) []byte { return d.flush(out) }

// qpMaxWS is the longest run of white space a qpDecoder keeps in memory
// while it cannot tell whether the run ends its line (and is dropped);
// a longer one is copied from the source afterwards (a variable for tests).
var qpMaxWS = 4 << 10

// qpDecoder is decodeQuotedPrintable fed in chunks. What it cannot decide
// before the line goes on or ends is pending: an "=" or "=X" that may be
// an escape or a soft line break, the white space after it, and a CR that
// may end the line.
type qpDecoder struct {
	pos   int64   // offset in the source of the next input byte
	esc   [2]byte // pending "=" (nesc 1) or "=X" (nesc 2)
	nesc  int
	ws    []byte // pending white space, if it fits qpMaxWS
	wsOff int64  // where the pending white space starts in the source
	wsLen int64  // its length
	cr    bool   // a pending CR
	// spillOff and spillN say what white space must be copied from the
	// source before the next input byte.
	spillOff, spillN int64
}

func (d *qpDecoder) spill() (int64, int64) { return d.spillOff, d.spillN }
func (d *qpDecoder) spilled(n int64)       { d.spillOff += n; d.spillN -= n }

// resolve emits what is pending as literal text: the line goes on. It
// reports false if a long run of white space must be spilled first.
func (d *qpDecoder) resolve(out []byte) ([]byte, bool) {
	if d.nesc > 0 {
		out = append(out, d.esc[:d.nesc]...)
		d.nesc = 0
	}
	if d.wsLen > 0 {
		if d.wsLen > int64(len(d.ws)) {
			d.spillOff, d.spillN = d.wsOff, d.wsLen
			d.wsLen = 0
			return out, false
		}
		out = append(out, d.ws...)
		d.ws, d.wsLen = d.ws[:0], 0
	}
	return out, true
}

func (d *qpDecoder) write(p, out []byte) ([]byte, int) {
	for i := 0; i < len(p); i++ {
		c := p[i]
		if d.cr && c != '\n' {
			var ok bool
			if out, ok = d.resolve(out); !ok {
				d.pos += int64(i)
				return out, i // the CR stays pending
			}
			out = append(out, '\r')
			d.cr = false
		}
		switch {
		case c == '\n':
			eol := "\n"
			if d.cr {
				eol = "\r\n"
			}
			d.cr = false
			d.ws, d.wsLen = d.ws[:0], 0
			soft := d.nesc == 1
			if d.nesc == 2 {
				out = append(out, d.esc[:2]...)
			}
			d.nesc = 0
			if !soft {
				out = append(out, eol...)
			}
		case c == ' ' || c == '\t':
			if d.nesc == 2 {
				out = append(out, d.esc[:2]...)
				d.nesc = 0
			}
			if d.wsLen == 0 {
				d.wsOff = d.pos + int64(i)
			}
			if d.wsLen++; d.wsLen <= int64(qpMaxWS) {
				d.ws = append(d.ws, c)
			} else {
				d.ws = d.ws[:0]
			}
		case c == '\r':
			d.cr = true
		case c == '=':
			var ok bool
			if out, ok = d.resolve(out); !ok {
				d.pos += int64(i)
				return out, i
			}
			d.esc[0], d.nesc = '=', 1
		case isHex(c) && d.nesc > 0 && d.wsLen == 0:
			if d.nesc == 1 {
				d.esc[1], d.nesc = c, 2
			} else {
				out = append(out, unhex(d.esc[1])<<4|unhex(c))
				d.nesc = 0
			}
		default:
			var ok bool
			if out, ok = d.resolve(out); !ok {
				d.pos += int64(i)
				return out, i
			}
			out = append(out, c)
		}
	}
	d.pos += int64(len(p))
	return out, len(p)
}

func (d *qpDecoder) close(out []byte) []byte {
	// The last line has no line break: a CR, trailing white space and a
	// soft break are dropped, an incomplete escape is kept.
	if d.nesc == 2 {
		out = append(out, d.esc[:2]...)
	}
	d.nesc, d.cr, d.wsLen = 0, false, 0
	return out
}

// newStreamDecoder returns the decoder for a Content-Transfer-Encoding
// field, as decodeTransfer reads it.
func newStreamDecoder(cte string, off int64) streamDecoder {
	switch transferEncoding(cte) {
	case "base64":
		return &base64Decoder{}
	case "quoted-printable":
		return &qpDecoder{pos: off}
	}
	return identityDecoder{}
}

// transferReader reads a part's content from src, decoded.
type transferReader struct {
	src      io.ReaderAt
	pos, end int64
	dec      streamDecoder
	buf      []byte // input read ahead
	in       []byte // what of buf the decoder has not consumed
	out      []byte
	outPos   int
	closed   bool
	err      error
	chunk    int // input read at a time (tests make it small)
}

// newTransferReader decodes the n bytes at off in src as Content-Transfer-
// Encoding cte.
func newTransferReader(src io.ReaderAt, off, n int64, cte string) *transferReader {
	return &transferReader{src: src, pos: off, end: off + n, dec: newStreamDecoder(cte, off), chunk: transferChunk}
}

// reuse makes t read into the buffers of s (ParseFile decodes its parts one
// after another), allocating them the first time.
func (t *transferReader) reuse(s *scratch) *transferReader {
	if s.in == nil {
		s.in = make([]byte, transferChunk)
		s.out = make([]byte, 0, transferChunk+transferChunk/2)
	}
	t.buf, t.out = s.in, s.out[:0]
	return t
}

// scratch holds the buffers ParseFile reuses from part to part.
type scratch struct {
	in, out []byte // a transferReader's
	text    []byte // checkText's
}

func (s *scratch) textBuf() []byte {
	if s.text == nil {
		s.text = make([]byte, 96<<10+utf8.UTFMax)
	}
	return s.text
}

const transferChunk = 32 << 10

func (t *transferReader) Read(p []byte) (int, error) {
	for {
		if t.outPos < len(t.out) {
			n := copy(p, t.out[t.outPos:])
			t.outPos += n
			return n, nil
		}
		if t.err != nil {
			return 0, t.err
		}
		if t.out == nil {
			t.out = make([]byte, 0, t.chunk+t.chunk/2)
		}
		t.out, t.outPos = t.out[:0], 0
		if off, n := t.dec.spill(); n > 0 {
			n = min(n, int64(t.chunk))
			t.out = t.out[:n]
			if err := readFullAt(t.src, t.out, off); err != nil {
				t.out = t.out[:0]
				t.err = err
				continue
			}
			t.dec.spilled(n)
			continue
		}
		if len(t.in) == 0 {
			if t.pos >= t.end {
				if t.closed {
					t.err = io.EOF
				} else {
					t.out = t.dec.close(t.out)
					t.closed = true
				}
				continue
			}
			if t.buf == nil {
				t.buf = make([]byte, t.chunk)
			}
			n := int(min(int64(len(t.buf)), t.end-t.pos))
			if err := readFullAt(t.src, t.buf[:n], t.pos); err != nil {
				t.err = err
				continue
			}
			t.in, t.pos = t.buf[:n], t.pos+int64(n)
		}
		var k int
		t.out, k = t.dec.write(t.in, t.out)
		t.in = t.in[k:]
	}
}

// readFullAt reads len(p) bytes at off.
func readFullAt(src io.ReaderAt, p []byte, off int64) error {
	n, err := src.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil {
		err = io.ErrUnexpectedEOF
	}
	return readError(off+int64(n), err)
}

// readErr is a failed read of the raw message.
type readErr struct {
	off int64
	err error
}

func (e *readErr) Error() string { return fmt.Sprintf("reading message at %d: %v", e.off, e.err) }
func (e *readErr) Unwrap() error { return e.err }

// readError describes a failed read of the raw message; running out of it
// is unexpected (a span said there was more).
func readError(off int64, err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return &readErr{off: off, err: err}
}
