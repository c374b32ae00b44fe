package store_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	"mailtrigger/internal/mail"
	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
)

// lz4Version is the migration that compresses messages with lz4 on
// PostgreSQL.
const lz4Version = 14

// TestPostgresCompressesMessagesWithLZ4: on PostgreSQL, a message's raw
// bytes, whole or in chunks, are stored compressed with lz4 (where the
// server has lz4; pglz, as before, where it has not), and read back byte
// for byte; migrating down goes back to the server's default, pglz.
func TestPostgresCompressesMessagesWithLZ4(t *testing.T) {
	ctx := context.Background()
	s := storetest.Open(t, store.Postgres)
	db := store.DB(s)
	var lz4 bool
	if err := db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_settings
		WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals))`).Scan(&lz4); err != nil {
		t.Fatal(err)
	}
	want, column := "pglz", ""
	if lz4 {
		want, column = "lz4", "l"
	} else {
		t.Log("this PostgreSQL has no lz4: the migration must leave pglz")
	}

	for _, c := range []struct{ table, column string }{
		{"messages", "raw"}, {"messages", "text_body"}, {"messages", "html_body"},
		{"message_chunks", "data"}, {"attachments", "content"},
	} {
		if got := columnCompression(t, ctx, db, c.table, c.column); got != column {
			t.Errorf("%s.%s: compression %q, want %q", c.table, c.column, got, column)
		}
	}

	// A 20 KB message of text (compressible, above the 2 KB at which
	// PostgreSQL compresses), and a 2.5 MB one stored in three chunks.
	uid := uint32(0)
	record := func(in store.Incoming) int64 {
		t.Helper()
		uid++
		in.UID = uid
		rec, _, err := s.RecordBatch(ctx, store.Batch{IMAPID: 1, IMAPName: "inbox", Epoch: 1,
			Messages: []store.Incoming{in}}, nil)
		if err != nil || len(rec) != 1 {
			t.Fatalf("recording: %v, %v", rec, err)
		}
		return rec[0].ID
	}
	var body strings.Builder
	for i := 0; body.Len() < 20<<10; i++ {
		fmt.Fprintf(&body, "Line %d of the order: 3 boxes of paper, delivered to the usual address.\r\n", i)
	}
	raw := "From: A <a@example.com>\r\nTo: b@example.com\r\nSubject: Order\r\n\r\n" + body.String()
	check := func(want string) {
		t.Helper()
		in := incoming(0, raw)
		in.Seen = time.Now()
		small := record(in)
		f, sum := bigMessage(t, 5<<19)
		big := record(store.Incoming{Big: f, Msg: mail.ParseFile(f, f.Size()), Seen: time.Now()})

		var got sql.NullString
		if err := db.QueryRowContext(ctx, `SELECT pg_column_compression(raw) FROM messages WHERE id = $1`, small).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got.String != want {
			t.Errorf("a %d-byte message's raw is stored compressed with %q, want %q", len(raw), got.String, want)
		}
		rows, err := db.QueryContext(ctx, `SELECT n, pg_column_compression(data) FROM message_chunks WHERE message_id = $1 ORDER BY n`, big)
		if err != nil {
			t.Fatal(err)
		}
		chunks := 0
		for rows.Next() {
			var n int
			if err := rows.Scan(&n, &got); err != nil {
				t.Fatal(err)
			}
			chunks++
			if got.String != want {
				t.Errorf("chunk %d is stored compressed with %q, want %q", n, got.String, want)
			}
		}
		if err := rows.Close(); err != nil {
			t.Fatal(err)
		}
		if chunks != 3 {
			t.Errorf("%d chunks, want 3", chunks)
		}

		if back, err := s.MessageRaw(ctx, small); err != nil || !bytes.Equal(back, []byte(raw)) {
			t.Errorf("read back %d bytes, %v; want the %d recorded", len(back), err, len(raw))
		}
		if back, err := s.MessageRaw(ctx, big); err != nil || sha256.Sum256(back) != sum {
			t.Errorf("read back %d bytes of the chunked message (of %d), same: %v, %v", len(back), f.Size(), sha256.Sum256(back) == sum, err)
		}
	}
	check(want)

	// Down: the server's default again, pglz, for what is written next.
	if err := store.MigrateDownTo(ctx, s, lz4Version-1); err != nil {
		t.Fatal(err)
	}
	if got := columnCompression(t, ctx, db, "messages", "raw"); got != "" {
		t.Errorf("after migrating down: messages.raw compression %q, want the default", got)
	}
	check("pglz")
}

// columnCompression is the compression method set on a column: "" for the
// server's default, "l" for lz4, "p" for pglz.
func columnCompression(t *testing.T, ctx context.Context, db *sql.DB, table, column string) string {
	t.Helper()
	var c string
	if err := db.QueryRowContext(ctx, `SELECT attcompression::text FROM pg_attribute
		WHERE attrelid = $1::regclass AND attname = $2`, table, column).Scan(&c); err != nil {
		t.Fatalf("%s.%s: %v", table, column, err)
	}
	return c
}
