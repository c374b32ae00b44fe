package store

// Checkpoints: where reading each mailbox stands, one row per mailbox in
// its source kind's terms (table checkpoints).

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
)

// The source kinds a checkpoint or an owed action is written in.
const (
	kindIMAP  = "imap"  // value: UIDVALIDITY and last UID (imapValue)
	kindPOP3  = "pop3"  // value: "" (the seen ids are the checkpoint)
	kindGraph = "graph" // value: the Graph deltaLink
)

// Checkpoint is where reading an IMAP folder stands: every message up to
// LastUID under UIDValidity is recorded.
type Checkpoint struct {
	UIDValidity uint32
	LastUID     uint32
}

// imapValue is how an IMAP checkpoint, or an IMAP message's id, is written:
// fixed width, so that the SQL of setCheckpoint can compare the parts.
func imapValue(uidValidity, uid uint32) string { return fmt.Sprintf("%010d:%010d", uidValidity, uid) }

// parseIMAPValue reads an imapValue.
func parseIMAPValue(v string) (uidValidity, uid uint32, err error) {
	if len(v) != 21 || v[10] != ':' {
		return 0, 0, fmt.Errorf("malformed imap checkpoint %q", v)
	}
	a, err := strconv.ParseUint(v[:10], 10, 32)
	if err != nil {
		return 0, 0, fmt.Errorf("malformed imap checkpoint %q: %w", v, err)
	}
	b, err := strconv.ParseUint(v[11:], 10, 32)
	if err != nil {
		return 0, 0, fmt.Errorf("malformed imap checkpoint %q: %w", v, err)
	}
	return uint32(a), uint32(b), nil
}

// checkpoint reads the checkpoint row of configuration imapID; ok is false
// when there is none.
func (s *Store) checkpoint(ctx context.Context, imapID int64) (kind, value string, ok bool, err error) {
	err = s.r.QueryRowContext(ctx, `SELECT kind, value FROM checkpoints WHERE imap_id = $1`, imapID).Scan(&kind, &value)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", false, nil
	}
	if err != nil {
		return "", "", false, fmt.Errorf("reading checkpoint of imap configuration %d: %w", imapID, err)
	}
	return kind, value, true, nil
}

// GetCheckpoint returns the checkpoint of configuration imapID; ok is false
// when the mailbox was never read. A POP3 or Graph mailbox's checkpoint
// reads as the zero Checkpoint.
func (s *Store) GetCheckpoint(ctx context.Context, imapID int64) (cp Checkpoint, ok bool, err error) {
	kind, value, ok, err := s.checkpoint(ctx, imapID)
	if err != nil || !ok || kind != kindIMAP {
		return Checkpoint{}, ok, err
	}
	cp.UIDValidity, cp.LastUID, err = parseIMAPValue(value)
	if err != nil {
		return Checkpoint{}, false, fmt.Errorf("reading checkpoint of imap configuration %d: %w", imapID, err)
	}
	return cp, true, nil
}

// DeltaLink returns the stored Graph deltaLink of configuration imapID; ok
// is false when the mailbox was never read ("" with ok: start from an empty
// link).
func (s *Store) DeltaLink(ctx context.Context, imapID int64) (link string, ok bool, err error) {
	kind, value, ok, err := s.checkpoint(ctx, imapID)
	if err != nil || !ok || kind != kindGraph {
		return "", ok, err
	}
	return value, true, nil
}

// SetDeltaLink stores the Graph deltaLink of configuration imapID without
// recording messages (the first connect: "" to read all the mail, the
// primed link for backlog "new"; a resync's empty link), remembering ids as
// read without recording them (the unread-only backlog skips the read
// ones).
func (s *Store) SetDeltaLink(ctx context.Context, imapID int64, link string, seen []string) error {
	return s.Write(ctx, func(tx *sql.Tx) error {
		for _, id := range seen {
			if err := rememberUIDL(ctx, tx, imapID, id, nil); err != nil {
				return err
			}
		}
		return setGraphCheckpoint(ctx, tx, imapID, &link)
	})
}

// setGraphCheckpoint makes the checkpoint of imapID a Graph one, with
// deltaLink link; with a nil link, the stored link is kept (or "" if the
// mailbox had none).
func setGraphCheckpoint(ctx context.Context, tx *sql.Tx, imapID int64, link *string) error {
	var err error
	if link != nil {
		_, err = tx.ExecContext(ctx, `INSERT INTO checkpoints (imap_id, kind, value, updated_at) VALUES ($1, $2, $3, $4)
			ON CONFLICT (imap_id) DO UPDATE SET kind = excluded.kind, value = excluded.value, updated_at = excluded.updated_at`,
			imapID, kindGraph, *link, now())
	} else {
		_, err = tx.ExecContext(ctx, `INSERT INTO checkpoints (imap_id, kind, value, updated_at) VALUES ($1, $2, '', $3)
			ON CONFLICT (imap_id) DO UPDATE SET kind = excluded.kind,
				value = CASE WHEN checkpoints.kind = excluded.kind THEN checkpoints.value ELSE '' END,
				updated_at = excluded.updated_at`,
			imapID, kindGraph, now())
	}
	if err != nil {
		return fmt.Errorf("storing deltaLink of imap configuration %d: %w", imapID, err)
	}
	return nil
}

// SetCheckpoint moves the checkpoint without recording messages (a backlog
// mode that skips old mail, a UIDVALIDITY change).
func (s *Store) SetCheckpoint(ctx context.Context, imapID int64, cp Checkpoint) error {
	return s.Write(ctx, func(tx *sql.Tx) error { return setCheckpoint(ctx, tx, imapID, cp) })
}

// setCheckpoint stores cp as the checkpoint of imapID: an IMAP one, or,
// with UIDVALIDITY 0 (which no IMAP folder has), the POP3 one, which only
// says that the first connect happened. The zero checkpoint leaves a Graph
// checkpoint alone (it reads as the zero Checkpoint already).
func setCheckpoint(ctx context.Context, tx *sql.Tx, imapID int64, cp Checkpoint) error {
	var err error
	if cp.UIDValidity == 0 {
		_, err = tx.ExecContext(ctx, `INSERT INTO checkpoints (imap_id, kind, value, updated_at) VALUES ($1, $2, '', $3)
			ON CONFLICT (imap_id) DO UPDATE SET
				kind = CASE WHEN checkpoints.kind = $4 THEN checkpoints.kind ELSE excluded.kind END,
				value = CASE WHEN checkpoints.kind = $4 THEN checkpoints.value ELSE '' END,
				updated_at = excluded.updated_at`,
			imapID, kindPOP3, now(), kindGraph)
	} else {
		// Same UIDVALIDITY: only forwards. Another UIDVALIDITY: the
		// folder was recreated and reading starts over. (A CASE, whose
		// branches PostgreSQL tries in order: a Graph link is no number.)
		_, err = tx.ExecContext(ctx, `INSERT INTO checkpoints (imap_id, kind, value, updated_at) VALUES ($1, $2, $3, $4)
			ON CONFLICT (imap_id) DO UPDATE SET
				value = CASE WHEN checkpoints.kind <> excluded.kind THEN excluded.value
					WHEN substr(checkpoints.value, 1, 10) <> substr(excluded.value, 1, 10) THEN excluded.value
					WHEN CAST(substr(checkpoints.value, 12) AS BIGINT) > CAST(substr(excluded.value, 12) AS BIGINT) THEN checkpoints.value
					ELSE excluded.value END,
				kind = excluded.kind, updated_at = excluded.updated_at`,
			imapID, kindIMAP, imapValue(cp.UIDValidity, cp.LastUID), now())
	}
	if err != nil {
		return fmt.Errorf("moving checkpoint of imap configuration %d: %w", imapID, err)
	}
	return nil
}
