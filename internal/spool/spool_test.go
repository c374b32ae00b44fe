package spool

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
)

// files returns the names of the files in dir.
func files(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func message(header string, body int) []byte {
	return append([]byte(header), bytes.Repeat([]byte("0123456789abcde\n"), body/16)...)
}

func TestTake(t *testing.T) {
	header := "Subject: big\r\nFrom: a@example.org\r\n\r\n"
	msg := message(header, 64<<10)
	tests := []struct {
		name          string
		threshold     int64
		limit         int64
		wantSmall     []byte
		wantBig       []byte
		wantTruncated bool
	}{
		{"small", 1 << 20, 1 << 20, msg, nil, false},
		{"at the threshold", int64(len(msg)), 1 << 20, msg, nil, false},
		{"big", 1 << 10, 1 << 20, nil, msg, false},
		{"big at the limit", 1 << 10, int64(len(msg)), nil, msg, false},
		{"over the limit, in memory", 1 << 20, 100, msg[:100], nil, true},
		{"over the limit, spooled: the header", 1 << 10, 10 << 10, []byte(header), nil, true},
		{"over a limit inside the header", 10, 20, []byte(header[:20]), nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			var created []string
			s := &Spooler{Dir: dir, Threshold: tt.threshold, Created: func(p string) { created = append(created, p) }}
			r := bytes.NewReader(msg)
			small, big, truncated, err := s.Take(iotest.HalfReader(r), int64(len(msg)), tt.limit)
			if err != nil {
				t.Fatal(err)
			}
			if r.Len() != 0 {
				t.Errorf("got %d bytes left unread, want all read", r.Len())
			}
			if truncated != tt.wantTruncated {
				t.Errorf("got truncated %v, want %v", truncated, tt.wantTruncated)
			}
			if !bytes.Equal(small, tt.wantSmall) {
				t.Errorf("got small %.60q (%d bytes), want %.60q (%d bytes)", small, len(small), tt.wantSmall, len(tt.wantSmall))
			}
			if (big != nil) != (tt.wantBig != nil) {
				t.Fatalf("got big %v, want a file: %v", big, tt.wantBig != nil)
			}
			if big == nil {
				if len(created) != 0 || len(files(t, dir)) != 0 {
					t.Errorf("got spool files %v, want none", created)
				}
				return
			}
			if len(created) != 1 || filepath.Dir(created[0]) != dir {
				t.Errorf("got spool files created %v, want one in %s", created, dir)
			}
			if big.Size() != int64(len(tt.wantBig)) {
				t.Errorf("got size %d, want %d", big.Size(), len(tt.wantBig))
			}
			got, err := io.ReadAll(big.Reader())
			if err != nil || !bytes.Equal(got, tt.wantBig) {
				t.Errorf("got %d bytes (%v), want the message's %d", len(got), err, len(tt.wantBig))
			}
			if err := big.Close(); err != nil {
				t.Fatal(err)
			}
			if err := big.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
			if names := files(t, dir); len(names) != 0 {
				t.Errorf("got %v left after Close, want nothing", names)
			}
		})
	}
}

// TestTakeFailsCleanly cuts the reader in the middle of a spooled message:
// no file is left.
func TestTakeFailsCleanly(t *testing.T) {
	msg := message("Subject: x\r\n\r\n", 256<<10)
	for _, cut := range []int{10, 100 << 10, len(msg) - 1} {
		dir := t.TempDir()
		s := &Spooler{Dir: dir, Threshold: 1 << 10}
		boom := errors.New("connection dropped")
		r := io.MultiReader(bytes.NewReader(msg[:cut]), iotest.ErrReader(boom))
		_, big, _, err := s.Take(r, int64(len(msg)), 1<<20)
		if !errors.Is(err, boom) || big != nil {
			t.Errorf("cut at %d: got %v, %v, want the read error and no file", cut, big, err)
		}
		if names := files(t, dir); len(names) != 0 {
			t.Errorf("cut at %d: got %v left, want nothing", cut, names)
		}
	}
}

func TestReadHeader(t *testing.T) {
	long := "X: " + strings.Repeat("a", 40<<10) + "\r\n"
	tests := []struct {
		name  string
		in    string
		limit int64
		want  string
	}{
		{"crlf", "A: 1\r\nB: 2\r\n\r\nbody\r\n\r\nmore", 1000, "A: 1\r\nB: 2\r\n\r\n"},
		{"lf", "A: 1\nB: 2\n\nbody", 1000, "A: 1\nB: 2\n\n"},
		{"empty header", "\r\nbody", 1000, "\r\n"},
		{"no end", "A: 1\r\nB: 2", 1000, "A: 1\r\nB: 2"},
		{"limit", "A: 1\r\nB: 2\r\n\r\nbody", 8, "A: 1\r\nB:"},
		{"across reads", long + "\r\nbody", 1 << 20, long + "\r\n"},
		{"end split across reads", strings.Repeat("a", headerChunk-1) + "\r\n\r\nbody", 1 << 20, strings.Repeat("a", headerChunk-1) + "\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadHeader(strings.NewReader(tt.in), tt.limit)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got %.80q (%d bytes), want %.80q (%d bytes)", got, len(got), tt.want, len(tt.want))
			}
		})
	}
}

func TestClean(t *testing.T) {
	dir := t.TempDir()
	s := &Spooler{Dir: dir, Threshold: 1}
	for range 3 {
		w, err := s.Create()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte("left by a crash")); err != nil {
			t.Fatal(err)
		}
		// Neither Done nor Abort: the process died here.
	}
	other := filepath.Join(dir, "not-a-spool-file")
	if err := os.WriteFile(other, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	n, err := Clean(dir)
	if err != nil || n != 3 {
		t.Errorf("got %d, %v, want 3 removed", n, err)
	}
	if names := files(t, dir); len(names) != 1 || names[0] != "not-a-spool-file" {
		t.Errorf("got %v left, want only the other file", names)
	}
}
