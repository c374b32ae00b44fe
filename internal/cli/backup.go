package cli

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"mailtrigger/internal/config"
	"mailtrigger/internal/secret"
	"mailtrigger/internal/store"
)

// backupTable is the table a backup carries besides the database's own: one
// row saying which key sealed its secrets (a fingerprint, never the key),
// its schema version, and when and by which version it was made. restore
// reads it and drops it.
const backupTable = "mailtrigger_backup"

// pgDumpHint is what backup and restore say on PostgreSQL.
const pgDumpHint = "on PostgreSQL, back up with pg_dump (pg_dump -Fc -f mailtrigger.dump \"$MAILTRIGGER_DATABASE_URL\") " +
	"and restore with pg_restore, and keep MAILTRIGGER_SECRET_KEY with the dump: see docs/operations.md"

// backup writes a consistent copy of the SQLite database to a new file while
// the service may be running (VACUUM INTO reads one snapshot of the database;
// WAL lets it run beside the service's writer), with the key's fingerprint
// in it.
func backup(ctx context.Context, args []string, env Env) error {
	cfg := config.FromEnv(env.Getenv)
	fs := newFlags("backup", "[flags] FILE",
		"Write a consistent copy of the SQLite database to FILE, also while the service runs. FILE must not exist.\n"+
			"The key is not in it: keep the key file (or MAILTRIGGER_SECRET_KEY) with the backup; restore checks that they match.", env)
	cfg.StoreFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errUsage
	}
	if cfg.IsPostgres() {
		return errors.New("backup copies the SQLite database; " + pgDumpHint)
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	dst := fs.Arg(0)
	src := filepath.Join(cfg.DataDir, store.SQLiteFileName)
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("no database to back up: %w", err)
	}
	key, keyFrom, err := existingKey(cfg)
	if err != nil {
		return err
	}
	if _, err := os.Lstat(dst); err == nil {
		return fmt.Errorf("%s exists already; a backup goes to a new file", dst)
	}
	// Written beside dst under another name and renamed when complete: a
	// file named dst is always a whole backup.
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".*.partial")
	if err != nil {
		return fmt.Errorf("creating the backup file: %w", err)
	}
	tmpPath := tmp.Name()
	tmp.Close()
	defer os.Remove(tmpPath) // gone by then when the backup succeeded
	if err := vacuumInto(ctx, src, tmpPath); err != nil {
		return err
	}
	schema, err := stampBackup(ctx, tmpPath, keyFingerprint(key))
	if err != nil {
		return err
	}
	if err := syncFile(tmpPath); err != nil {
		return err
	}
	if err := os.Rename(tmpPath, dst); err != nil {
		return fmt.Errorf("naming the backup %s: %w", dst, err)
	}
	syncDir(filepath.Dir(dst))
	fmt.Fprintf(env.Stdout, "backup of %s written to %s (schema version %d, key %s)\n"+
		"Keep the key (%s) with it: the backup's secrets are sealed with that key, which is not in the backup.\n",
		src, dst, schema, keyFingerprint(key), keyFrom)
	return nil
}

// existingKey returns the key in effect (MAILTRIGGER_SECRET_KEY, else the
// data directory's key file) and where it came from. Unlike secret.LoadKey
// it never creates a key: a new key would match no database.
func existingKey(cfg config.Config) (key []byte, from string, err error) {
	if cfg.SecretKey != "" {
		key, _, err := secret.LoadKey(cfg.SecretKey, cfg.DataDir)
		return key, "MAILTRIGGER_SECRET_KEY", err
	}
	path := filepath.Join(cfg.DataDir, secret.KeyFileName)
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, "", fmt.Errorf("no key: MAILTRIGGER_SECRET_KEY is not set and there is no key file %s; "+
				"put the key file that belongs with the database there (or set MAILTRIGGER_SECRET_KEY)", path)
		}
		return nil, "", fmt.Errorf("reading the key file: %w", err)
	}
	key, _, err = secret.LoadKey("", cfg.DataDir)
	return key, path, err
}

// keyFingerprint names a key without revealing it: the SHA-256 of its
// bytes (the key is 32 random bytes; its hash tells nothing of it).
func keyFingerprint(key []byte) string {
	sum := sha256.Sum256(key)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// sqliteDSN is the data source name of the SQLite file path with the
// given query parameters.
func sqliteDSN(path, params string) string {
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + params
}

// vacuumInto copies the database src to the empty file dst, as one snapshot.
func vacuumInto(ctx context.Context, src, dst string) error {
	db, err := sql.Open("sqlite", sqliteDSN(src, "_pragma=busy_timeout(30000)"))
	if err != nil {
		return fmt.Errorf("opening %s: %w", src, err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `VACUUM INTO ?`, dst); err != nil {
		return fmt.Errorf("copying %s (VACUUM INTO): %w", src, err)
	}
	return nil
}

// stampBackup writes the backup table into the copy at path, makes the
// copy one self-contained file (no WAL), and returns its schema version.
func stampBackup(ctx context.Context, path, fingerprint string) (int64, error) {
	db, err := sql.Open("sqlite", sqliteDSN(path, "_pragma=busy_timeout(10000)"))
	if err != nil {
		return 0, fmt.Errorf("opening the copy: %w", err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	var schema int64
	if err := db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version_id), 0) FROM goose_db_version`).Scan(&schema); err != nil {
		return 0, fmt.Errorf("reading the copy's schema version: %w", err)
	}
	for _, q := range []string{
		`PRAGMA journal_mode=DELETE`,
		`CREATE TABLE ` + backupTable + ` (key_fingerprint TEXT NOT NULL, schema_version INTEGER NOT NULL,
			made_by TEXT NOT NULL, made_at TEXT NOT NULL)`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return 0, fmt.Errorf("stamping the copy: %w", err)
		}
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO `+backupTable+` VALUES (?, ?, ?, ?)`,
		fingerprint, schema, version(), time.Now().UTC().Format(time.RFC3339)); err != nil {
		return 0, fmt.Errorf("stamping the copy: %w", err)
	}
	return schema, db.Close()
}

// syncFile makes path's contents durable.
func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("syncing %s: %w", path, err)
	}
	return nil
}

// syncDir makes a rename in dir durable, where the system allows it.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
