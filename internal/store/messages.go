package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"mailtrigger/internal/mail"
)

// Checkpoint is where reading an IMAP folder stands: every message up to
// LastUID under UIDValidity is recorded.
type Checkpoint struct {
	UIDValidity uint32
	LastUID     uint32
}

// GetCheckpoint returns the checkpoint of configuration imapID; ok is false
// when the mailbox was never read.
func (s *Store) GetCheckpoint(ctx context.Context, imapID int64) (cp Checkpoint, ok bool, err error) {
	var v, u int64
	err = s.r.QueryRowContext(ctx, `SELECT uid_validity, last_uid FROM mailbox_state WHERE imap_id = $1`, imapID).Scan(&v, &u)
	if errors.Is(err, sql.ErrNoRows) {
		return Checkpoint{}, false, nil
	}
	if err != nil {
		return Checkpoint{}, false, fmt.Errorf("reading checkpoint of imap configuration %d: %w", imapID, err)
	}
	return Checkpoint{UIDValidity: uint32(v), LastUID: uint32(u)}, true, nil
}

// Incoming is one message read from a server, to be recorded.
type Incoming struct {
	UID uint32
	// UIDL, when set, is the POP3 unique id of the message: the message is
	// recorded under UIDVALIDITY 0 with the configuration's next UID
	// (replacing UID), its UIDL is remembered in the same transaction, and a
	// message whose UIDL is remembered already is skipped. No pending
	// after-processing is recorded for it: the UIDLs are what is owed.
	UIDL string
	Raw  []byte // the whole message, or only its header when Msg.TooLarge
	Msg  *mail.Message
	Seen time.Time // when it was read
}

// Batch is what one ingest transaction records for one mailbox.
type Batch struct {
	IMAPID     int64
	IMAPName   string
	Checkpoint Checkpoint // where the mailbox stands once the batch is recorded
	// KeepCheckpoint leaves the stored checkpoint alone (Checkpoint still
	// gives the UIDVALIDITY the messages are recorded under): the backlog of
	// a first connect is recorded before the mailbox has a checkpoint, so
	// that a crash in its middle reads it again rather than skip the rest.
	KeepCheckpoint bool
	Messages       []Incoming
	// Action and MoveTo are the after-processing owed to the server for each
	// recorded message ("" or "none": nothing).
	Action, MoveTo string
	// OweByID records the after-processing owed also for messages with a
	// UIDL (Microsoft Graph messages, whose ids are remembered as UIDLs and
	// which are acted on after the commit by id), under UIDVALIDITY 0 and
	// the UID they were recorded with; PendingGraphActions lists them.
	OweByID bool
	// DeltaLink, when set, is the Graph deltaLink stored with the batch (in
	// the same transaction): set only on the batch that finishes a delta
	// round; earlier batches leave the stored link alone.
	DeltaLink *string
	// Attempt, when set, is the key under which the crash-loop breaker
	// noted this batch (SetAttempt); the note is removed in the same
	// transaction.
	Attempt string

	// Flows is the hook's copy of the flows on the mailbox, read once per
	// transaction (FlowsRead) rather than once per message; RecordBatch
	// clears it whenever a transaction starts.
	Flows     []FlowRecord
	FlowsRead bool
}

// Recorded is a message the batch recorded.
type Recorded struct {
	ID  int64
	UID uint32
}

// RecordHook runs inside the ingest transaction for every message recorded:
// the seam where flows create their runs, so that a message and its runs
// commit together or not at all.
type RecordHook func(ctx context.Context, tx *sql.Tx, b *Batch, id int64, in Incoming) error

// RecordBatch records the messages of b and moves the checkpoint, in one
// transaction. A message already recorded (same configuration, UIDVALIDITY
// and UID), or recorded under an earlier UIDVALIDITY with the same dedupe key,
// is not recorded again. The checkpoint never moves backwards.
func (s *Store) RecordBatch(ctx context.Context, b Batch, hook RecordHook) (rec []Recorded, skipped int, err error) {
	err = s.Write(ctx, func(tx *sql.Tx) error {
		rec, skipped = rec[:0], 0
		b.Flows, b.FlowsRead = nil, false
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
				if err := hook(ctx, tx, &b, id, in); err != nil {
					return fmt.Errorf("message uid %d: %w", in.UID, err)
				}
			}
			if (in.UIDL == "" || b.OweByID) && b.Action != "" && b.Action != "none" {
				if _, err := tx.ExecContext(ctx, `INSERT INTO pending_actions (imap_id, uid_validity, uid, action, move_to, created_at)
					VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING`,
					b.IMAPID, int64(uidValidity(b, in)), int64(in.UID), b.Action, b.MoveTo, now()); err != nil {
					return fmt.Errorf("recording after-processing of uid %d: %w", in.UID, err)
				}
			}
			rec = append(rec, Recorded{ID: id, UID: in.UID})
		}
		if b.Attempt != "" {
			if err := clearAttempt(ctx, tx, b.IMAPID, b.Attempt); err != nil {
				return err
			}
		}
		if b.KeepCheckpoint {
			return nil
		}
		if err := setCheckpoint(ctx, tx, b.IMAPID, b.Checkpoint); err != nil {
			return err
		}
		if b.DeltaLink != nil {
			return setDeltaLink(ctx, tx, b.IMAPID, *b.DeltaLink)
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("recording %d message(s) of %s: %w", len(b.Messages), b.IMAPName, err)
	}
	return rec, skipped, nil
}

// uidValidity is the UIDVALIDITY message in of b is recorded under.
func uidValidity(b Batch, in Incoming) uint32 {
	if in.UIDL != "" {
		return 0
	}
	return b.Checkpoint.UIDValidity
}

func setDeltaLink(ctx context.Context, tx *sql.Tx, imapID int64, link string) error {
	if _, err := tx.ExecContext(ctx, `UPDATE mailbox_state SET delta_link = $1 WHERE imap_id = $2`, link, imapID); err != nil {
		return fmt.Errorf("storing deltaLink of imap configuration %d: %w", imapID, err)
	}
	return nil
}

// DeltaLink returns the stored Graph deltaLink of configuration imapID; ok
// is false when the mailbox was never read ("" with ok: start from an empty
// link).
func (s *Store) DeltaLink(ctx context.Context, imapID int64) (link string, ok bool, err error) {
	err = s.r.QueryRowContext(ctx, `SELECT delta_link FROM mailbox_state WHERE imap_id = $1`, imapID).Scan(&link)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("reading deltaLink of imap configuration %d: %w", imapID, err)
	}
	return link, true, nil
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
		if err := setCheckpoint(ctx, tx, imapID, Checkpoint{}); err != nil {
			return err
		}
		return setDeltaLink(ctx, tx, imapID, link)
	})
}

// RememberIDs remembers the Graph message ids of configuration imapID as
// read without recording them (the read mail the unread-only backlog
// skips), leaving the checkpoint alone.
func (s *Store) RememberIDs(ctx context.Context, imapID int64, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	return s.Write(ctx, func(tx *sql.Tx) error {
		for _, id := range ids {
			if err := rememberUIDL(ctx, tx, imapID, id, nil); err != nil {
				return err
			}
		}
		return nil
	})
}

// ForgetIDs forgets the Graph message ids of configuration imapID (the
// messages are gone from the folder, so remembering them would only grow
// the table), with the after-processing still owed for them, which can no
// longer be done. The messages' records stay.
func (s *Store) ForgetIDs(ctx context.Context, imapID int64, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	return s.Write(ctx, func(tx *sql.Tx) error {
		for _, id := range ids {
			if _, err := tx.ExecContext(ctx, `DELETE FROM pending_actions WHERE imap_id = $1 AND uid_validity = 0 AND uid IN
				(SELECT m.uid FROM pop3_uidls u JOIN messages m ON m.id = u.message_id
				 WHERE u.imap_id = $1 AND u.uidl = $2 AND m.uid_validity = 0)`, imapID, id); err != nil {
				return fmt.Errorf("forgetting the after-processing owed for message id %q: %w", id, err)
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM pop3_uidls WHERE imap_id = $1 AND uidl = $2`, imapID, id); err != nil {
				return fmt.Errorf("forgetting message id %q: %w", id, err)
			}
		}
		return nil
	})
}

// PendingGraphAction is after-processing owed to Graph for a recorded
// message.
type PendingGraphAction struct {
	UID     uint32 // the UID the message was recorded with (UIDVALIDITY 0)
	GraphID string
	Action  string
	MoveTo  string
}

// PendingGraphActions returns the after-processing owed for the Graph
// messages of configuration imapID (DonePendingActions with UIDVALIDITY 0
// forgets them).
func (s *Store) PendingGraphActions(ctx context.Context, imapID int64) ([]PendingGraphAction, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT p.uid, u.uidl, p.action, p.move_to FROM pending_actions p
		JOIN messages m ON m.imap_id = p.imap_id AND m.uid_validity = 0 AND m.uid = p.uid
		JOIN pop3_uidls u ON u.imap_id = p.imap_id AND u.message_id = m.id
		WHERE p.imap_id = $1 AND p.uid_validity = 0 ORDER BY p.uid`, imapID)
	if err != nil {
		return nil, fmt.Errorf("listing pending after-processing: %w", err)
	}
	defer rows.Close()
	var out []PendingGraphAction
	for rows.Next() {
		var p PendingGraphAction
		var u int64
		if err := rows.Scan(&u, &p.GraphID, &p.Action, &p.MoveTo); err != nil {
			return nil, fmt.Errorf("listing pending after-processing: %w", err)
		}
		p.UID = uint32(u)
		out = append(out, p)
	}
	return out, rows.Err()
}

// SetCheckpoint moves the checkpoint without recording messages (a backlog
// mode that skips old mail, a UIDVALIDITY change).
func (s *Store) SetCheckpoint(ctx context.Context, imapID int64, cp Checkpoint) error {
	return s.Write(ctx, func(tx *sql.Tx) error { return setCheckpoint(ctx, tx, imapID, cp) })
}

func setCheckpoint(ctx context.Context, tx *sql.Tx, imapID int64, cp Checkpoint) error {
	// Same UIDVALIDITY: only forwards. Another UIDVALIDITY: the folder was
	// recreated and reading starts over.
	_, err := tx.ExecContext(ctx, `INSERT INTO mailbox_state (imap_id, uid_validity, last_uid, updated_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (imap_id) DO UPDATE SET
			last_uid = CASE WHEN mailbox_state.uid_validity = excluded.uid_validity AND mailbox_state.last_uid > excluded.last_uid
				THEN mailbox_state.last_uid ELSE excluded.last_uid END,
			uid_validity = excluded.uid_validity, updated_at = excluded.updated_at`,
		imapID, int64(cp.UIDValidity), int64(cp.LastUID), now())
	if err != nil {
		return fmt.Errorf("moving checkpoint of imap configuration %d: %w", imapID, err)
	}
	return nil
}

func recordMessage(ctx context.Context, tx *sql.Tx, b Batch, in *Incoming) (int64, bool, error) {
	m := in.Msg
	key := m.DedupeKey()
	if in.UIDL != "" {
		b.Checkpoint.UIDValidity = 0
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM pop3_uidls WHERE imap_id = $1 AND uidl = $2`, b.IMAPID, in.UIDL).Scan(&one)
		if err == nil {
			return 0, false, nil // read before
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return 0, false, fmt.Errorf("looking for unique id %q recorded earlier: %w", in.UIDL, err)
		}
		var next int64
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(uid), 0) + 1 FROM messages WHERE imap_id = $1 AND uid_validity = 0`,
			b.IMAPID).Scan(&next); err != nil {
			return 0, false, fmt.Errorf("numbering message %q: %w", in.UIDL, err)
		}
		in.UID = uint32(next)
	}
	var dup int64
	err := tx.QueryRowContext(ctx, `SELECT id FROM messages WHERE imap_id = $1 AND dedupe_key = $2 AND uid_validity <> $3 LIMIT 1`,
		b.IMAPID, key, int64(b.Checkpoint.UIDValidity)).Scan(&dup)
	if err == nil {
		// Recorded before the folder was recreated (or, for POP3, while
		// the configuration read the mailbox over IMAP).
		if in.UIDL != "" {
			if err := rememberUIDL(ctx, tx, b.IMAPID, in.UIDL, &dup); err != nil {
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
	err = tx.QueryRowContext(ctx, `INSERT INTO messages (imap_id, imap_name, uid_validity, uid, message_id, dedupe_key, subject,
		from_json, to_json, cc_json, reply_to_json, date, size, received_at, parse_error, too_large, text_body, html_body, raw,
		replica, lease_token)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)
		ON CONFLICT (imap_id, uid_validity, uid) DO NOTHING RETURNING id`,
		b.IMAPID, b.IMAPName, int64(b.Checkpoint.UIDValidity), int64(in.UID), text(m.MessageID), text(key), text(m.Subject),
		addrJSON(m.From), addrJSON(m.To), addrJSON(m.Cc), addrJSON(m.ReplyTo), date, m.Size, received.UTC(),
		text(m.ParseError()), m.TooLarge, text(m.Text), text(m.HTML), in.Raw, f.Owner, f.Token).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil // recorded already
	}
	if err != nil {
		return 0, false, fmt.Errorf("recording uid %d: %w", in.UID, err)
	}
	for n, a := range m.Attachments {
		if _, err := tx.ExecContext(ctx, `INSERT INTO attachments (message_id, n, filename, content_type, size, sha256, inline, content_id, content)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`, id, n, text(a.Filename), text(a.ContentType), a.Size, a.SHA256,
			a.Inline, text(a.ContentID), nonNil(a.Content)); err != nil {
			return 0, false, fmt.Errorf("recording attachment %d of uid %d: %w", n, in.UID, err)
		}
	}
	if in.UIDL != "" {
		if err := rememberUIDL(ctx, tx, b.IMAPID, in.UIDL, &id); err != nil {
			return 0, false, err
		}
	}
	return id, true, nil
}

func rememberUIDL(ctx context.Context, tx *sql.Tx, imapID int64, uidl string, messageID *int64) error {
	if _, err := tx.ExecContext(ctx, `INSERT INTO pop3_uidls (imap_id, uidl, message_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
		imapID, uidl, messageID); err != nil {
		return fmt.Errorf("remembering unique id %q: %w", uidl, err)
	}
	return nil
}

// POP3UIDLs returns the unique ids of the POP3 messages configuration
// imapID has read (recorded, or marked seen without reading).
func (s *Store) POP3UIDLs(ctx context.Context, imapID int64) (map[string]bool, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT uidl FROM pop3_uidls WHERE imap_id = $1`, imapID)
	if err != nil {
		return nil, fmt.Errorf("listing unique ids read: %w", err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			return nil, fmt.Errorf("listing unique ids read: %w", err)
		}
		out[u] = true
	}
	return out, rows.Err()
}

// ForgetPOP3UIDLs forgets the unique ids of configuration imapID that are
// not in present (the ids the server lists now): those messages are gone
// from the server, so remembering them would only grow the table.
func (s *Store) ForgetPOP3UIDLs(ctx context.Context, imapID int64, present map[string]bool) error {
	known, err := s.POP3UIDLs(ctx, imapID)
	if err != nil {
		return err
	}
	var gone []string
	for u := range known {
		if !present[u] {
			gone = append(gone, u)
		}
	}
	if len(gone) == 0 {
		return nil
	}
	return s.Write(ctx, func(tx *sql.Tx) error {
		for _, u := range gone {
			if _, err := tx.ExecContext(ctx, `DELETE FROM pop3_uidls WHERE imap_id = $1 AND uidl = $2`, imapID, u); err != nil {
				return fmt.Errorf("forgetting unique id %q: %w", u, err)
			}
		}
		return nil
	})
}

// MarkPOP3Seen remembers uidls as read without recording them (the mail
// present at the first connect, for backlog "new") and sets the checkpoint
// cp, in one transaction.
func (s *Store) MarkPOP3Seen(ctx context.Context, imapID int64, uidls []string, cp Checkpoint) error {
	return s.Write(ctx, func(tx *sql.Tx) error {
		for _, u := range uidls {
			if err := rememberUIDL(ctx, tx, imapID, u, nil); err != nil {
				return err
			}
		}
		return setCheckpoint(ctx, tx, imapID, cp)
	})
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

// PendingAction is after-processing owed to the server.
type PendingAction struct {
	UIDValidity uint32
	UID         uint32
	Action      string
	MoveTo      string
}

// PendingActions returns the after-processing owed for configuration imapID.
func (s *Store) PendingActions(ctx context.Context, imapID int64) ([]PendingAction, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT uid_validity, uid, action, move_to FROM pending_actions WHERE imap_id = $1 ORDER BY uid_validity, uid`, imapID)
	if err != nil {
		return nil, fmt.Errorf("listing pending after-processing: %w", err)
	}
	defer rows.Close()
	var out []PendingAction
	for rows.Next() {
		var p PendingAction
		var v, u int64
		if err := rows.Scan(&v, &u, &p.Action, &p.MoveTo); err != nil {
			return nil, fmt.Errorf("listing pending after-processing: %w", err)
		}
		p.UIDValidity, p.UID = uint32(v), uint32(u)
		out = append(out, p)
	}
	return out, rows.Err()
}

// DonePendingActions forgets after-processing that was done.
func (s *Store) DonePendingActions(ctx context.Context, imapID int64, uidValidity uint32, uids []uint32) error {
	return s.Write(ctx, func(tx *sql.Tx) error {
		for _, u := range uids {
			if _, err := tx.ExecContext(ctx, `DELETE FROM pending_actions WHERE imap_id = $1 AND uid_validity = $2 AND uid = $3`,
				imapID, int64(uidValidity), int64(u)); err != nil {
				return fmt.Errorf("forgetting after-processing of uid %d: %w", u, err)
			}
		}
		return nil
	})
}

// ClearPendingActions forgets all after-processing owed for imapID under
// another UIDVALIDITY than current: those UIDs no longer exist.
func (s *Store) ClearPendingActions(ctx context.Context, imapID int64, current uint32) error {
	return s.Write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM pending_actions WHERE imap_id = $1 AND uid_validity <> $2`, imapID, int64(current)); err != nil {
			return fmt.Errorf("forgetting stale after-processing: %w", err)
		}
		return nil
	})
}

// StoredMessage is a recorded message as the API shows it.
type StoredMessage struct {
	ID          int64
	IMAPID      int64
	IMAPName    string
	UIDValidity uint32
	UID         uint32
	MessageID   string
	Subject     string
	From, To    []mail.Address
	Cc, ReplyTo []mail.Address
	Date        *time.Time
	Size        int64
	ReceivedAt  time.Time
	ParseError  string
	TooLarge    bool
	Text, HTML  string
	Attachments []StoredAttachment
}

// StoredAttachment describes an attachment, without its content.
type StoredAttachment struct {
	N           int
	Filename    string
	ContentType string
	Size        int64
	SHA256      string
	Inline      bool
	ContentID   string
}

const messageColumns = `id, imap_id, imap_name, uid_validity, uid, message_id, subject, from_json, to_json, cc_json, reply_to_json,
	date, size, received_at, parse_error, too_large`

func scanMessage(row interface{ Scan(...any) error }) (StoredMessage, error) {
	var m StoredMessage
	var v, u int64
	var from, to, cc, rt string
	err := row.Scan(&m.ID, &m.IMAPID, &m.IMAPName, &v, &u, &m.MessageID, &m.Subject, &from, &to, &cc, &rt, &m.Date, &m.Size,
		&m.ReceivedAt, &m.ParseError, &m.TooLarge)
	if err != nil {
		return m, err
	}
	m.UIDValidity, m.UID = uint32(v), uint32(u)
	for _, p := range []struct {
		s string
		a *[]mail.Address
	}{{from, &m.From}, {to, &m.To}, {cc, &m.Cc}, {rt, &m.ReplyTo}} {
		if err := json.Unmarshal([]byte(p.s), p.a); err != nil {
			return m, fmt.Errorf("decoding addresses of message %d: %w", m.ID, err)
		}
	}
	return m, nil
}

// ofIMAP selects the messages of the configuration whose lower-cased name is
// parameter $n (all when it is ""): those recorded under that name, and,
// when it exists now, those of its id, since it may have been renamed.
func ofIMAP(n int) string {
	return strings.ReplaceAll(`($N = '' OR lower(imap_name) = $N OR imap_id = (SELECT id FROM imap_configs WHERE name_lower = $N))`,
		"$N", fmt.Sprintf("$%d", n))
}

// ReceivedTimes returns when the newest messages of configuration imapName
// (renames followed) were received, newest first, up to limit: what a
// chart of its traffic needs, without reading the messages.
func (s *Store) ReceivedTimes(ctx context.Context, imapName string, limit int) ([]time.Time, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT received_at FROM messages WHERE `+ofIMAP(1)+` ORDER BY id DESC LIMIT $2`,
		lower(imapName), limit)
	if err != nil {
		return nil, fmt.Errorf("listing message times: %w", err)
	}
	defer rows.Close()
	var out []time.Time
	for rows.Next() {
		var t time.Time
		if err := rows.Scan(&t); err != nil {
			return nil, fmt.Errorf("listing message times: %w", err)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// ListMessages returns up to limit messages, newest first, with an id below
// before (0: from the newest); imapName filters by configuration name when
// set (renames followed).
func (s *Store) ListMessages(ctx context.Context, imapName string, before int64, limit int) ([]StoredMessage, error) {
	q := `SELECT ` + messageColumns + ` FROM messages WHERE ($1 = 0 OR id < $1) AND ` + ofIMAP(2) + ` ORDER BY id DESC LIMIT $3`
	rows, err := s.r.QueryContext(ctx, q, before, lower(imapName), limit)
	if err != nil {
		return nil, fmt.Errorf("listing messages: %w", err)
	}
	defer rows.Close()
	var out []StoredMessage
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			return nil, fmt.Errorf("listing messages: %w", err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing messages: %w", err)
	}
	for i := range out {
		if out[i].Attachments, err = s.attachments(ctx, out[i].ID); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// GetMessage returns message id with its bodies and attachment list.
func (s *Store) GetMessage(ctx context.Context, id int64) (StoredMessage, error) {
	m, err := scanMessage(s.r.QueryRowContext(ctx, `SELECT `+messageColumns+` FROM messages WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return m, fmt.Errorf("message %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return m, fmt.Errorf("reading message %d: %w", id, err)
	}
	if err := s.r.QueryRowContext(ctx, `SELECT text_body, html_body FROM messages WHERE id = $1`, id).Scan(&m.Text, &m.HTML); err != nil {
		return m, fmt.Errorf("reading message %d: %w", id, err)
	}
	m.Attachments, err = s.attachments(ctx, id)
	return m, err
}

// GetMessages returns the messages ids (with bodies and attachment lists,
// as GetMessage) by id, in three queries however many there are; ids that
// are not stored are missing from the map. The run worker reads a claimed
// batch's messages so.
func (s *Store) GetMessages(ctx context.Context, ids []int64) (map[int64]StoredMessage, error) {
	out := make(map[int64]StoredMessage, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	in, args := idList(ids)
	rows, err := s.r.QueryContext(ctx, `SELECT `+messageColumns+`, text_body, html_body FROM messages WHERE id IN (`+in+`)`, args...)
	if err != nil {
		return nil, fmt.Errorf("reading %d messages: %w", len(ids), err)
	}
	defer rows.Close()
	for rows.Next() {
		var text, html string
		m, err := scanMessage(withExtra{rows, []any{&text, &html}})
		if err != nil {
			return nil, fmt.Errorf("reading %d messages: %w", len(ids), err)
		}
		m.Text, m.HTML, m.Attachments = text, html, []StoredAttachment{}
		out[m.ID] = m
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading %d messages: %w", len(ids), err)
	}
	rows.Close()
	arows, err := s.r.QueryContext(ctx, `SELECT message_id, n, filename, content_type, size, sha256, inline, content_id FROM attachments
		WHERE message_id IN (`+in+`) ORDER BY message_id, n`, args...)
	if err != nil {
		return nil, fmt.Errorf("listing attachments of %d messages: %w", len(ids), err)
	}
	defer arows.Close()
	for arows.Next() {
		var id int64
		var a StoredAttachment
		if err := arows.Scan(&id, &a.N, &a.Filename, &a.ContentType, &a.Size, &a.SHA256, &a.Inline, &a.ContentID); err != nil {
			return nil, fmt.Errorf("listing attachments of %d messages: %w", len(ids), err)
		}
		if m, ok := out[id]; ok {
			m.Attachments = append(m.Attachments, a)
			out[id] = m
		}
	}
	if err := arows.Err(); err != nil {
		return nil, fmt.Errorf("listing attachments of %d messages: %w", len(ids), err)
	}
	return out, nil
}

// idList returns "$1, $2, …" for ids and the arguments.
func idList(ids []int64) (string, []any) {
	var b strings.Builder
	args := make([]any, len(ids))
	for i, id := range ids {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "$%d", i+1)
		args[i] = id
	}
	return b.String(), args
}

// withExtra scans a row's further columns into extra after the ones its
// caller asks for.
type withExtra struct {
	row   interface{ Scan(...any) error }
	extra []any
}

func (w withExtra) Scan(dest ...any) error { return w.row.Scan(append(dest, w.extra...)...) }

func (s *Store) attachments(ctx context.Context, id int64) ([]StoredAttachment, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT n, filename, content_type, size, sha256, inline, content_id FROM attachments WHERE message_id = $1 ORDER BY n`, id)
	if err != nil {
		return nil, fmt.Errorf("listing attachments of message %d: %w", id, err)
	}
	defer rows.Close()
	out := []StoredAttachment{}
	for rows.Next() {
		var a StoredAttachment
		if err := rows.Scan(&a.N, &a.Filename, &a.ContentType, &a.Size, &a.SHA256, &a.Inline, &a.ContentID); err != nil {
			return nil, fmt.Errorf("listing attachments of message %d: %w", id, err)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// MessageRaw returns the stored raw bytes of message id (only the header for
// a message too large to keep).
func (s *Store) MessageRaw(ctx context.Context, id int64) ([]byte, error) {
	var raw []byte
	err := s.r.QueryRowContext(ctx, `SELECT raw FROM messages WHERE id = $1`, id).Scan(&raw)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("message %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("reading raw message %d: %w", id, err)
	}
	return raw, nil
}

// AttachmentContent returns attachment n of message id and its content.
func (s *Store) AttachmentContent(ctx context.Context, id int64, n int) (StoredAttachment, []byte, error) {
	var a StoredAttachment
	var content []byte
	err := s.r.QueryRowContext(ctx, `SELECT n, filename, content_type, size, sha256, inline, content_id, content FROM attachments
		WHERE message_id = $1 AND n = $2`, id, n).Scan(&a.N, &a.Filename, &a.ContentType, &a.Size, &a.SHA256, &a.Inline, &a.ContentID, &content)
	if errors.Is(err, sql.ErrNoRows) {
		return a, nil, fmt.Errorf("attachment %d of message %d: %w", n, id, ErrNotFound)
	}
	if err != nil {
		return a, nil, fmt.Errorf("reading attachment %d of message %d: %w", n, id, err)
	}
	return a, content, nil
}

// CountMessages returns how many messages configuration imapID has recorded.
func (s *Store) CountMessages(ctx context.Context, imapID int64) (int64, error) {
	var n int64
	if err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM messages WHERE imap_id = $1`, imapID).Scan(&n); err != nil {
		return 0, fmt.Errorf("counting messages: %w", err)
	}
	return n, nil
}
