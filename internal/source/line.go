package source

import (
	"bufio"
	"errors"
	"fmt"
)

// MaxLineLength bounds one line a mail server sends (POP3, and IMAP outside
// literals), its line end included. RFC 1939 and RFC 2449 allow 512 octets
// for a POP3 response line; real servers stay near that, and an IMAP
// response line other than a message's data is a few kilobytes at most. 64
// KiB is lenient with all of them, and what a hostile server (or anyone on
// the path before STARTTLS) can make the client hold with a line that never
// ends.
const MaxLineLength = 64 << 10

// ErrLineTooLong is matched by the error of a line a server sent that is
// longer than its bound (LineTooLong). The connection cannot be used any
// more.
var ErrLineTooLong = errors.New("line too long")

// LineTooLong returns the error of a server's line longer than limit bytes:
// "reading the server's reply: line longer than 65536 bytes". It matches
// ErrLineTooLong, and never quotes the line.
func LineTooLong(limit int) error { return lineTooLongError(limit) }

type lineTooLongError int

func (e lineTooLongError) Error() string {
	return fmt.Sprintf("reading the server's reply: line longer than %d bytes", int(e))
}

func (e lineTooLongError) Is(target error) bool { return target == ErrLineTooLong }

// ReadLine reads one line from r and returns it without its line end (CRLF
// or a bare LF). A line longer than MaxLineLength fails with an error
// matching ErrLineTooLong once that much has been read, without the rest of
// it being read or the line's text being quoted. Any other error of r is
// returned as is, and a line cut short by the end of the input is not
// returned.
func ReadLine(r *bufio.Reader) (string, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if len(line)+len(chunk) > MaxLineLength {
			return "", LineTooLong(MaxLineLength)
		}
		switch {
		case err == nil && line == nil:
			return string(trimLineEnd(chunk)), nil
		case err == nil:
			return string(trimLineEnd(append(line, chunk...))), nil
		case errors.Is(err, bufio.ErrBufferFull):
			line = append(line, chunk...)
		default:
			return "", err
		}
	}
}

// trimLineEnd removes the LF that ends line, and the CR before it.
func trimLineEnd(line []byte) []byte {
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line
}
