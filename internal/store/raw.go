package store

// A message's raw bytes: inline in messages.raw, or in 1 MiB chunks in
// message_chunks for a message above the spool threshold, written from its
// spool file one chunk at a time inside the ingest transaction and read back
// one chunk at a time, so that neither recording nor reading a 50 MB message
// holds it in memory.
//
// Why chunk rows (BLOB on SQLite, bytea on PostgreSQL) rather than SQLite's
// incremental blob I/O or PostgreSQL's large objects: the chunks are plain
// rows of a table referencing the message, so they are written in the ingest
// transaction with the message and its runs, deleted with it by ON DELETE
// CASCADE (retention, Prune), copied by an ordinary dump, and read and
// written through database/sql on both databases with the same statements.
// Large objects are not deleted by ON DELETE CASCADE (each needs lo_unlink,
// or they leak), need their own privileges and pg_dump's --large-objects,
// and live outside the table the rest of the store reads; modernc.org/sqlite
// offers incremental blob I/O only outside database/sql (its own
// connection API), which the store's pools and transactions do not use, and
// it would still need the blob's whole size reserved up front in one row.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"sync"
)

// chunkSize is the size of the chunks a big raw message is stored in.
const chunkSize = 1 << 20

// writeChunks stores f as the raw message of id, chunk by chunk, reusing
// one buffer.
func writeChunks(ctx context.Context, tx *sql.Tx, id int64, f RawFile) error {
	size := f.Size()
	buf := make([]byte, min(chunkSize, size))
	for n, off := 0, int64(0); off < size; n, off = n+1, off+chunkSize {
		k := int(min(chunkSize, size-off))
		if got, err := f.ReadAt(buf[:k], off); got < k {
			return fmt.Errorf("reading chunk %d of the spooled message: %w", n, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO message_chunks (message_id, n, data) VALUES ($1, $2, $3)`, id, n, buf[:k]); err != nil {
			return fmt.Errorf("storing chunk %d: %w", n, err)
		}
	}
	return nil
}

// Raw is a recorded message's raw bytes (only its header for a message too
// large to keep), read by offset: an io.ReaderAt that reads a chunked
// message one chunk at a time. It reads the database with the context it
// was opened with; it is safe for concurrent use.
type Raw struct {
	ctx     context.Context
	s       *Store
	id      int64
	size    int64
	inline  []byte // the raw bytes of a message not stored in chunks
	chunked bool

	mu  sync.Mutex
	n   int64 // the chunk in buf; -1: none
	buf []byte
}

// OpenRaw opens the raw bytes of message id for reading.
func (s *Store) OpenRaw(ctx context.Context, id int64) (*Raw, error) {
	r := &Raw{ctx: ctx, s: s, id: id, n: -1}
	var chunks int64
	err := s.r.QueryRowContext(ctx, `SELECT raw, (SELECT COUNT(*) FROM message_chunks WHERE message_id = $1),
		(SELECT COALESCE(SUM(length(data)), 0) FROM message_chunks WHERE message_id = $1) FROM messages WHERE id = $1`, id).
		Scan(&r.inline, &chunks, &r.size)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("message %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("reading raw message %d: %w", id, err)
	}
	r.chunked = chunks > 0
	if !r.chunked {
		r.size = int64(len(r.inline))
	}
	return r, nil
}

// Size is the length of the raw bytes.
func (r *Raw) Size() int64 { return r.size }

// Reader reads the raw bytes from the start.
func (r *Raw) Reader() io.Reader { return io.NewSectionReader(r, 0, r.size) }

// ReadAt reads len(p) bytes at off (fewer, with io.EOF, at the end).
func (r *Raw) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("reading raw message %d: negative offset", r.id)
	}
	if !r.chunked {
		if off >= r.size {
			return 0, io.EOF
		}
		n := copy(p, r.inline[off:])
		if n < len(p) {
			return n, io.EOF
		}
		return n, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var done int
	for done < len(p) {
		at := off + int64(done)
		if at >= r.size {
			return done, io.EOF
		}
		if err := r.load(at / chunkSize); err != nil {
			return done, err
		}
		done += copy(p[done:], r.buf[at%chunkSize:])
	}
	return done, nil
}

// load reads chunk n into buf.
func (r *Raw) load(n int64) error {
	if r.n == n {
		return nil
	}
	r.n = -1
	err := r.s.r.QueryRowContext(r.ctx, `SELECT data FROM message_chunks WHERE message_id = $1 AND n = $2`, r.id, n).Scan(&r.buf)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("chunk %d of message %d: %w", n, r.id, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("reading chunk %d of message %d: %w", n, r.id, err)
	}
	r.n = n
	return nil
}
