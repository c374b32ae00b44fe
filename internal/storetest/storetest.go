// Package storetest opens fresh stores for tests, on SQLite and on a real
// PostgreSQL, so that every suite that touches the database runs on both.
// Test binaries using it must run through testenv.Main.
package storetest

import (
	"bytes"
	"context"
	"testing"

	"mailtrigger/internal/secret"
	"mailtrigger/internal/store"
	"mailtrigger/internal/testenv"
)

// Dialects are the databases every store-backed suite runs on.
var Dialects = []store.Dialect{store.SQLite, store.Postgres}

// Box returns the secret box the tests seal with.
func Box(t testing.TB) *secret.Box {
	t.Helper()
	b, err := secret.NewBox(bytes.Repeat([]byte{42}, secret.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Options returns the options of a fresh store of the given dialect: a
// temporary data directory, Box, and on PostgreSQL a fresh database.
func Options(t testing.TB, dialect store.Dialect) store.Options {
	t.Helper()
	o := store.Options{DataDir: t.TempDir(), Box: Box(t)}
	if dialect == store.Postgres {
		o.DatabaseURL = testenv.PostgresURL(t)
	}
	return o
}

// Open returns a fresh, migrated store of the given dialect, closed at cleanup.
func Open(t testing.TB, dialect store.Dialect) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), Options(t, dialect))
	if err != nil {
		t.Fatalf("opening %s store: %v", dialect, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Each runs fn as a subtest on a fresh SQLite store and on a fresh
// PostgreSQL store.
func Each(t *testing.T, fn func(t *testing.T, s *store.Store)) {
	t.Helper()
	for _, d := range Dialects {
		t.Run(string(d), func(t *testing.T) { fn(t, Open(t, d)) })
	}
}
