package store

import (
	"context"
	"database/sql"
)

// DB exposes the pool to the external tests, which read raw column values.
func DB(s *Store) *sql.DB { return s.w }

// ResealLegacy runs the start-up pass that re-seals legacy secrets.
func ResealLegacy(s *Store) error { return s.resealLegacy(context.Background()) }
