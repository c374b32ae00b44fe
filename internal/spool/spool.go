// Package spool holds messages too big to keep in memory in temporary
// files, so that reading, parsing and recording a 50 MB message costs a few
// buffers of memory rather than the message.
//
// A source reads a message's bytes through a Spooler: a message up to the
// threshold stays in memory as a []byte; a bigger one is copied in chunks to
// a File in the spool directory. Files are removed when closed, and Clean
// removes what a crash left behind, at start, before any source reads.
package spool

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// DefaultThreshold is the size above which a message is spooled to a file.
const DefaultThreshold = 1 << 20

// prefix names the spool files, so that Clean removes only them.
const prefix = "mailtrigger-spool-"

// File is one spooled message: a temporary file read by offset.
type File struct {
	f    *os.File
	size int64
	once sync.Once
	err  error
}

// ReadAt reads from the spooled message.
func (f *File) ReadAt(p []byte, off int64) (int, error) { return f.f.ReadAt(p, off) }

// Size is the size of the spooled message.
func (f *File) Size() int64 { return f.size }

// Reader reads the spooled message from its start.
func (f *File) Reader() io.Reader { return io.NewSectionReader(f.f, 0, f.size) }

// Close closes and removes the file; calling it again does nothing. A file
// removed already (by the Clean of another process sharing the directory,
// which does not disturb this one's reading and writing) is no error.
func (f *File) Close() error {
	f.once.Do(func() {
		name := f.f.Name()
		rerr := os.Remove(name)
		if errors.Is(rerr, os.ErrNotExist) {
			rerr = nil
		}
		f.err = errors.Join(f.f.Close(), rerr)
	})
	return f.err
}

// Spooler creates spool files in Dir for messages over Threshold bytes.
type Spooler struct {
	Dir       string // "" means os.TempDir()
	Threshold int64  // 0 means DefaultThreshold
	// Created, when set, is called with the path of each spool file
	// created (a test hook: tests see that a message went through a file).
	Created func(path string)
}

func (s *Spooler) threshold() int64 {
	if s == nil || s.Threshold <= 0 {
		return DefaultThreshold
	}
	return s.Threshold
}

// Big says whether a message of size bytes is spooled.
func (s *Spooler) Big(size int64) bool { return size > s.threshold() }

// MaxInMemory is the most bytes of one message Take keeps in memory: the
// threshold.
func (s *Spooler) MaxInMemory() int64 { return s.threshold() }

// Create returns an empty spool file; the caller writes the message to it
// with Write and then calls Done.
func (s *Spooler) Create() (*Writer, error) {
	dir := ""
	if s != nil {
		dir = s.Dir
	}
	f, err := os.CreateTemp(dir, prefix+"*")
	if err != nil {
		return nil, fmt.Errorf("creating spool file: %w", err)
	}
	if s != nil && s.Created != nil {
		s.Created(f.Name())
	}
	return &Writer{f: &File{f: f}}, nil
}

// Writer fills a spool file.
type Writer struct {
	f *File
}

// Write appends to the file.
func (w *Writer) Write(p []byte) (int, error) {
	n, err := w.f.f.Write(p)
	w.f.size += int64(n)
	if err != nil {
		return n, fmt.Errorf("writing spool file: %w", err)
	}
	return n, nil
}

// Done returns the file, ready to read.
func (w *Writer) Done() *File { return w.f }

// Abort removes the file.
func (w *Writer) Abort() { _ = w.f.Close() }

// Take reads r (of size bytes as announced, e.g. an IMAP literal) up to
// limit bytes: into memory when size is at most the threshold, else into a
// spool file in chunks. Of a longer r (size above limit) it reports
// truncated and keeps its start: limit bytes in memory when limit is at
// most the threshold, else only the header section (ReadHeader), so that
// what a truncated message keeps (its header) needs no spool file. The rest
// of r is read and discarded. Exactly one of small and big is set when err
// is nil; on an error no spool file is left.
func (s *Spooler) Take(r io.Reader, size, limit int64) (small []byte, big *File, truncated bool, err error) {
	keep := min(size, limit)
	switch {
	case size > limit && s.Big(limit):
		if small, err = ReadHeader(r, limit); err != nil {
			return nil, nil, false, err
		}
	case !s.Big(keep):
		small = make([]byte, keep)
		if _, err := io.ReadFull(r, small); err != nil {
			return nil, nil, false, err
		}
	default:
		w, err := s.Create()
		if err != nil {
			return nil, nil, false, err
		}
		if _, err := io.CopyN(w, r, keep); err != nil {
			w.Abort()
			return nil, nil, false, err
		}
		big = w.Done()
	}
	if size > limit {
		truncated = true
	}
	if _, err := io.Copy(io.Discard, r); err != nil {
		if big != nil {
			_ = big.Close()
		}
		return nil, nil, false, err
	}
	return small, big, truncated, nil
}

// headerChunk is how much ReadHeader reads at a time.
const headerChunk = 16 << 10

// ReadHeader reads the header section at the start of r, with the blank
// line that ends it, into memory: at most limit bytes of it (all of r's
// first limit bytes if no blank line comes before). It may read a little
// past the header; the caller discards the rest of r.
func ReadHeader(r io.Reader, limit int64) ([]byte, error) {
	var buf []byte
	for int64(len(buf)) < limit {
		n := min(int64(headerChunk), limit-int64(len(buf)))
		start := len(buf)
		buf = append(buf, make([]byte, n)...)
		got, err := io.ReadFull(r, buf[start:])
		buf = buf[:start+got]
		// Look again from just before what came, for an end that
		// straddles two reads.
		if end := HeaderEnd(buf, max(start-2, 0)); end >= 0 {
			return buf[:end:end], nil
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
	return buf, nil
}

// HeaderEnd returns the length of the header section at the start of b,
// with its ending blank line ("\r\n" or "\n"), or -1 if b does not hold
// all of it; it searches from offset from on (0 to search all of b).
func HeaderEnd(b []byte, from int) int {
	if bytes.HasPrefix(b, []byte("\r\n")) {
		return 2
	}
	if bytes.HasPrefix(b, []byte("\n")) {
		return 1
	}
	for i := from; i < len(b); {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1
		}
		at := i + j + 1 // just after a line end
		switch {
		case bytes.HasPrefix(b[at:], []byte("\r\n")):
			return at + 2
		case bytes.HasPrefix(b[at:], []byte("\n")):
			return at + 1
		}
		i = at
	}
	return -1
}

// Clean removes the spool files left in dir ("" means os.TempDir()) by a
// process that died; it is called at start. It returns how many it removed.
// Files another live process has open (replicas sharing a directory) keep
// working for it: on Unix a removed file lives on until it is closed.
func Clean(dir string) (int, error) {
	if dir == "" {
		dir = os.TempDir()
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("listing spool directory: %w", err)
	}
	var n int
	var errs []error
	for _, e := range entries {
		if e.IsDir() || !strings.HasPrefix(e.Name(), prefix) {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}
