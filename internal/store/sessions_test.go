package store_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
)

func TestSessions(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		if _, found, err := s.FindSession(ctx, "nope"); err != nil || found {
			t.Fatalf("got found %v, err %v, want not found", found, err)
		}
		exp := time.Now().Add(time.Hour)
		if err := s.CommitSession(ctx, "tok1", []byte("one"), exp); err != nil {
			t.Fatal(err)
		}
		data, found, err := s.FindSession(ctx, "tok1")
		if err != nil || !found || string(data) != "one" {
			t.Fatalf("got %q, %v, %v, want \"one\", found", data, found, err)
		}

		// Commit replaces the data and the expiry.
		if err := s.CommitSession(ctx, "tok1", []byte{0, 1, 2}, exp.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if data, _, _ := s.FindSession(ctx, "tok1"); !bytes.Equal(data, []byte{0, 1, 2}) {
			t.Errorf("got %v, want the replaced data", data)
		}

		// An expired session is not found, and pruning removes it only.
		if err := s.CommitSession(ctx, "old", []byte("old"), time.Now().Add(-time.Minute)); err != nil {
			t.Fatal(err)
		}
		if _, found, _ := s.FindSession(ctx, "old"); found {
			t.Error("got an expired session, want not found")
		}
		n, err := s.DeleteExpiredSessions(ctx, time.Now())
		if err != nil || n != 1 {
			t.Errorf("got %d deleted, %v, want 1", n, err)
		}
		if _, found, _ := s.FindSession(ctx, "tok1"); !found {
			t.Error("pruning deleted a live session")
		}

		if err := s.DeleteSession(ctx, "tok1"); err != nil {
			t.Fatal(err)
		}
		if _, found, _ := s.FindSession(ctx, "tok1"); found {
			t.Error("got a deleted session, want not found")
		}
		if err := s.DeleteSession(ctx, "tok1"); err != nil {
			t.Errorf("deleting twice: got %v, want nil", err)
		}
	})
}
