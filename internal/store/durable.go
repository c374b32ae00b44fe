package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// BeforeDestructive is called before mail is deleted or moved on the
// server (IMAP \Deleted and UID EXPUNGE, MOVE; POP3 DELE; Graph delete and
// move), once per batch: it checks the fence in ctx (see CheckFence), then
// makes every commit so far durable against a power or OS crash, so that a
// message is gone from the server only once its record can no longer roll
// back.
//
// On SQLite the database runs in WAL mode with synchronous=NORMAL: a
// commit reaches the WAL file but is fsynced only at the next checkpoint, so
// the last commits before a power loss can be lost (never the database's
// consistency). BeforeDestructive fsyncs the WAL file, which holds those
// commits (checkpoints fsync the database file themselves). That is one
// fsync per batch, outside the writer lock, instead of synchronous=FULL's
// fsync for every transaction of every mailbox. On PostgreSQL a commit is
// durable when it returns as long as synchronous_commit is on (the default;
// Open warns when the server has it off), and there is nothing more to do.
//
// After-processing that destroys nothing (mark as seen, none) calls
// CheckFence instead and pays nothing.
func (s *Store) BeforeDestructive(ctx context.Context) error {
	if err := s.CheckFence(ctx); err != nil {
		return err
	}
	if s.dialect != SQLite {
		return nil
	}
	if err := syncFile(s.path + "-wal"); err != nil {
		return fmt.Errorf("making the last commits durable before deleting or moving mail: %w", err)
	}
	// The WAL file is created when the store opens: its directory entry
	// is made durable once (SQLite's synchronous=FULL does the same).
	if !s.dirSynced.Load() {
		if err := syncFile(filepath.Dir(s.path)); err != nil {
			return fmt.Errorf("making the data directory durable: %w", err)
		}
		s.dirSynced.Store(true)
	}
	s.syncs.Add(1)
	if s.synced != nil {
		if err := s.synced(); err != nil {
			return fmt.Errorf("making the last commits durable before deleting or moving mail: %w", err)
		}
	}
	return nil
}

// Syncs is how many times BeforeDestructive made the commits durable.
func (s *Store) Syncs() int64 { return s.syncs.Load() }

// syncFile fsyncs the file at path. fsync flushes the file's data whoever
// wrote it, so another descriptor than SQLite's will do. A missing file
// (the WAL is removed when the last connection closes, after a checkpoint
// that fsynced the database) has nothing to flush.
func syncFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// warnAsyncCommit logs a warning when PostgreSQL acknowledges commits
// before they are on disk: then a commit that recorded a message can still
// be lost by a crash of the database server after the message was deleted
// on the mail server.
func (s *Store) warnAsyncCommit(ctx context.Context) {
	var v string
	if err := s.w.QueryRowContext(ctx, "SHOW synchronous_commit").Scan(&v); err != nil {
		s.log.Warn("reading synchronous_commit failed", "err", err)
		return
	}
	if strings.EqualFold(v, "off") {
		s.log.Warn("postgresql has synchronous_commit off: a crash of the database server can lose the last commits, "+
			"and with afterProcessing delete or move, messages already removed from the mail server; set it on",
			"synchronous_commit", v)
	}
}
