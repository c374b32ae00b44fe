package store

// Recording a batch: the ingest transaction.

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"slices"
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
	// Await, when set, is called once the batch's own rows are written,
	// before the statements on rows that every batch of the mailbox
	// writes (the crash-loop note, the checkpoint) and before the commit;
	// an error rolls the transaction back and is returned. The ingest
	// pipeline waits there for the batch before it: two batches of one
	// mailbox are then written at once and still commit in order, and the
	// later one never holds a row the earlier one waits for.
	Await func() error
	// Reserved, when set, is called once the ids of the batch's messages
	// are taken (by the lookup, first in the transaction): a batch that
	// begins after that gets higher ids, so that ids follow the batches'
	// order while they are written at once.
	Reserved func()
}

// Recorded is a message the batch recorded.
type Recorded struct {
	ID  int64
	UID uint32
}

// RecordHook runs inside the ingest transaction for every message recorded:
// the seam where flows create their runs, so that a message and its runs
// commit together or not at all. The hooks run in the batch's order, once
// every message of the batch is inserted.
type RecordHook func(ctx context.Context, tx *Tx, b *Batch, id int64, in Incoming) error

// RecordBatch records the messages of b and stores its checkpoint, in one
// transaction. A message already recorded (same configuration, epoch and
// UID, or a seen ID), or recorded under another epoch with the same dedupe
// key, is not recorded again; nor is a message whose UID or ID came earlier
// in the batch. On PostgreSQL the batch costs a constant number of round
// trips, whatever its size: the lookups, the messages, their attachments,
// seen ids, owed after-processing, and the hook's matches and runs are each
// one statement (per chunk of rows, see insertRows).
//
// On PostgreSQL the messages are written with COPY, which cannot skip a row
// that another transaction inserted since the lookup (the unique key's
// violation fails the statement): the batch is then recorded once more, in
// a new transaction whose lookup sees that row. Only two writers of one
// mailbox at once (a lease changing hands) can race so.
func (s *Store) RecordBatch(ctx context.Context, b Batch, hook RecordHook) (rec []Recorded, skipped int, err error) {
	for attempt := 0; ; attempt++ {
		rec, err = s.recordBatchOnce(ctx, b, hook)
		if err == nil || attempt > 0 || s.dialect != Postgres || !isUnique(err) {
			break
		}
		s.log.Debug("batch recorded meanwhile by another transaction, recording it again", "imap", b.IMAPName, "error", err)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("recording %d message(s) of %s: %w", len(b.Messages), b.IMAPName, err)
	}
	var n int64
	for _, in := range b.Messages {
		n += int64(len(in.Raw))
		if in.Big != nil {
			n += in.Big.Size()
		}
	}
	s.ckpt.wrote(n)
	s.stats.recorded(len(rec))
	return rec, len(b.Messages) - len(rec), nil
}

// recordBatchOnce is one attempt of RecordBatch, in one transaction.
func (s *Store) recordBatchOnce(ctx context.Context, b Batch, hook RecordHook) (rec []Recorded, err error) {
	var kept []int64
	err = s.writeConn(ctx, func(c *sql.Conn, tx *sql.Tx) error {
		t := &Tx{s: s, tx: tx, conn: c}
		var err error
		if rec, err = t.recordBatch(ctx, &b, hook); err != nil {
			return err
		}
		// Kept before the commit: the run worker may claim the runs
		// as soon as it lands (see bodyCache).
		at := time.Now()
		for _, k := range t.keep {
			s.bodies.put(k.id, k.who, k.text, k.html, at)
			kept = append(kept, k.id)
		}
		return nil
	})
	if err != nil {
		s.bodies.drop(kept)
		return nil, err
	}
	return rec, nil
}

func (t *Tx) recordBatch(ctx context.Context, b *Batch, hook RecordHook) ([]Recorded, error) {
	keys := make([]string, len(b.Messages))
	for i, in := range b.Messages {
		keys[i] = text(in.Msg.DedupeKey())
	}
	if t.holds() {
		// Sent with the lookup: the fence, the flows the hook reads and
		// ids for the runs it creates.
		if f, ok := fenceFrom(ctx); ok {
			t.hold(t.s.fenceStmt(f))
		}
		if b.Await != nil {
			// It waits for the batch before it to commit, idle: a few
			// times as long as a transaction may be idle otherwise.
			t.hold(heldStmt{sql: setIdleSQL, args: []any{idleMillis(awaitIdle * t.s.idleInTx)},
				what: "allowing the wait for the batch before"})
		}
		if hook != nil {
			t.hold(t.flowsStmt(b.IMAPID))
			// At most one run per message and enabled flow: a fresh
			// message has no run yet, and runs are unique by flow
			// and message (seq 0). Ids not used are gaps.
			t.holdRunIDs(`SELECT nextval(pg_get_serial_sequence('runs', 'id')) FROM generate_series(1,
				LEAST($1::int * (SELECT count(*) FROM flows WHERE imap_id = $2 AND enabled)::int, $3::int))`,
				len(b.Messages), b.IMAPID, maxRunIDs)
		}
	}
	k, err := t.lookUp(ctx, b, keys)
	if err != nil {
		return nil, err
	}
	if b.Reserved != nil {
		b.Reserved()
	}
	p := planBatch(b, keys, k)

	f, _ := fenceFrom(ctx) // the replica recording, and its lease token
	rows := make([][]any, len(p.rows))
	for i := range p.rows {
		r := &p.rows[i]
		r.sf = storedForm(&r.in)
		rows[i] = fieldValues(messageFields(b, &r.in, r.epoch, r.key, r.sf, f))
	}
	ids := make(map[[2]int64]int64, len(rows))
	if t.conn != nil && len(rows) > 0 {
		// COPY, with the ids the lookup reserved: the raw messages go
		// to the server as they are encoded, in 64 KB pieces, where an
		// INSERT's parameters are encoded into an array and then into
		// one message, each grown by doubling (docs/benchmarks.md,
		// session 10).
		if len(k.ids) < len(rows) {
			return nil, fmt.Errorf("recording %d message(s): %d id(s) reserved", len(rows), len(k.ids))
		}
		for i := range p.rows {
			r := &p.rows[i]
			rows[i] = append([]any{k.ids[i]}, rows[i]...)
			ids[[2]int64{int64(r.epoch), int64(r.in.UID)}] = k.ids[i]
		}
		if err := t.copyRows(ctx, messageCopy, rows); err != nil {
			return nil, fmt.Errorf("recording %d message(s): %w", len(rows), err)
		}
	} else if err := t.insertRows(ctx, messageInsert, rows, func(rs *sql.Rows) error {
		var id, epoch, uid int64
		if err := rs.Scan(&id, &epoch, &uid); err != nil {
			return err
		}
		ids[[2]int64{epoch, uid}] = id
		return nil
	}); err != nil {
		return nil, fmt.Errorf("recording %d message(s): %w", len(rows), err)
	}
	var rec []Recorded
	var attachments [][]any
	for i := range p.rows {
		r := &p.rows[i]
		// No id: recorded meanwhile (ON CONFLICT DO NOTHING), skipped.
		r.id = ids[[2]int64{int64(r.epoch), int64(r.in.UID)}]
		if r.id == 0 {
			continue
		}
		rec = append(rec, Recorded{ID: r.id, UID: r.in.UID})
		for n, a := range r.in.Msg.Attachments {
			attachments = append(attachments, []any{r.id, int64(n), text(a.Filename), text(a.ContentType), a.Size, a.SHA256,
				a.Inline, text(a.ContentID), r.sf.content(a.Content)})
		}
	}
	if err := t.insertRows(ctx, attachmentInsert, attachments, nil); err != nil {
		return nil, fmt.Errorf("recording %d attachment(s): %w", len(attachments), err)
	}
	for _, r := range p.rows {
		if r.id != 0 && r.in.Big != nil {
			if err := t.send(ctx); err != nil {
				return nil, err
			}
			if err := writeChunks(ctx, t.tx, r.id, r.in.Big); err != nil {
				return nil, fmt.Errorf("recording uid %d: %w", r.in.UID, err)
			}
		}
	}
	var seen [][]any
	for _, sr := range p.seen {
		id := sr.id
		if sr.row >= 0 {
			if id = p.rows[sr.row].id; id == 0 {
				continue // its message was not recorded after all: read it again
			}
		}
		seen = append(seen, []any{b.IMAPID, sr.sourceID, id})
	}
	if err := t.insertRows(ctx, seenInsert, seen, nil); err != nil {
		return nil, fmt.Errorf("remembering %d message id(s): %w", len(seen), err)
	}
	if hook != nil {
		t.fresh, t.left = make(map[int64]bool, len(rec)), len(rec)
		for _, r := range rec {
			t.fresh[r.ID] = true
		}
		for i := range p.rows {
			r := &p.rows[i]
			if r.id == 0 {
				continue
			}
			if err := hook(ctx, t, b, r.id, r.in); err != nil {
				return nil, fmt.Errorf("message uid %d: %w", r.in.UID, err)
			}
			t.left--
		}
		if err := t.flush(ctx); err != nil {
			return nil, err
		}
		t.fresh = nil
		// The bodies Parse decoded, which the run worker would decode
		// again from the raw message (see bodyCache).
		for i := range p.rows {
			r := &p.rows[i]
			if r.id != 0 && t.ranFor[r.id] && r.sf.layout != "" && r.in.Big == nil {
				m := r.in.Msg
				who := bodiesOf{imapID: b.IMAPID, epoch: r.epoch, uid: r.in.UID, size: m.Size, subject: text(m.Subject)}
				t.keep = append(t.keep, keptBodies{id: r.id, who: who, text: text(m.Text), html: text(m.HTML)})
			}
		}
	}
	if b.Action != "" && b.Action != "none" {
		var owed [][]any
		at := now()
		for _, r := range p.rows {
			if r.id != 0 && (r.in.ID == "" || b.ActByID) {
				owed = append(owed, owedRow(b, r.id, r.in, at))
			}
		}
		if err := t.insertRows(ctx, owedInsert, owed, nil); err != nil {
			return nil, fmt.Errorf("recording the after-processing of %d message(s): %w", len(owed), err)
		}
	}
	if b.Await != nil {
		if err := b.Await(); err != nil {
			return nil, err
		}
	}
	if b.Attempt != "" {
		if err := clearAttempt(ctx, t.writer("clearing the ingest attempt"), b.IMAPID, b.Attempt); err != nil {
			return nil, err
		}
	}
	if b.Checkpoint != nil {
		if err := setCheckpoint(ctx, t.writer("moving the checkpoint"), b.IMAPID, *b.Checkpoint); err != nil {
			return nil, err
		}
	}
	// What the batch held since the COPY: one round trip before the
	// commit.
	if err := t.send(ctx); err != nil {
		return nil, err
	}
	return rec, nil
}

// awaitIdle is how many times the usual idle time (Options.IdleInTransaction)
// an ingest transaction may wait for the batch before it to commit.
const awaitIdle = 6

// maxRunIDs bounds the run ids a batch reserves with its lookup (a
// mailbox with many flows); a batch that creates more reserves more as it
// goes (reserveRunID).
const maxRunIDs = 1000

// field is a column and its value for one row.
type field struct {
	col
	v any
}

// messageFields is the row of table messages that records in, read in
// batch b, under epoch with dedupe key key, by the replica and lease of f:
// the one list of the columns an ingest writes and of their values.
func messageFields(b *Batch, in *Incoming, epoch uint32, key string, sf stored, f Fence) []field {
	m := in.Msg
	var date *time.Time
	if !m.Date.IsZero() {
		d := m.Date.UTC()
		date = &d
	}
	received := in.Seen
	if received.IsZero() {
		received = now()
	}
	return []field{
		{col{"imap_id", "bigint"}, b.IMAPID},
		{col{"imap_name", "text"}, b.IMAPName},
		{col{"uid_validity", "bigint"}, int64(epoch)},
		{col{"uid", "bigint"}, int64(in.UID)},
		{col{"message_id", "text"}, text(m.MessageID)},
		{col{"dedupe_key", "text"}, key},
		{col{"subject", "text"}, text(m.Subject)},
		{col{"from_json", "text"}, addrJSON(m.From)},
		{col{"to_json", "text"}, addrJSON(m.To)},
		{col{"cc_json", "text"}, addrJSON(m.Cc)},
		{col{"reply_to_json", "text"}, addrJSON(m.ReplyTo)},
		{col{"date", "timestamptz"}, date},
		{col{"size", "bigint"}, m.Size},
		{col{"received_at", "timestamptz"}, received.UTC()},
		{col{"parse_error", "text"}, text(m.ParseError())},
		{col{"too_large", "boolean"}, m.TooLarge},
		{col{"text_body", "text"}, sf.text},
		{col{"html_body", "text"}, sf.html},
		{col{"raw", "bytea"}, nonNil(sf.raw)},
		{col{"replica", "text"}, f.Owner},
		{col{"lease_token", "bigint"}, f.Token},
		{col{"layout", "text"}, sf.layout},
	}
}

func fieldValues(fs []field) []any {
	vs := make([]any, len(fs))
	for i, f := range fs {
		vs[i] = f.v
	}
	return vs
}

// messageInsert inserts the rows of messageFields, returning the id, epoch
// and UID of those inserted.
var messageInsert = func() insert {
	fs := messageFields(&Batch{}, &Incoming{Msg: &mail.Message{}}, 0, "", stored{}, Fence{})
	cols := make([]col, len(fs))
	for i, f := range fs {
		cols[i] = f.col
	}
	return insert{table: "messages", cols: cols,
		suffix: "ON CONFLICT (imap_id, uid_validity, uid) DO NOTHING RETURNING id, uid_validity, uid"}
}()

// messageCopy is the columns of a COPY into messages: the id, then those of
// messageFields.
var messageCopy = func() copyInto {
	c := copyInto{table: "messages", cols: []string{"id"}}
	for _, col := range messageInsert.cols {
		c.cols = append(c.cols, col.name)
	}
	return c
}()

var attachmentInsert = insert{table: "attachments", cols: []col{{"message_id", "bigint"}, {"n", "bigint"}, {"filename", "text"},
	{"content_type", "text"}, {"size", "bigint"}, {"sha256", "text"}, {"inline", "boolean"}, {"content_id", "text"}, {"content", "bytea"}}}

// known is what the database holds already of a batch's messages.
type known struct {
	seen   map[string]bool          // their ids seen
	dupes  map[string][]recordedKey // their dedupe keys recorded, and where
	exists map[uint32]bool          // their UIDs recorded under the batch's epoch
	max0   int64                    // the highest UID recorded under epoch 0
	// ids are message ids reserved from the sequence, ascending, one
	// per message of the batch (PostgreSQL, see copyRows).
	ids []int64
}

// recordedKey is a message recorded with a dedupe key: its epoch and id.
type recordedKey struct {
	epoch uint32
	id    int64
}

// lookUp reads, in one statement, what the database knows of b's messages
// (keys: their dedupe keys).
func (t *Tx) lookUp(ctx context.Context, b *Batch, keys []string) (known, error) {
	k := known{seen: map[string]bool{}, dupes: map[string][]recordedKey{}, exists: map[uint32]bool{}}
	ids, uids := []string{}, []int64{}
	for _, in := range b.Messages {
		if in.ID != "" {
			ids = append(ids, in.ID)
		} else {
			uids = append(uids, int64(in.UID))
		}
	}
	q := lookupSQL(t.s.dialect)
	args := []any{b.IMAPID, t.list(ids), t.list(keys), int64(b.Epoch), t.list(uids)}
	scan := func(rs interface{ Scan(...any) error }) error {
		var kind int
		var s string
		var e, n int64
		if err := rs.Scan(&kind, &s, &e, &n); err != nil {
			return err
		}
		switch kind {
		case 1:
			k.seen[s] = true
		case 2:
			k.dupes[s] = append(k.dupes[s], recordedKey{epoch: uint32(e), id: n})
		case 3:
			k.exists[uint32(n)] = true
		case 4:
			k.max0 = n
		case 5:
			k.ids = append(k.ids, n)
		}
		return nil
	}
	var err error
	switch {
	case t.holds():
		// With what the batch holds (the fence, the flows): one round
		// trip. The send's error says which of them failed.
		t.hold(heldStmt{sql: q, args: append(args, len(b.Messages)), scan: scan,
			what: fmt.Sprintf("looking for %d message(s) recorded earlier", len(b.Messages))})
		if err := t.send(ctx); err != nil {
			return k, err
		}
	case t.s.dialect == Postgres:
		rows, qerr := t.tx.QueryContext(ctx, q, append(args, 0)...)
		err = scanRows(rows, qerr, func(rs *sql.Rows) error { return scan(rs) })
	default:
		st, serr := t.stmt(ctx, q)
		var rows *sql.Rows
		if serr == nil {
			rows, serr = st.QueryContext(ctx, args...)
		}
		err = scanRows(rows, serr, func(rs *sql.Rows) error { return scan(rs) })
	}
	if err != nil {
		return k, fmt.Errorf("looking for %d message(s) recorded earlier: %w", len(b.Messages), err)
	}
	slices.Sort(k.ids)
	return k, nil
}

// lookupSQL is lookUp's statement: rows (1, id) for the ids seen, (2, key,
// epoch, id) for the dedupe keys recorded, (3, "", epoch, uid) for the UIDs
// recorded under the batch's epoch, and (4, "", 0, the highest UID under
// epoch 0); on PostgreSQL also (5, "", 0, id) for $6 message ids reserved
// from the sequence, so that COPY can write them.
func lookupSQL(d Dialect) string {
	reserve := ""
	if d == Postgres {
		reserve = `
		UNION ALL SELECT 5, '', 0, nextval(pg_get_serial_sequence('messages', 'id')) FROM generate_series(1, $6::int)`
	}
	in := func(n int, typ string) string {
		if d == Postgres {
			return fmt.Sprintf("= ANY($%d::%s[])", n, typ)
		}
		return fmt.Sprintf("IN (SELECT value FROM json_each($%d))", n)
	}
	return `SELECT 1, source_id, 0, 0 FROM seen_ids WHERE imap_id = $1 AND source_id ` + in(2, "text") + `
		UNION ALL ` + recordedKeys(d) + `
		UNION ALL ` + recordedUIDs(d) + `
		UNION ALL SELECT 4, '', 0, COALESCE(MAX(uid), 0) FROM messages WHERE imap_id = $1 AND uid_validity = 0` + reserve
}

// recordedKeys is lookupSQL's part (2): for each dedupe key of $3, the
// first message recorded with it under configuration $1 in each epoch. On
// PostgreSQL each key is looked up in the index on its own, for the reason
// recordedUIDs gives: with "dedupe_key = ANY($3)" the planner read every
// message of the configuration and filtered them (8,700 rows for a batch
// near the end of the bench's backlog, 3–5 ms a batch and growing with
// the mailbox).
func recordedKeys(d Dialect) string {
	if d == Postgres {
		return `SELECT 2, k.key, m.uid_validity, m.id FROM (SELECT DISTINCT unnest($3::text[]) AS key) AS k
			CROSS JOIN LATERAL (SELECT uid_validity, MIN(id) AS id FROM messages
				WHERE imap_id = $1 AND dedupe_key = k.key GROUP BY uid_validity) AS m`
	}
	return `SELECT 2, dedupe_key, uid_validity, MIN(id) FROM messages WHERE imap_id = $1 AND dedupe_key IN (SELECT value FROM json_each($3))
			GROUP BY dedupe_key, uid_validity`
}

// recordedUIDs is lookupSQL's part (3): the UIDs of $5 recorded under
// configuration $1 and epoch $4. On PostgreSQL each UID is looked up in the
// unique index on its own (a LATERAL subquery with LIMIT runs once per
// UID): with "uid = ANY($5)" beside the other two columns, or a join or
// EXISTS against unnest($5), the planner, whose statistics of a table
// filling up during a backlog are stale (it expects one row), read every
// message of the epoch and filtered them or hashed them: a scan per batch
// that grew with the mailbox, 14 ms a batch on average over the bench's
// 10,000-message backlog. SQLite's planner searches the index for each
// value of the IN list already.
func recordedUIDs(d Dialect) string {
	if d == Postgres {
		return `SELECT 3, '', $4::bigint, u.uid FROM unnest($5::bigint[]) AS u(uid)
			CROSS JOIN LATERAL (SELECT 1 FROM messages m WHERE m.imap_id = $1 AND m.uid_validity = $4 AND m.uid = u.uid LIMIT 1) AS found`
	}
	return `SELECT 3, '', uid_validity, uid FROM messages WHERE imap_id = $1 AND uid_validity = $4 AND uid IN (SELECT value FROM json_each($5))`
}

// list is a list of values as lookupSQL takes it: an array on PostgreSQL,
// a JSON array on SQLite.
func (t *Tx) list(v any) any {
	if t.s.dialect == Postgres {
		return v
	}
	data, _ := json.Marshal(v)
	return string(data)
}

// plan is what recording a batch writes.
type plan struct {
	rows []planned
	seen []seenRef
}

// planned is a message to insert.
type planned struct {
	in    Incoming // its UID numbered when it has an ID
	epoch uint32
	key   string
	sf    stored // how it is stored
	id    int64  // once inserted
}

// seenRef is a seen id to remember, by the message planned as row, or, when
// row is -1, by the message recorded as id.
type seenRef struct {
	sourceID string
	row      int
	id       int64
}

// planBatch decides, in the batch's order, which messages of b to insert
// and which ids to remember, from what the database knows (k) and what the
// messages before in the batch do: as if each message were looked up and
// inserted in turn (keys: their dedupe keys).
func planBatch(b *Batch, keys []string, k known) plan {
	var p plan
	type at struct {
		epoch uint32
		row   int
	}
	planKeys := map[string][]at{}
	planUIDs := map[[2]uint32]bool{}
	for i, in := range b.Messages {
		epoch, key := b.Epoch, keys[i]
		if in.ID != "" {
			epoch = 0
			if k.seen[in.ID] {
				continue // read before
			}
			in.UID = uint32(k.max0 + 1)
		}
		// Recorded under another epoch: before the folder was recreated
		// (or, for POP3, while the configuration read the mailbox over
		// IMAP).
		dup := seenRef{sourceID: in.ID, row: -1}
		found := false
		for _, d := range k.dupes[key] {
			if d.epoch != epoch && (!found || d.id < dup.id) {
				dup.id, found = d.id, true
			}
		}
		for _, a := range planKeys[key] {
			if !found && a.epoch != epoch {
				dup.row, found = a.row, true
			}
		}
		if found {
			if in.ID != "" {
				p.seen = append(p.seen, dup)
				k.seen[in.ID] = true
			}
			continue
		}
		if (epoch == b.Epoch && in.ID == "" && k.exists[in.UID]) || planUIDs[[2]uint32{epoch, in.UID}] {
			continue // recorded already
		}
		row := len(p.rows)
		p.rows = append(p.rows, planned{in: in, epoch: epoch, key: key})
		planUIDs[[2]uint32{epoch, in.UID}] = true
		planKeys[key] = append(planKeys[key], at{epoch, row})
		if epoch == 0 && int64(in.UID) > k.max0 {
			k.max0 = int64(in.UID)
		}
		if in.ID != "" {
			p.seen = append(p.seen, seenRef{sourceID: in.ID, row: row})
			k.seen[in.ID] = true
		}
	}
	return p
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
