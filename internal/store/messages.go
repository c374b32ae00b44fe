package store

// Reading recorded messages and their attachments.

import (
	"bytes"
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
	var layout string
	var raw []byte
	if err := s.r.QueryRowContext(ctx, `SELECT text_body, html_body, layout, `+rawIfLaidOut+` FROM messages WHERE id = $1`, id).
		Scan(&m.Text, &m.HTML, &layout, &raw); err != nil {
		return m, fmt.Errorf("reading message %d: %w", id, err)
	}
	if layout != "" {
		if m.Text, m.HTML, err = s.decodeBodies(ctx, id, layout, raw); err != nil {
			return m, err
		}
	}
	m.Attachments, err = s.attachments(ctx, id)
	return m, err
}

// GetMessages returns the messages ids (with bodies and attachment lists,
// as GetMessage) by id, in two queries however many there are, sent
// together on PostgreSQL; ids that are not stored are missing from the map.
// The run worker reads a claimed batch's messages so. The bodies of a
// message stored once come from the ones ingest kept (bodyCache) when they
// are there, else they are decoded from its raw bytes, which are read only
// for those.
func (s *Store) GetMessages(ctx context.Context, ids []int64) (map[int64]StoredMessage, error) {
	out := make(map[int64]StoredMessage, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	now := time.Now()
	kept := map[int64]cachedBodies{}
	var keptIDs []int64
	for _, id := range ids {
		if _, ok := kept[id]; ok {
			continue
		}
		if e, ok := s.bodies.get(id, now); ok {
			kept[id] = e
			keptIDs = append(keptIDs, id)
		}
	}
	// The layout and the raw bytes of a message whose bodies are kept are
	// not read (on SQLite, reading past the raw column walks its overflow
	// pages): "+" says it still has its raw bytes, "" that it was pruned.
	// On PostgreSQL the ids go as arrays: one text for each statement
	// whatever their number, prepared once; with a list of parameters,
	// each claim's count was a statement of its own, prepared again (a
	// round trip more).
	var in, attIn, isKept string
	var msgArgs, attArgs []any
	if s.dialect == Postgres {
		in, attIn, isKept = "id = ANY($1)", "message_id = ANY($1)", "id = ANY($2)"
		msgArgs, attArgs = []any{ids, keptIDs}, []any{ids}
	} else {
		var list string
		list, attArgs = idList(ids)
		in, attIn, msgArgs = "id IN ("+list+")", "message_id IN ("+list+")", attArgs
		if len(keptIDs) > 0 {
			ps := make([]string, len(keptIDs))
			for i, id := range keptIDs {
				msgArgs = append(msgArgs, id)
				ps[i] = fmt.Sprintf("$%d", len(msgArgs))
			}
			isKept = "id IN (" + strings.Join(ps, ", ") + ")"
		}
	}
	layout, raw := "layout", rawIfLaidOut
	if isKept != "" {
		layout = `CASE WHEN ` + isKept + ` THEN CASE WHEN length(raw) > 0 THEN '+' ELSE '' END ELSE layout END`
		raw = `CASE WHEN ` + isKept + ` THEN NULL WHEN layout = '' THEN NULL ELSE raw END`
	}
	type laidOut struct {
		layout string
		raw    []byte
	}
	layouts := map[int64]laidOut{}
	var others []int64
	attachments := map[int64][]StoredAttachment{}
	stmts := []heldStmt{{
		sql:  `SELECT ` + messageColumns + `, text_body, html_body, ` + layout + `, ` + raw + ` FROM messages WHERE ` + in,
		args: msgArgs,
		what: fmt.Sprintf("reading %d messages", len(ids)),
		scan: func(row interface{ Scan(...any) error }) error {
			var text, html, layout string
			var raw []byte
			m, err := scanMessage(withExtra{row, []any{&text, &html, &layout, &raw}})
			if err != nil {
				return err
			}
			m.Text, m.HTML = text, html
			if k, ok := kept[m.ID]; ok {
				switch {
				case layout == "+" && k.who == m.of():
					m.Text, m.HTML = k.text, k.html
				case layout == "+":
					// Another message under a rolled-back id: read
					// below as any other.
					others = append(others, m.ID)
				}
			} else if layout != "" {
				layouts[m.ID] = laidOut{layout, raw}
			}
			out[m.ID] = m
			return nil
		},
	}, {
		sql: `SELECT message_id, n, filename, content_type, size, sha256, inline, content_id FROM attachments
			WHERE ` + attIn + ` ORDER BY message_id, n`,
		args: attArgs,
		what: fmt.Sprintf("listing attachments of %d messages", len(ids)),
		scan: func(row interface{ Scan(...any) error }) error {
			var id int64
			var a StoredAttachment
			if err := row.Scan(&id, &a.N, &a.Filename, &a.ContentType, &a.Size, &a.SHA256, &a.Inline, &a.ContentID); err != nil {
				return err
			}
			attachments[id] = append(attachments[id], a)
			return nil
		},
	}}
	if s.dialect == Postgres {
		if err := s.pipelinedRead(ctx, stmts); err != nil {
			return nil, err
		}
	} else {
		for _, st := range stmts {
			if err := st.runOn(ctx, s.r); err != nil {
				return nil, err
			}
		}
	}
	var err error
	for id, l := range layouts {
		m := out[id]
		if m.Text, m.HTML, err = s.decodeBodies(ctx, id, l.layout, l.raw); err != nil {
			return nil, err
		}
		out[id] = m
	}
	for _, id := range others {
		m, err := s.GetMessage(ctx, id)
		if err != nil {
			return nil, err
		}
		out[id] = m
	}
	for id, m := range out {
		m.Attachments = attachments[id]
		if m.Attachments == nil {
			m.Attachments = []StoredAttachment{}
		}
		out[id] = m
	}
	return out, nil
}

// MessageSubjects returns the decoded subjects of messages ids, in one
// query and without their bodies (the runs list shows them); ids that are
// not stored are missing from the map.
func (s *Store) MessageSubjects(ctx context.Context, ids []int64) (map[int64]string, error) {
	out := make(map[int64]string, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	in, args := idList(ids)
	rows, err := s.r.QueryContext(ctx, `SELECT id, subject FROM messages WHERE id IN (`+in+`)`, args...)
	if err != nil {
		return nil, fmt.Errorf("reading the subjects of %d messages: %w", len(ids), err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var subject string
		if err := rows.Scan(&id, &subject); err != nil {
			return nil, fmt.Errorf("reading the subjects of %d messages: %w", len(ids), err)
		}
		out[id] = subject
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading the subjects of %d messages: %w", len(ids), err)
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
// a message too large to keep), read whole into memory; OpenRaw reads them
// as they are needed.
func (s *Store) MessageRaw(ctx context.Context, id int64) ([]byte, error) {
	r, err := s.OpenRaw(ctx, id)
	if err != nil {
		return nil, err
	}
	if !r.chunked {
		return r.inline, nil
	}
	raw := make([]byte, r.Size())
	if _, err := io.ReadFull(r.Reader(), raw); err != nil {
		return nil, fmt.Errorf("reading raw message %d: %w", id, err)
	}
	return raw, nil
}

// AttachmentContent returns attachment n of message id and its content.
func (s *Store) AttachmentContent(ctx context.Context, id int64, n int) (StoredAttachment, []byte, error) {
	a, r, err := s.OpenAttachment(ctx, id, n)
	if err != nil {
		return a, nil, err
	}
	content, err := io.ReadAll(r)
	if err != nil {
		return a, nil, fmt.Errorf("reading attachment %d of message %d: %w", n, id, err)
	}
	return a, content, nil
}

// OpenAttachment returns attachment n of message id and a reader of its
// content: the stored copy, or, for a message stored once, its part of the
// raw message decoded as it is read.
func (s *Store) OpenAttachment(ctx context.Context, id int64, n int) (StoredAttachment, io.Reader, error) {
	var a StoredAttachment
	var content []byte
	var layout string
	err := s.r.QueryRowContext(ctx, `SELECT a.n, a.filename, a.content_type, a.size, a.sha256, a.inline, a.content_id, a.content, m.layout
		FROM attachments a JOIN messages m ON m.id = a.message_id
		WHERE a.message_id = $1 AND a.n = $2`, id, n).Scan(&a.N, &a.Filename, &a.ContentType, &a.Size, &a.SHA256, &a.Inline, &a.ContentID,
		&content, &layout)
	if errors.Is(err, sql.ErrNoRows) {
		return a, nil, fmt.Errorf("attachment %d of message %d: %w", n, id, ErrNotFound)
	}
	if err != nil {
		return a, nil, fmt.Errorf("reading attachment %d of message %d: %w", n, id, err)
	}
	if layout == "" {
		return a, bytes.NewReader(content), nil
	}
	l, err := parseLayout(id, layout)
	if err != nil {
		return a, nil, err
	}
	raw, err := s.OpenRaw(ctx, id)
	if err != nil {
		return a, nil, err
	}
	r, err := l.Attachment(raw, n)
	if err != nil {
		return a, nil, fmt.Errorf("decoding attachment %d of message %d: %w", n, id, err)
	}
	return a, r, nil
}

// parseLayout reads the layout stored for message id.
func parseLayout(id int64, layout string) (*mail.Layout, error) {
	var l mail.Layout
	if err := json.Unmarshal([]byte(layout), &l); err != nil {
		return nil, fmt.Errorf("reading the layout of message %d: %w", id, err)
	}
	return &l, nil
}

// rawIfLaidOut selects a message's raw column when it is stored once (its
// bodies are decoded from it), NULL otherwise.
const rawIfLaidOut = `CASE WHEN layout = '' THEN NULL ELSE raw END`

// decodeBodies decodes the text and HTML bodies of message id, stored once
// with layout, from its raw bytes (raw, read with the row, or its chunks
// when that is empty): what was stored before as text_body and html_body
// (made storable as those were, see text).
func (s *Store) decodeBodies(ctx context.Context, id int64, layout string, raw []byte) (string, string, error) {
	l, err := parseLayout(id, layout)
	if err != nil {
		return "", "", err
	}
	var ra io.ReaderAt = bytes.NewReader(raw)
	if len(raw) == 0 {
		r, err := s.OpenRaw(ctx, id)
		if err != nil {
			return "", "", err
		}
		ra = r
	}
	t, h, err := l.Bodies(ra)
	if err != nil {
		return "", "", fmt.Errorf("decoding the bodies of message %d: %w", id, err)
	}
	return text(t), text(h), nil
}

// CountMessages returns how many messages configuration imapID has recorded.
func (s *Store) CountMessages(ctx context.Context, imapID int64) (int64, error) {
	var n int64
	if err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM messages WHERE imap_id = $1`, imapID).Scan(&n); err != nil {
		return 0, fmt.Errorf("counting messages: %w", err)
	}
	return n, nil
}
