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

// Kind is the source kind a checkpoint or an owed action is written in.
type Kind string

// The source kinds.
const (
	KindIMAP  Kind = "imap"  // value: Epoch (UIDVALIDITY) and Last (UID), imapValue
	KindPOP3  Kind = "pop3"  // value: "" (the seen ids are the checkpoint)
	KindGraph Kind = "graph" // value: Cursor, the Graph deltaLink
)

// Checkpoint is where reading a mailbox stands, in its source kind's terms
// (one row of table checkpoints).
type Checkpoint struct {
	Kind Kind
	// Epoch and Last (IMAP): every message up to UID Last under
	// UIDVALIDITY Epoch is recorded.
	Epoch, Last uint32
	// Cursor (Graph) is the deltaLink the next round starts from ("":
	// the whole folder).
	Cursor string
	// KeepCursor (Graph), when writing, keeps the stored cursor: a batch
	// in the middle of a delta round, which started from it (a checkpoint
	// of another kind becomes a Graph one with an empty cursor).
	KeepCursor bool
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

// GetCheckpoint returns the checkpoint of configuration imapID, with the
// fields of its kind set; ok is false when the mailbox was never read.
func (s *Store) GetCheckpoint(ctx context.Context, imapID int64) (cp Checkpoint, ok bool, err error) {
	var kind, value string
	err = s.r.QueryRowContext(ctx, `SELECT kind, value FROM checkpoints WHERE imap_id = $1`, imapID).Scan(&kind, &value)
	if errors.Is(err, sql.ErrNoRows) {
		return Checkpoint{}, false, nil
	}
	if err != nil {
		return Checkpoint{}, false, fmt.Errorf("reading checkpoint of imap configuration %d: %w", imapID, err)
	}
	cp.Kind = Kind(kind)
	switch cp.Kind {
	case KindIMAP:
		cp.Epoch, cp.Last, err = parseIMAPValue(value)
		if err != nil {
			return Checkpoint{}, false, fmt.Errorf("reading checkpoint of imap configuration %d: %w", imapID, err)
		}
	case KindGraph:
		cp.Cursor = value
	}
	return cp, true, nil
}

// SetCheckpoint stores cp as the checkpoint of configuration imapID without
// recording messages (the first connect; a backlog mode that skips old
// mail; a UIDVALIDITY change), remembering the ids seen as read without
// recording them (what the first connect skips), in one transaction.
func (s *Store) SetCheckpoint(ctx context.Context, imapID int64, cp Checkpoint, seen []string) error {
	return s.Write(ctx, func(tx *sql.Tx) error {
		for _, id := range seen {
			if err := addSeenID(ctx, tx, imapID, id, nil); err != nil {
				return err
			}
		}
		return setCheckpoint(ctx, tx, imapID, cp)
	})
}

// checkpointIMAPSQL stores an IMAP checkpoint: under the same UIDVALIDITY
// only forwards; under another, the folder was recreated and reading
// starts over. (A CASE, whose branches PostgreSQL tries in order: a Graph
// link is no number.)
const checkpointIMAPSQL = `INSERT INTO checkpoints (imap_id, kind, value, updated_at) VALUES ($1, $2, $3, $4)
	ON CONFLICT (imap_id) DO UPDATE SET
		value = CASE WHEN checkpoints.kind <> excluded.kind THEN excluded.value
			WHEN substr(checkpoints.value, 1, 10) <> substr(excluded.value, 1, 10) THEN excluded.value
			WHEN CAST(substr(checkpoints.value, 12) AS BIGINT) > CAST(substr(excluded.value, 12) AS BIGINT) THEN checkpoints.value
			ELSE excluded.value END,
		kind = excluded.kind, updated_at = excluded.updated_at`

// setCheckpoint stores cp as the checkpoint of imapID, merged with the
// stored one by cp's kind:
//   - IMAP: under the same UIDVALIDITY, the checkpoint only moves forward;
//     under another (the folder was recreated), reading starts over.
//   - POP3: the row only says that the first connect happened; it leaves a
//     Graph checkpoint alone (as the old mailbox_state row kept its
//     delta_link).
//   - Graph: the cursor is stored (or kept, KeepCursor).
func setCheckpoint(ctx context.Context, tx execer, imapID int64, cp Checkpoint) error {
	var err error
	switch {
	case cp.Kind == KindIMAP:
		_, err = tx.ExecContext(ctx, checkpointIMAPSQL, imapID, string(KindIMAP), imapValue(cp.Epoch, cp.Last), now())
	case cp.Kind == KindPOP3:
		_, err = tx.ExecContext(ctx, `INSERT INTO checkpoints (imap_id, kind, value, updated_at) VALUES ($1, $2, '', $3)
			ON CONFLICT (imap_id) DO UPDATE SET
				kind = CASE WHEN checkpoints.kind = $4 THEN checkpoints.kind ELSE excluded.kind END,
				value = CASE WHEN checkpoints.kind = $4 THEN checkpoints.value ELSE '' END,
				updated_at = excluded.updated_at`,
			imapID, string(KindPOP3), now(), string(KindGraph))
	case cp.Kind == KindGraph && cp.KeepCursor:
		_, err = tx.ExecContext(ctx, `INSERT INTO checkpoints (imap_id, kind, value, updated_at) VALUES ($1, $2, '', $3)
			ON CONFLICT (imap_id) DO UPDATE SET kind = excluded.kind,
				value = CASE WHEN checkpoints.kind = excluded.kind THEN checkpoints.value ELSE '' END,
				updated_at = excluded.updated_at`,
			imapID, string(KindGraph), now())
	case cp.Kind == KindGraph:
		_, err = tx.ExecContext(ctx, `INSERT INTO checkpoints (imap_id, kind, value, updated_at) VALUES ($1, $2, $3, $4)
			ON CONFLICT (imap_id) DO UPDATE SET kind = excluded.kind, value = excluded.value, updated_at = excluded.updated_at`,
			imapID, string(KindGraph), cp.Cursor, now())
	default:
		err = fmt.Errorf("unknown checkpoint kind %q", cp.Kind)
	}
	if err != nil {
		return fmt.Errorf("moving checkpoint of imap configuration %d: %w", imapID, err)
	}
	return nil
}
