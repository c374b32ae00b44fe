// Package datadir keeps the data directory private: the directory mode 0700
// and mailtrigger's files in it 0600, whatever the umask, and fixed at every
// start with a warning when an older version or an operator left them wider.
package datadir

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
)

// Modes of the data directory and of the files in it.
const (
	DirMode  fs.FileMode = 0o700
	FileMode fs.FileMode = 0o600
)

// Secure creates dir (0700) if missing, narrows it to 0700 and each of the
// named files in it that exists to 0600, logging a warning for each one that
// was wider. The modes are set with chmod, so that the umask plays no part.
// A mode that cannot be changed (a directory owned by another user) is
// logged, not fatal: the service can still run, and the operator is told.
func Secure(dir string, log *slog.Logger, names ...string) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, DirMode); err != nil {
			return fmt.Errorf("creating data directory: %w", err)
		}
		if err := os.Chmod(dir, DirMode); err != nil {
			return fmt.Errorf("setting the mode of data directory %s: %w", dir, err)
		}
	case err != nil:
		return fmt.Errorf("reading data directory: %w", err)
	case !fi.IsDir():
		return fmt.Errorf("data directory %s is not a directory", dir)
	default:
		narrow(dir, fi.Mode().Perm(), DirMode, "data directory", log)
	}
	for _, name := range names {
		path := filepath.Join(dir, name)
		fi, err := os.Lstat(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("reading %s: %w", path, err)
		}
		if fi.Mode().IsRegular() {
			narrow(path, fi.Mode().Perm(), FileMode, "data file", log)
		}
	}
	return nil
}

// narrow sets path to want when its mode has bits want has not.
func narrow(path string, perm, want fs.FileMode, what string, log *slog.Logger) {
	if perm&^want == 0 {
		return
	}
	if err := os.Chmod(path, want); err != nil {
		log.Warn(what+" is readable by others and its mode cannot be changed; make it private", "path", path,
			"mode", fmt.Sprintf("%#o", perm), "want", fmt.Sprintf("%#o", want), "err", err)
		return
	}
	log.Warn(what+" was readable by others; made it private", "path", path, "was", fmt.Sprintf("%#o", perm),
		"now", fmt.Sprintf("%#o", want))
}

// CreateFile creates path with mode 0600 (chmod after create, whatever the
// umask) if it does not exist, so that a program that creates it otherwise
// (SQLite, which gives its -wal and -shm files the database file's mode)
// finds it private.
func CreateFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, FileMode)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("creating %s: %w", path, err)
	}
	if err := f.Chmod(FileMode); err != nil {
		f.Close()
		return fmt.Errorf("setting the mode of %s: %w", path, err)
	}
	return f.Close()
}
