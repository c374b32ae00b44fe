package cli

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"mailtrigger/internal/config"
	"mailtrigger/internal/datadir"
	"mailtrigger/internal/store"
)

// backupInfo is a backup's stamp (backupTable).
type backupInfo struct {
	fingerprint string
	schema      int64
	madeBy      string
	madeAt      string
}

// restore puts a backup in place as the data directory's SQLite database.
// The directory must not be served meanwhile (restore holds its lock), its
// key must be the backup's, and an existing database is replaced only with
// --force.
func restore(ctx context.Context, args []string, env Env) error {
	cfg := config.FromEnv(env.Getenv)
	fs := newFlags("restore", "[flags] FILE",
		"Restore the SQLite database from FILE, a file written by mailtrigger backup, into the data directory.\n"+
			"The service must be stopped. The data directory's key (the key file, or MAILTRIGGER_SECRET_KEY) must be\n"+
			"the one the backup was made with: copy the key file saved with the backup there first.", env)
	cfg.StoreFlags(fs)
	force := fs.Bool("force", false, "replace the database the data directory holds already")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errUsage
	}
	if cfg.IsPostgres() {
		return errors.New("restore writes the SQLite database; " + pgDumpHint)
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	src, dir := fs.Arg(0), cfg.DataDir
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("reading the backup: %w", err)
	}
	unlock, pid, err := tryLockDataDir(dir)
	if errors.Is(err, errLocked) {
		return fmt.Errorf("a mailtrigger (pid %s) is serving the data directory %s: stop it before restoring", pid, dir)
	}
	if err != nil {
		return err
	}
	defer unlock()
	if err := datadir.Secure(dir, newLogger(cfg, env.Stderr)); err != nil {
		return err
	}
	info, err := readBackupInfo(ctx, src)
	if err != nil {
		return err
	}
	key, keyFrom, err := existingKey(cfg)
	if err != nil {
		return fmt.Errorf("restoring %s: %w", src, err)
	}
	if fp := keyFingerprint(key); fp != info.fingerprint {
		return fmt.Errorf("the key does not match the backup: %s was made with key %s, and the key here (%s) is %s; "+
			"put the key file saved with the backup in place (or set MAILTRIGGER_SECRET_KEY to it): "+
			"with another key its mailbox passwords and tokens cannot be opened", src, info.fingerprint, keyFrom, fp)
	}
	dbPath := filepath.Join(dir, store.SQLiteFileName)
	if !*force {
		for _, name := range []string{dbPath, dbPath + "-wal"} {
			if fi, err := os.Stat(name); err == nil && fi.Size() > 0 {
				return fmt.Errorf("%s holds a database already (%s); restore replaces it only with --force (back it up first)", dir, name)
			}
		}
	}

	// Copied under another name, unstamped, and renamed over the database
	// once complete; the old database's -wal and -shm go first, for SQLite
	// would apply a WAL left beside a new file to it.
	tmp, err := os.CreateTemp(dir, ".restore-*.db")
	if err != nil {
		return fmt.Errorf("creating the restored database: %w", err)
	}
	tmpPath := tmp.Name()
	defer os.Remove(tmpPath) // gone by then when the restore succeeded
	if err := copyInto(tmp, src); err != nil {
		return err
	}
	if err := unstamp(ctx, tmpPath); err != nil {
		return err
	}
	if err := syncFile(tmpPath); err != nil {
		return err
	}
	for _, suffix := range []string{"-wal", "-shm", "-journal"} {
		if err := os.Remove(dbPath + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("removing the old database's %s: %w", suffix, err)
		}
	}
	if err := os.Rename(tmpPath, dbPath); err != nil {
		return fmt.Errorf("putting the restored database in place: %w", err)
	}
	syncDir(dir)
	fmt.Fprintf(env.Stdout, "restored %s into %s (schema version %d, made %s by mailtrigger %s); start the service\n",
		src, dbPath, info.schema, info.madeAt, info.madeBy)
	return nil
}

// readBackupInfo checks that path is a whole SQLite database written by
// backup, and returns its stamp.
func readBackupInfo(ctx context.Context, path string) (backupInfo, error) {
	var info backupInfo
	db, err := sql.Open("sqlite", sqliteDSN(path, "mode=ro"))
	if err != nil {
		return info, fmt.Errorf("opening the backup: %w", err)
	}
	defer db.Close()
	var check string
	if err := db.QueryRowContext(ctx, `PRAGMA quick_check`).Scan(&check); err != nil {
		return info, fmt.Errorf("%s is not a readable SQLite database: %w", path, err)
	}
	if check != "ok" {
		return info, fmt.Errorf("%s is damaged (SQLite quick_check: %s)", path, check)
	}
	err = db.QueryRowContext(ctx, `SELECT key_fingerprint, schema_version, made_by, made_at FROM `+backupTable).
		Scan(&info.fingerprint, &info.schema, &info.madeBy, &info.madeAt)
	if err != nil {
		if strings.Contains(err.Error(), "no such table") || errors.Is(err, sql.ErrNoRows) {
			return info, fmt.Errorf("%s is not a backup made by mailtrigger backup (it has no %s table)", path, backupTable)
		}
		return info, fmt.Errorf("reading the backup's stamp: %w", err)
	}
	return info, nil
}

// copyInto copies the file src into f and closes f.
func copyInto(f *os.File, src string) error {
	in, err := os.Open(src)
	if err != nil {
		f.Close()
		return fmt.Errorf("reading the backup: %w", err)
	}
	defer in.Close()
	_, err = io.Copy(f, in)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("copying the backup: %w", err)
	}
	return nil
}

// unstamp drops the backup's stamp from the restored copy at path.
func unstamp(ctx context.Context, path string) error {
	db, err := sql.Open("sqlite", sqliteDSN(path, "_pragma=busy_timeout(10000)"))
	if err != nil {
		return fmt.Errorf("opening the restored database: %w", err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `DROP TABLE `+backupTable); err != nil {
		return fmt.Errorf("preparing the restored database: %w", err)
	}
	return db.Close()
}
