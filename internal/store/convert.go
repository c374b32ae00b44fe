package store

// Converting the messages recorded before each message was stored once
// (migration 00011) to the new form: raw bytes plus layout, the decoded
// copies emptied.
//
// This is a background pass in batches rather than a goose migration: a
// migration runs in one transaction, which on a large database would parse
// every message while holding the single SQLite writer (or PostgreSQL's
// migration lock) and delay the start by as long; and goose's SQL
// migrations cannot call the MIME parser. The pass starts with the store,
// runs while the service works, and is resumable: message_conversion holds
// how far it got, moved in the same transaction as each batch's rows, so a
// crash (SIGKILL) loses at most the uncommitted batch, which the next start
// does again. Nothing is lost either way: a row changes only when the layout
// decodes to exactly the copies it replaces, and in one transaction.

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"mailtrigger/internal/mail"
)

// storeOnceVersion is the migration that stores each message once.
const storeOnceVersion = 11

// convertBatchSize is how many messages a batch of the conversion reads
// (a variable for tests).
var convertBatchSize = 100

// convertPause, when set (tests), is slept inside each batch's
// transaction before it commits.
var convertPause time.Duration

// startConversion runs ConvertMessages in the background until it is done
// or the store closes.
func (s *Store) startConversion() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	s.stopConversion = func() {
		cancel()
		<-done
	}
	go func() {
		defer close(done)
		n, err := s.ConvertMessages(ctx)
		if err != nil && ctx.Err() == nil {
			s.log.Warn("converting messages to be stored once stopped; the next start goes on", "converted", n, "err", err)
		}
	}()
}

// ConvertMessages converts the messages recorded before migration 00011
// that are not converted yet, in batches, and returns how many it converted.
// It is safe to run on several replicas at once: a batch commits only if
// no other did the same batch first.
func (s *Store) ConvertMessages(ctx context.Context) (int, error) {
	var total int
	for {
		n, done, err := s.convertBatch(ctx, convertBatchSize, nil)
		total += n
		if err != nil || done {
			if total > 0 {
				s.log.Info("messages converted to be stored once", "converted", total)
			}
			return total, err
		}
	}
}

// convertBatch converts the next size messages; inTx (tests) runs inside
// the batch's transaction before it commits. done says nothing is left.
func (s *Store) convertBatch(ctx context.Context, size int, inTx func() error) (converted int, done bool, err error) {
	var through, upto int64
	err = s.r.QueryRowContext(ctx, `SELECT done_through, upto FROM message_conversion WHERE id = 1`).Scan(&through, &upto)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, true, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("reading the conversion's progress: %w", err)
	}
	if through >= upto {
		return 0, true, nil
	}
	rows, err := s.r.QueryContext(ctx, `SELECT id FROM messages WHERE id > $1 AND id <= $2 ORDER BY id LIMIT $3`, through, upto, size)
	if err != nil {
		return 0, false, fmt.Errorf("listing messages to convert: %w", err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, false, fmt.Errorf("listing messages to convert: %w", err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, false, fmt.Errorf("listing messages to convert: %w", err)
	}
	next := upto
	if len(ids) == size {
		next = ids[len(ids)-1]
	}
	// Parsed outside the transaction: the SQLite writer is not held
	// while the parser works. The rows read do not change (a message's
	// copies are written once; Prune empties them, which the update
	// below checks).
	layouts := map[int64]string{}
	for _, id := range ids {
		l, err := s.layoutFor(ctx, id)
		if err != nil {
			return 0, false, err
		}
		if l != "" {
			layouts[id] = l
		}
	}
	err = s.Write(ctx, func(tx *sql.Tx) error {
		converted = 0
		res, err := tx.ExecContext(ctx, `UPDATE message_conversion SET done_through = $1 WHERE id = 1 AND done_through = $2`, next, through)
		if err != nil {
			return fmt.Errorf("moving the conversion's progress: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return errRaced // another replica converted this batch
		}
		for _, id := range ids {
			l, ok := layouts[id]
			if !ok {
				continue
			}
			res, err := tx.ExecContext(ctx, `UPDATE messages SET layout = $1, text_body = '', html_body = ''
				WHERE id = $2 AND layout = '' AND length(raw) > 0`, l, id)
			if err != nil {
				return fmt.Errorf("converting message %d: %w", id, err)
			}
			if n, _ := res.RowsAffected(); n != 1 {
				continue // pruned or deleted meanwhile
			}
			if _, err := tx.ExecContext(ctx, `UPDATE attachments SET content = $1 WHERE message_id = $2`, []byte{}, id); err != nil {
				return fmt.Errorf("converting the attachments of message %d: %w", id, err)
			}
			converted++
		}
		if convertPause > 0 {
			time.Sleep(convertPause)
		}
		if inTx != nil {
			return inTx()
		}
		return nil
	})
	if errors.Is(err, errRaced) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("converting messages %d to %d: %w", through+1, next, err)
	}
	return converted, next >= upto, nil
}

var errRaced = errors.New("raced")

// layoutFor returns the layout message id is stored once with, as JSON, or
// "" when it stays as it is: its raw message parses to no layout, or the
// layout does not decode to exactly the copies stored.
func (s *Store) layoutFor(ctx context.Context, id int64) (string, error) {
	var raw []byte
	var textBody, htmlBody, layout string
	var tooLarge bool
	err := s.r.QueryRowContext(ctx, `SELECT raw, text_body, html_body, layout, too_large FROM messages WHERE id = $1`, id).
		Scan(&raw, &textBody, &htmlBody, &layout, &tooLarge)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil // deleted meanwhile
	}
	if err != nil {
		return "", fmt.Errorf("reading message %d to convert: %w", id, err)
	}
	if layout != "" || tooLarge || len(raw) == 0 {
		return "", nil
	}
	m := mail.Parse(raw)
	if m.Layout == nil {
		return "", nil
	}
	ra := bytes.NewReader(raw)
	t, h, err := m.Layout.Bodies(ra)
	if err != nil || text(t) != textBody || text(h) != htmlBody {
		return "", nil
	}
	rows, err := s.r.QueryContext(ctx, `SELECT n, content FROM attachments WHERE message_id = $1 ORDER BY n`, id)
	if err != nil {
		return "", fmt.Errorf("reading the attachments of message %d to convert: %w", id, err)
	}
	defer rows.Close()
	var count int
	for rows.Next() {
		var n int
		var content []byte
		if err := rows.Scan(&n, &content); err != nil {
			return "", fmt.Errorf("reading the attachments of message %d to convert: %w", id, err)
		}
		if n != count || n >= len(m.Layout.Attachments) {
			return "", nil
		}
		count++
		r, err := m.Layout.Attachment(ra, n)
		if err != nil {
			return "", nil
		}
		decoded, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(decoded, content) {
			return "", nil
		}
	}
	if err := rows.Err(); err != nil {
		return "", fmt.Errorf("reading the attachments of message %d to convert: %w", id, err)
	}
	if count != len(m.Layout.Attachments) {
		return "", nil
	}
	l, err := json.Marshal(m.Layout)
	if err != nil {
		return "", nil
	}
	return string(l), nil
}
