package store

import "database/sql"

// DB exposes the write pool to the external tests, which insert rows the
// store has no method for yet and read raw column values.
func DB(s *Store) *sql.DB { return s.w }

// Now is the store's clock.
var Now = now
