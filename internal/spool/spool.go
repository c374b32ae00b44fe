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

// Close closes and removes the file; calling it again does nothing.
func (f *File) Close() error {
	f.once.Do(func() {
		name := f.f.Name()
		f.err = errors.Join(f.f.Close(), os.Remove(name))
	})
	return f.err
}

// Spooler creates spool files in Dir for messages over Threshold bytes.
type Spooler struct {
	Dir       string // "" means os.TempDir()
	Threshold int64  // 0 means DefaultThreshold
}

func (s *Spooler) threshold() int64 {
	if s == nil || s.Threshold <= 0 {
		return DefaultThreshold
	}
	return s.Threshold
}

// Big says whether a message of size bytes is spooled.
func (s *Spooler) Big(size int64) bool { return size > s.threshold() }

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
// spool file in chunks. Of a longer r it keeps limit bytes, discards the
// rest and reports truncated. Exactly one of small and big is set when err
// is nil.
func (s *Spooler) Take(r io.Reader, size, limit int64) (small []byte, big *File, truncated bool, err error) {
	keep := min(size, limit)
	if !s.Big(keep) {
		small = make([]byte, keep)
		if _, err := io.ReadFull(r, small); err != nil {
			return nil, nil, false, err
		}
	} else {
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

// Clean removes the spool files left in dir ("" means os.TempDir()) by a
// process that died; it is called at start. It returns how many it removed.
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
