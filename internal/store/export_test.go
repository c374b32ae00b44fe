package store

import "database/sql"

// DB exposes the pool to the external tests, which read raw column values.
func DB(s *Store) *sql.DB { return s.w }
