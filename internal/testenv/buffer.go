package testenv

import (
	"bytes"
	"sync"
)

// Buffer is a bytes.Buffer safe for concurrent use: logs written by a
// server's goroutines, or a child process's output, read by the test.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Tail keeps the end of a process's output, at most Keep bytes (1 MiB when
// zero): enough for a failure message, bounded however long the process
// runs. It is safe for concurrent use.
type Tail struct {
	Keep int
	mu   sync.Mutex
	buf  []byte
}

func (t *Tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	keep := t.Keep
	if keep <= 0 {
		keep = 1 << 20
	}
	t.buf = append(t.buf, p...)
	if len(t.buf) > keep {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-keep/2:]...)
	}
	return len(p), nil
}

// Last returns the last n bytes kept, marked with "…" when cut.
func (t *Tail) Last(n int) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.buf) <= n {
		return string(t.buf)
	}
	return "…" + string(t.buf[len(t.buf)-n:])
}

// String returns the last 4,000 bytes kept, for an error message.
func (t *Tail) String() string { return t.Last(4000) }
