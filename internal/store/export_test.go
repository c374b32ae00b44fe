package store

import (
	"context"
	"database/sql"
	"time"
)

// DB exposes the pool to the external tests, which read raw column values.
func DB(s *Store) *sql.DB { return s.w }

// ResealLegacy runs the start-up pass that re-seals legacy secrets.
func ResealLegacy(s *Store) error { return s.resealLegacy(context.Background()) }

// OpenAt opens a store with the migrations up to version only: a database
// as an older release left it, to be filled through DB.
func OpenAt(ctx context.Context, o Options, version int64) (*Store, error) {
	o.upTo = version
	return Open(ctx, o)
}

// MigrateDownTo undoes the migrations after version.
func MigrateDownTo(ctx context.Context, s *Store, version int64) error {
	_, err := s.prov.DownTo(ctx, version)
	return err
}

// SetInsertLimits sets how many rows, and how many bytes of them, one
// multi-row statement writes on PostgreSQL, until restore.
func SetInsertLimits(rows, bytes int) (restore func()) {
	r, b := pgMaxRows, pgMaxBytes
	pgMaxRows, pgMaxBytes = rows, bytes
	return func() { pgMaxRows, pgMaxBytes = r, b }
}

// Prepared counts the statements the store prepared when it opened, and
// the ingest statements there are.
func Prepared(s *Store) (prepared, ingest int) {
	return len(s.prepared), len(ingestStatements(s.dialect))
}

// SetConversion sets the conversion's batch size and the pause inside each
// batch's transaction (a child process killed in the middle).
func SetConversion(size int, pause time.Duration) { convertBatchSize, convertPause = size, pause }

// ConvertBatch converts one batch of size messages, running inTx inside its
// transaction before the commit.
func ConvertBatch(s *Store, size int, inTx func() error) (int, bool, error) {
	return s.convertBatch(context.Background(), size, inTx)
}

// StopConversion stops the background conversion pass the store started
// when it opened, and waits for it: a test that sets up old rows then
// drives the batches itself (Close stops it again, harmlessly).
func StopConversion(s *Store) {
	if s.stopConversion != nil {
		s.stopConversion()
	}
}

// KeptBodies counts the messages whose bodies the store keeps for the run
// worker (bodyCache).
func KeptBodies(s *Store) int {
	s.bodies.mu.Lock()
	defer s.bodies.mu.Unlock()
	return len(s.bodies.entries)
}

// SetBodiesLimits sets the bodies cache's bytes and time to live, until
// restore.
func SetBodiesLimits(bytes int64, ttl time.Duration) (restore func()) {
	b, t := bodiesMaxBytes, bodiesTTL
	bodiesMaxBytes, bodiesTTL = bytes, ttl
	return func() { bodiesMaxBytes, bodiesTTL = b, t }
}

// KeepBodiesOfAnother keeps text as the bodies of message id, as an entry
// of another message kept under that id (a rolled-back id reused).
func KeepBodiesOfAnother(s *Store, id int64, text string) {
	s.bodies.put(id, bodiesOf{imapID: -1}, text, text, time.Now())
}

// ForgetBodies empties the bodies cache.
func ForgetBodies(s *Store)      { s.bodies.clear() }
func LookupSQL(d Dialect) string { return lookupSQL(d) }
