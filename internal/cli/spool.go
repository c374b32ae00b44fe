package cli

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"

	"mailtrigger/internal/datadir"
	"mailtrigger/internal/spool"
)

// openSpool returns the spooler of the service: messages above threshold
// (bytes; "" means spool.DefaultThreshold) are read into temporary files
// in <dataDir>/spool (created 0700) instead of memory. What a crash left
// there is removed first, before any mailbox is read.
func openSpool(dataDir, threshold string, log *slog.Logger) (*spool.Spooler, error) {
	sp := &spool.Spooler{Dir: filepath.Join(dataDir, "spool")}
	if threshold != "" {
		n, err := strconv.ParseInt(threshold, 10, 64)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("MAILTRIGGER_SPOOL_THRESHOLD: want a number of bytes above 0, got %q", threshold)
		}
		sp.Threshold = n
	}
	if err := os.MkdirAll(sp.Dir, datadir.DirMode); err != nil {
		return nil, fmt.Errorf("creating the spool directory: %w", err)
	}
	if err := os.Chmod(sp.Dir, datadir.DirMode); err != nil {
		return nil, fmt.Errorf("setting the mode of the spool directory: %w", err)
	}
	n, err := spool.Clean(sp.Dir)
	if err != nil {
		return nil, fmt.Errorf("cleaning the spool directory: %w", err)
	}
	if n > 0 {
		log.Info("removed spool files left by an earlier run", "files", n, "dir", sp.Dir)
	}
	return sp, nil
}
