package store

// Recording a batch: the ingest transaction.

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"mailtrigger/internal/mail"
)

// Incoming is one message read from a server, to be recorded.
type Incoming struct {
	UID uint32
	// ID, when set, is the id the source names the message by (a POP3
	// unique id, a Graph message id): the message is recorded under epoch
	// 0 with the configuration's next UID (replacing UID), its id is
	// remembered among the seen ids in the same transaction, and a message
	// whose id is seen already is skipped. No after-processing is owed for
	// it unless Batch.ActByID: for POP3 the seen ids are what is owed.
	ID  string
	Raw []byte // the whole message, or only its header when Msg.TooLarge
	// Big, when set, holds the whole message instead of Raw (a message
	// above the spool threshold): it is stored from there in chunks.
	Big  RawFile
	Msg  *mail.Message
	Seen time.Time // when it was read
}

// RawFile is a message held outside memory (a spool file).
type RawFile interface {
	io.ReaderAt
	Size() int64
}

// Batch is what one ingest transaction records for one mailbox.
type Batch struct {
	IMAPID   int64
	IMAPName string
	// Epoch is the epoch (IMAP UIDVALIDITY) the messages' UIDs belong
	// to; messages with an ID are recorded under epoch 0.
	Epoch    uint32
	Messages []Incoming
	// Checkpoint, when set, is where the mailbox stands once the batch is
	// recorded, stored in the same transaction (setCheckpoint says how it
	// merges with the stored one). Nil leaves the stored checkpoint alone:
	// the backlog of a first IMAP connect is recorded before the mailbox
	// has a checkpoint, so that a crash in its middle reads it again rather
	// than skip the rest.
	Checkpoint *Checkpoint
	// Action and MoveTo are the after-processing owed to the server for each
	// recorded message ("" or "none": nothing).
	Action, MoveTo string
	// ActByID says the after-processing is owed also for the messages
	// with an ID, to be done by that id after the commit (Microsoft Graph;
	// Owed lists them with their ID).
	ActByID bool
	// Attempt, when set, is the key under which the crash-loop breaker
	// noted this batch (SetAttempt); the note is removed in the same
	// transaction.
	Attempt string
}

// Recorded is a message the batch recorded.
type Recorded struct {
	ID  int64
	UID uint32
}

// RecordHook runs inside the ingest transaction for every message recorded:
// the seam where flows create their runs, so that a message and its runs
// commit together or not at all.
type RecordHook func(ctx context.Context, tx *Tx, b *Batch, id int64, in Incoming) error

// RecordBatch records the messages of b and stores its checkpoint, in one
// transaction. A message already recorded (same configuration, epoch and
// UID, or a seen ID), or recorded under another epoch with the same dedupe
// key, is not recorded again.
func (s *Store) RecordBatch(ctx context.Context, b Batch, hook RecordHook) (rec []Recorded, skipped int, err error) {
	err = s.Write(ctx, func(tx *sql.Tx) error {
		rec, skipped = rec[:0], 0
		htx := &Tx{s: s, tx: tx}
		for _, in := range b.Messages {
			id, ok, err := recordMessage(ctx, tx, b, &in)
			if err != nil {
				return err
			}
			if !ok {
				skipped++
				continue
			}
			if hook != nil {
				if err := hook(ctx, htx, &b, id, in); err != nil {
					return fmt.Errorf("message uid %d: %w", in.UID, err)
				}
			}
			if (in.ID == "" || b.ActByID) && b.Action != "" && b.Action != "none" {
				if err := oweAction(ctx, tx, b, id, in); err != nil {
					return err
				}
			}
			rec = append(rec, Recorded{ID: id, UID: in.UID})
		}
		if b.Attempt != "" {
			if err := clearAttempt(ctx, tx, b.IMAPID, b.Attempt); err != nil {
				return err
			}
		}
		if b.Checkpoint == nil {
			return nil
		}
		return setCheckpoint(ctx, tx, b.IMAPID, *b.Checkpoint)
	})
	if err != nil {
		return nil, 0, fmt.Errorf("recording %d message(s) of %s: %w", len(b.Messages), b.IMAPName, err)
	}
	return rec, skipped, nil
}

func recordMessage(ctx context.Context, tx *sql.Tx, b Batch, in *Incoming) (int64, bool, error) {
	m := in.Msg
	key := m.DedupeKey()
	epoch := b.Epoch
	if in.ID != "" {
		epoch = 0
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM seen_ids WHERE imap_id = $1 AND source_id = $2`, b.IMAPID, in.ID).Scan(&one)
		if err == nil {
			return 0, false, nil // read before
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return 0, false, fmt.Errorf("looking for message id %q recorded earlier: %w", in.ID, err)
		}
		var next int64
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(uid), 0) + 1 FROM messages WHERE imap_id = $1 AND uid_validity = 0`,
			b.IMAPID).Scan(&next); err != nil {
			return 0, false, fmt.Errorf("numbering message %q: %w", in.ID, err)
		}
		in.UID = uint32(next)
	}
	var dup int64
	err := tx.QueryRowContext(ctx, `SELECT id FROM messages WHERE imap_id = $1 AND dedupe_key = $2 AND uid_validity <> $3 LIMIT 1`,
		b.IMAPID, key, int64(epoch)).Scan(&dup)
	if err == nil {
		// Recorded before the folder was recreated (or, for POP3, while
		// the configuration read the mailbox over IMAP).
		if in.ID != "" {
			if err := addSeenID(ctx, tx, b.IMAPID, in.ID, &dup); err != nil {
				return 0, false, err
			}
		}
		return 0, false, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return 0, false, fmt.Errorf("looking for uid %d recorded earlier: %w", in.UID, err)
	}
	var date *time.Time
	if !m.Date.IsZero() {
		d := m.Date.UTC()
		date = &d
	}
	received := in.Seen
	if received.IsZero() {
		received = now()
	}
	var id int64
	f, _ := fenceFrom(ctx) // the replica recording, and its lease token
	sf := storedForm(in)
	err = tx.QueryRowContext(ctx, `INSERT INTO messages (imap_id, imap_name, uid_validity, uid, message_id, dedupe_key, subject,
		from_json, to_json, cc_json, reply_to_json, date, size, received_at, parse_error, too_large, text_body, html_body, raw,
		replica, lease_token, layout)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)
		ON CONFLICT (imap_id, uid_validity, uid) DO NOTHING RETURNING id`,
		b.IMAPID, b.IMAPName, int64(epoch), int64(in.UID), text(m.MessageID), text(key), text(m.Subject),
		addrJSON(m.From), addrJSON(m.To), addrJSON(m.Cc), addrJSON(m.ReplyTo), date, m.Size, received.UTC(),
		text(m.ParseError()), m.TooLarge, sf.text, sf.html, sf.raw, f.Owner, f.Token, sf.layout).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil // recorded already
	}
	if err != nil {
		return 0, false, fmt.Errorf("recording uid %d: %w", in.UID, err)
	}
	for n, a := range m.Attachments {
		if _, err := tx.ExecContext(ctx, `INSERT INTO attachments (message_id, n, filename, content_type, size, sha256, inline, content_id, content)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`, id, n, text(a.Filename), text(a.ContentType), a.Size, a.SHA256,
			a.Inline, text(a.ContentID), sf.content(a.Content)); err != nil {
			return 0, false, fmt.Errorf("recording attachment %d of uid %d: %w", n, in.UID, err)
		}
	}
	if in.Big != nil {
		if err := writeChunks(ctx, tx, id, in.Big); err != nil {
			return 0, false, fmt.Errorf("recording uid %d: %w", in.UID, err)
		}
	}
	if in.ID != "" {
		if err := addSeenID(ctx, tx, b.IMAPID, in.ID, &id); err != nil {
			return 0, false, err
		}
	}
	return id, true, nil
}

// text makes s storable in a PostgreSQL text column, which refuses NUL.
func text(s string) string { return strings.ReplaceAll(s, "\x00", "\uFFFD") }

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func addrJSON(a []mail.Address) string {
	if a == nil {
		a = []mail.Address{}
	}
	for i := range a {
		a[i].Name, a[i].Address = text(a[i].Name), text(a[i].Address)
	}
	data, _ := json.Marshal(a)
	return string(data)
}
