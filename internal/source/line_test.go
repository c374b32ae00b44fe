package source

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestReadLine(t *testing.T) {
	atBound := strings.Repeat("x", MaxLineLength-2)
	tests := []struct {
		name    string
		wire    string
		want    []string // the lines read before the error
		wantErr error
	}{
		{"CRLF", "+OK one\r\n-ERR two\r\n", []string{"+OK one", "-ERR two"}, io.EOF},
		{"bare LF", "a\nb\r\n", []string{"a", "b"}, io.EOF},
		{"empty line", "\r\n", []string{""}, io.EOF},
		{"CR inside kept", "a\rb\r\n", []string{"a\rb"}, io.EOF},
		{"at the bound", atBound + "\r\nnext\r\n", []string{atBound, "next"}, io.EOF},
		{"one over the bound", atBound + "x\r\nnext\r\n", nil, ErrLineTooLong},
		{"bare LF at the bound", atBound + "x\nnext\n", []string{atBound + "x", "next"}, io.EOF},
		{"cut short", "a\r\nhalf", []string{"a"}, io.EOF},
	}
	for _, tt := range tests {
		for _, size := range []int{16, 4096} {
			r := bufio.NewReaderSize(iotest.HalfReader(strings.NewReader(tt.wire)), size)
			var got []string
			var err error
			for {
				var line string
				if line, err = ReadLine(r); err != nil {
					break
				}
				got = append(got, line)
			}
			if !errors.Is(err, tt.wantErr) || strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("%s, buffer %d: got %.40q, %v; want %.40q, %v", tt.name, size, got, err, tt.want, tt.wantErr)
			}
		}
	}
}

// endless is a line that never ends.
type endless struct{ read int }

func (e *endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'A'
	}
	e.read += len(p)
	return len(p), nil
}

func TestReadLineEndless(t *testing.T) {
	src := &endless{}
	_, err := ReadLine(bufio.NewReader(src))
	if !errors.Is(err, ErrLineTooLong) || err.Error() != "reading the server's reply: line longer than 65536 bytes" {
		t.Errorf("got %v, want the line too long", err)
	}
	if src.read > MaxLineLength+4096 {
		t.Errorf("got %d bytes read, want at most the bound and a buffer", src.read)
	}
}
