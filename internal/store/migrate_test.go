package store_test

import (
	"context"
	"database/sql"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
	"mailtrigger/internal/testenv"
)

// sourceNeutral is the migration that made the store's mailbox model
// source-neutral (checkpoints, seen_ids, owed_actions).
const sourceNeutral = 10

// oldMailboxes is what migrations 00001–00009 left for an IMAP, a POP3 and
// a Graph mailbox: their checkpoints, unique ids and owed after-processing,
// as rows of mailbox_state, pop3_uidls and pending_actions.
type oldMailboxes struct {
	imap, pop3, graph, never int64            // configuration ids (never: not read yet)
	msg                      map[string]int64 // message ids by "mailbox/uidvalidity/uid"
}

const oldDeltaLink = "https://graph.example/v1.0/me/mailFolders/inbox/messages/delta?$deltatoken=abc"

// fillOld writes the old rows through db, a database at migration 9.
func fillOld(t *testing.T, ctx context.Context, s *store.Store) oldMailboxes {
	t.Helper()
	db := store.DB(s)
	o := oldMailboxes{msg: map[string]int64{}}
	for _, c := range []struct {
		id                  *int64
		name, server, typ   string
		after, moveTo, auth string
	}{
		{&o.imap, "imap", "imaps", imapconf.TypeGeneric, "move", "Done", "password"},
		{&o.pop3, "pop3", "pop3s", imapconf.TypeGeneric, "delete", "", "password"},
		{&o.graph, "graph", "imaps", imapconf.TypeMSGraph, "move", "Processed", "oauth2"},
		{&o.never, "never", "imaps", imapconf.TypeGeneric, "seen", "", "password"},
	} {
		cfg := sampleIMAP(c.name)
		cfg.ServerType, cfg.Type, cfg.AfterProcessing, cfg.MoveTo = c.server, c.typ, c.after, c.moveTo
		*c.id = createOldIMAP(t, ctx, db, cfg)
	}
	at := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := db.ExecContext(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	message := func(name string, imapID int64, v, uid uint32) {
		t.Helper()
		var id int64
		err := db.QueryRowContext(ctx, `INSERT INTO messages (imap_id, imap_name, uid_validity, uid, message_id, dedupe_key, subject,
			from_json, to_json, cc_json, reply_to_json, size, received_at, parse_error, too_large, text_body, html_body, raw)
			VALUES ($1, $2, $3, $4, $5, $5, $6, '[]', '[]', '[]', '[]', 10, $7, '', false, 'body', '', $8) RETURNING id`,
			imapID, name, int64(v), int64(uid), fmt.Sprintf("%s-%d-%d@x", name, v, uid), "Subject "+name, at, []byte("raw")).Scan(&id)
		if err != nil {
			t.Fatalf("recording %s %d/%d: %v", name, v, uid, err)
		}
		o.msg[fmt.Sprintf("%s/%d/%d", name, v, uid)] = id
	}
	state := func(imapID int64, v, last uint32, link string) {
		exec(`INSERT INTO mailbox_state (imap_id, uid_validity, last_uid, updated_at, delta_link) VALUES ($1, $2, $3, $4, $5)`,
			imapID, int64(v), int64(last), at, link)
	}
	uidl := func(imapID int64, uidl string, msg string) {
		var id any
		if msg != "" {
			id = o.msg[msg]
		}
		exec(`INSERT INTO pop3_uidls (imap_id, uidl, message_id) VALUES ($1, $2, $3)`, imapID, uidl, id)
	}
	pending := func(imapID int64, v, uid uint32, action, moveTo string) {
		exec(`INSERT INTO pending_actions (imap_id, uid_validity, uid, action, move_to, created_at) VALUES ($1, $2, $3, $4, $5, $6)`,
			imapID, int64(v), int64(uid), action, moveTo, at)
	}

	// IMAP: UIDVALIDITY 7 read up to UID 12, two moves owed, and one
	// "seen" owed from before the folder was recreated (UIDVALIDITY 5).
	message("imap", o.imap, 5, 3)
	for uid := uint32(10); uid <= 12; uid++ {
		message("imap", o.imap, 7, uid)
	}
	state(o.imap, 7, 12, "")
	pending(o.imap, 5, 3, "seen", "")
	pending(o.imap, 7, 11, "move", "Done")
	pending(o.imap, 7, 12, "move", "Done")

	// POP3: two messages recorded (UIDVALIDITY 0), one marked seen
	// without reading; nothing owed (the UIDLs are).
	message("pop3", o.pop3, 0, 1)
	message("pop3", o.pop3, 0, 2)
	state(o.pop3, 0, 0, "")
	uidl(o.pop3, "uidl-1", "pop3/0/1")
	uidl(o.pop3, "uidl-2", "pop3/0/2")
	uidl(o.pop3, "uidl-seen", "")

	// Graph: three messages, a delta round finished, one id remembered
	// unread, two moves owed by id.
	for uid := uint32(1); uid <= 3; uid++ {
		message("graph", o.graph, 0, uid)
		uidl(o.graph, fmt.Sprintf("AAMk-%d", uid), fmt.Sprintf("graph/0/%d", uid))
	}
	uidl(o.graph, "AAMk-read", "")
	state(o.graph, 0, 0, oldDeltaLink)
	pending(o.graph, 0, 2, "move", "Processed")
	pending(o.graph, 0, 3, "move", "Processed")
	return o
}

// createOldIMAP inserts configuration c as the store of migrations
// 00001–00011 did (without its secrets), and returns its id.
func createOldIMAP(t *testing.T, ctx context.Context, db *sql.DB, c imapconf.Config) int64 {
	t.Helper()
	var id int64
	at := time.Date(2026, 11, 30, 7, 0, 0, 0, time.UTC)
	err := db.QueryRowContext(ctx, `INSERT INTO imap_configs (name, name_lower, server_type, type, description, enabled,
		host, port, username, password_sealed, tenant_id, client_id, client_secret_sealed, folder, tls, ca_cert,
		after_processing, move_to, poll_interval, backlog, graph_url, authority_url, auth, token_url, scope, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, $10, $11, NULL, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $24)
		RETURNING id`,
		c.Name, strings.ToLower(c.Name), c.ServerType, c.Type, c.Description, c.Enabled, c.Host, c.Port, c.Username,
		c.TenantID, c.ClientID, c.Folder, c.TLS, c.CACert, c.AfterProcessing, c.MoveTo, c.PollInterval,
		c.Backlog, c.GraphURL, c.AuthorityURL, c.Auth, c.TokenURL, c.Scope, at).Scan(&id)
	if err != nil {
		t.Fatalf("creating %s: %v", c.Name, err)
	}
	return id
}

// rowsOf returns every row of query, its columns joined by "|", sorted.
func rowsOf(t *testing.T, ctx context.Context, db *sql.DB, query string) []string {
	t.Helper()
	rows, err := db.QueryContext(ctx, query)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out []string
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		var parts []string
		for _, v := range vals {
			if !v.Valid {
				parts = append(parts, "NULL")
			} else {
				parts = append(parts, v.String)
			}
		}
		out = append(out, strings.Join(parts, "|"))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func sameRows(t *testing.T, what string, got, want []string) {
	t.Helper()
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("%s:\n got %q\nwant %q", what, got, want)
	}
}

// TestMigrateSourceNeutral: a database made by migrations 00001–00009,
// with an IMAP, a POP3 and a Graph mailbox, is migrated to the
// source-neutral tables: every checkpoint, unique id and owed action
// arrives, the store answers as before, nothing recorded is recorded
// again, and migrating down gives the old rows back.
func TestMigrateSourceNeutral(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			ctx := context.Background()
			o := store.Options{DataDir: t.TempDir(), Box: storetest.Box(t)}
			if d == store.Postgres {
				o.DatabaseURL = testenv.PostgresURL(t)
			}
			open := func(at int64) *store.Store {
				t.Helper()
				var s *store.Store
				var err error
				if at > 0 {
					s, err = store.OpenAt(ctx, o, at)
				} else {
					s, err = store.Open(ctx, o)
				}
				if err != nil {
					t.Fatalf("opening at %d: %v", at, err)
				}
				return s
			}
			old := open(sourceNeutral - 1)
			m := fillOld(t, ctx, old)
			oldRows := func(s *store.Store) [3][]string {
				db := store.DB(s)
				return [3][]string{
					rowsOf(t, ctx, db, `SELECT imap_id, uid_validity, last_uid, delta_link FROM mailbox_state`),
					rowsOf(t, ctx, db, `SELECT imap_id, uidl, message_id FROM pop3_uidls`),
					rowsOf(t, ctx, db, `SELECT imap_id, uid_validity, uid, action, move_to FROM pending_actions`),
				}
			}
			before := oldRows(old)
			old.Close()

			s := open(0)
			if err := s.Ready(ctx); err != nil {
				t.Fatal(err)
			}
			db := store.DB(s)
			id := func(n int64) string { return fmt.Sprint(n) }
			msg := func(k string) string { return fmt.Sprint(m.msg[k]) }
			sameRows(t, "checkpoints", rowsOf(t, ctx, db, `SELECT imap_id, kind, value FROM checkpoints`), []string{
				id(m.imap) + "|imap|0000000007:0000000012",
				id(m.pop3) + "|pop3|",
				id(m.graph) + "|graph|" + oldDeltaLink,
			})
			sameRows(t, "seen ids", rowsOf(t, ctx, db, `SELECT imap_id, source_id, message_id FROM seen_ids`), []string{
				id(m.pop3) + "|uidl-1|" + msg("pop3/0/1"),
				id(m.pop3) + "|uidl-2|" + msg("pop3/0/2"),
				id(m.pop3) + "|uidl-seen|NULL",
				id(m.graph) + "|AAMk-1|" + msg("graph/0/1"),
				id(m.graph) + "|AAMk-2|" + msg("graph/0/2"),
				id(m.graph) + "|AAMk-3|" + msg("graph/0/3"),
				id(m.graph) + "|AAMk-read|NULL",
			})
			sameRows(t, "owed actions", rowsOf(t, ctx, db, `SELECT imap_id, message_id, kind, source_id, action, move_to FROM owed_actions`), []string{
				id(m.imap) + "|" + msg("imap/5/3") + "|imap|0000000005:0000000003|seen|",
				id(m.imap) + "|" + msg("imap/7/11") + "|imap|0000000007:0000000011|move|Done",
				id(m.imap) + "|" + msg("imap/7/12") + "|imap|0000000007:0000000012|move|Done",
				id(m.graph) + "|" + msg("graph/0/2") + "|graph|AAMk-2|move|Processed",
				id(m.graph) + "|" + msg("graph/0/3") + "|graph|AAMk-3|move|Processed",
			})
			for _, tb := range []string{"mailbox_state", "pop3_uidls", "pending_actions"} {
				var n int
				if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+tb).Scan(&n); err == nil {
					t.Errorf("table %s still exists", tb)
				}
			}

			checkAnswers(t, ctx, s, m)

			// Down to 00009 and up again: the old rows come back, then
			// the new ones.
			if err := store.MigrateDownTo(ctx, s, sourceNeutral-1); err != nil {
				t.Fatalf("migrating down: %v", err)
			}
			after := oldRows(s)
			s.Close()
			for i, what := range []string{"mailbox_state", "pop3_uidls", "pending_actions"} {
				sameRows(t, what+" after down", after[i], before[i])
			}
			s = open(0)
			defer s.Close()
			checkAnswers(t, ctx, s, m)
			checkNothingReadAgain(t, ctx, s, m)
		})
	}
}

// checkAnswers: the store answers about the migrated mailboxes as it did
// about the old rows.
func checkAnswers(t *testing.T, ctx context.Context, s *store.Store, m oldMailboxes) {
	t.Helper()
	for _, c := range []struct {
		id     int64
		cp     store.Checkpoint // with its kind, and the Graph link as Cursor
		ok     bool
		uidls  []string
		owed   []store.OwedAction // the Graph ones with their ids
		ofWhat string
	}{
		{m.imap, store.Checkpoint{Kind: store.KindIMAP, Epoch: 7, Last: 12}, true, nil,
			[]store.OwedAction{{5, 3, "", "seen", ""}, {7, 11, "", "move", "Done"}, {7, 12, "", "move", "Done"}}, "imap"},
		{m.pop3, store.Checkpoint{Kind: store.KindPOP3}, true, []string{"uidl-1", "uidl-2", "uidl-seen"}, nil, "pop3"},
		{m.graph, store.Checkpoint{Kind: store.KindGraph, Cursor: oldDeltaLink}, true, []string{"AAMk-1", "AAMk-2", "AAMk-3", "AAMk-read"},
			[]store.OwedAction{{0, 2, "AAMk-2", "move", "Processed"}, {0, 3, "AAMk-3", "move", "Processed"}}, "graph"},
		{m.never, store.Checkpoint{}, false, nil, nil, "never"},
	} {
		if cp, ok, err := s.GetCheckpoint(ctx, c.id); err != nil || cp != c.cp || ok != c.ok {
			t.Errorf("%s: checkpoint %+v %v %v, want %+v %v", c.ofWhat, cp, ok, err, c.cp, c.ok)
		}
		u, err := s.SeenIDs(ctx, c.id)
		if got := slices.Sorted(maps.Keys(u)); err != nil || !slices.Equal(got, c.uidls) {
			t.Errorf("%s: ids %q %v, want %q", c.ofWhat, got, err, c.uidls)
		}
		if p, err := s.Owed(ctx, c.id); err != nil || !slices.Equal(p, c.owed) {
			t.Errorf("%s: owed %+v %v, want %+v", c.ofWhat, p, err, c.owed)
		}
	}
}

// checkNothingReadAgain: what the old rows say was read is not recorded
// again, checkpoints go on from where they stood, and the owed actions
// are done as before.
func checkNothingReadAgain(t *testing.T, ctx context.Context, s *store.Store, m oldMailboxes) {
	t.Helper()
	count := func(id int64) int64 {
		n, err := s.CountMessages(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	record := func(b store.Batch, wantRec int) {
		t.Helper()
		n := count(b.IMAPID)
		rec, _, err := s.RecordBatch(ctx, b, nil)
		if err != nil || len(rec) != wantRec {
			t.Fatalf("%s: recorded %v, %v, want %d", b.IMAPName, rec, err, wantRec)
		}
		if got := count(b.IMAPID); got != n+int64(wantRec) {
			t.Errorf("%s: %d messages, want %d", b.IMAPName, got, n+int64(wantRec))
		}
	}
	withID := func(uidl string, n int) store.Incoming {
		in := incoming(0, msg(n, uidl+"@again"))
		in.ID = uidl
		return in
	}

	// IMAP: UID 12 again records nothing; an older checkpoint does not
	// move it back; a new UID moves it on and is owed.
	record(store.Batch{IMAPID: m.imap, IMAPName: "imap", Epoch: 7, Checkpoint: &store.Checkpoint{Kind: store.KindIMAP, Epoch: 7, Last: 12},
		Messages: []store.Incoming{incoming(12, msg(12, "imap-again@x"))}, Action: "move", MoveTo: "Done"}, 0)
	if err := s.SetCheckpoint(ctx, m.imap, store.Checkpoint{Kind: store.KindIMAP, Epoch: 7, Last: 5}, nil); err != nil {
		t.Fatal(err)
	}
	record(store.Batch{IMAPID: m.imap, IMAPName: "imap", Epoch: 7, Checkpoint: &store.Checkpoint{Kind: store.KindIMAP, Epoch: 7, Last: 13},
		Messages: []store.Incoming{incoming(13, msg(13, "imap-13@x"))}, Action: "move", MoveTo: "Done"}, 1)
	if cp, _, _ := s.GetCheckpoint(ctx, m.imap); cp != (store.Checkpoint{Kind: store.KindIMAP, Epoch: 7, Last: 13}) {
		t.Errorf("imap checkpoint %+v, want 7/13", cp)
	}
	if err := s.ClearOwed(ctx, m.imap, 7); err != nil {
		t.Fatal(err)
	}
	if err := s.Paid(ctx, m.imap, 7, []uint32{11, 12}); err != nil {
		t.Fatal(err)
	}
	if p, err := s.Owed(ctx, m.imap); err != nil || !slices.Equal(p, []store.OwedAction{{7, 13, "", "move", "Done"}}) {
		t.Errorf("imap pending %+v %v, want only 7/13", p, err)
	}

	// POP3: the UIDLs read (and the one marked seen) are not recorded
	// again; a new one is, under the next UID.
	rec, _, err := s.RecordBatch(ctx, store.Batch{IMAPID: m.pop3, IMAPName: "pop3", Checkpoint: &store.Checkpoint{Kind: store.KindPOP3},
		Messages: []store.Incoming{withID("uidl-1", 1), withID("uidl-seen", 2), withID("uidl-3", 3)}}, nil)
	if err != nil || len(rec) != 1 || rec[0].UID != 3 {
		t.Errorf("pop3: recorded %+v, %v, want uid 3 only", rec, err)
	}
	if cp, ok, _ := s.GetCheckpoint(ctx, m.pop3); cp != (store.Checkpoint{Kind: store.KindPOP3}) || !ok {
		t.Errorf("pop3 checkpoint %+v %v", cp, ok)
	}

	// Graph: the ids read are not recorded again; a batch in the middle of
	// a round keeps the link; the owed moves are done by id.
	rec, _, err = s.RecordBatch(ctx, store.Batch{IMAPID: m.graph, IMAPName: "graph", ActByID: true, Action: "move", MoveTo: "Processed",
		Checkpoint: &store.Checkpoint{Kind: store.KindGraph, KeepCursor: true},
		Messages:   []store.Incoming{withID("AAMk-1", 1), withID("AAMk-read", 2), withID("AAMk-4", 4)}}, nil)
	if err != nil || len(rec) != 1 || rec[0].UID != 4 {
		t.Errorf("graph: recorded %+v, %v, want uid 4 only", rec, err)
	}
	if cp, _, _ := s.GetCheckpoint(ctx, m.graph); cp.Cursor != oldDeltaLink {
		t.Errorf("graph link %q, want the old one kept", cp.Cursor)
	}
	if err := s.Paid(ctx, m.graph, 0, []uint32{2}); err != nil {
		t.Fatal(err)
	}
	if err := s.ForgetSeenIDs(ctx, m.graph, []string{"AAMk-3"}); err != nil {
		t.Fatal(err)
	}
	want := []store.OwedAction{{0, 4, "AAMk-4", "move", "Processed"}}
	if p, err := s.Owed(ctx, m.graph); err != nil || !slices.Equal(p, want) {
		t.Errorf("graph pending %+v %v, want %+v", p, err, want)
	}
}

// TestCheckpointKinds: one checkpoint row per mailbox, in the terms of the
// source that wrote it last. POP3's leaves a Graph link alone, as the old
// mailbox_state row kept its delta_link; an IMAP checkpoint never moves
// back under the same UIDVALIDITY but starts over under another; a Graph
// batch in the middle of a round (KeepCursor) keeps the stored link.
func TestCheckpointKinds(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		check := func(id int64, cp store.Checkpoint) {
			t.Helper()
			if got, ok, err := s.GetCheckpoint(ctx, id); err != nil || !ok || got != cp {
				t.Errorf("checkpoint of %d: %+v %v %v, want %+v", id, got, ok, err, cp)
			}
		}
		set := func(id int64, cp store.Checkpoint) {
			t.Helper()
			if err := s.SetCheckpoint(ctx, id, cp, nil); err != nil {
				t.Fatal(err)
			}
		}
		imap := func(epoch, last uint32) store.Checkpoint {
			return store.Checkpoint{Kind: store.KindIMAP, Epoch: epoch, Last: last}
		}
		graph := func(link string) store.Checkpoint { return store.Checkpoint{Kind: store.KindGraph, Cursor: link} }
		set(1, imap(4294967295, 100))
		set(1, imap(4294967295, 99))
		check(1, imap(4294967295, 100))
		set(1, imap(3, 2))
		check(1, imap(3, 2))
		set(1, imap(3, 4294967295))
		check(1, imap(3, 4294967295))

		set(2, graph("https://g/delta?1"))
		set(2, store.Checkpoint{Kind: store.KindPOP3})
		check(2, graph("https://g/delta?1"))
		midRound := store.Batch{IMAPID: 2, IMAPName: "g", ActByID: true, Checkpoint: &store.Checkpoint{Kind: store.KindGraph, KeepCursor: true}}
		if _, _, err := s.RecordBatch(ctx, midRound, nil); err != nil {
			t.Fatal(err)
		}
		check(2, graph("https://g/delta?1"))
		set(2, imap(9, 1))
		check(2, imap(9, 1))
		// A Graph batch after an IMAP checkpoint: a Graph mailbox that has
		// read, with no link yet.
		if _, _, err := s.RecordBatch(ctx, midRound, nil); err != nil {
			t.Fatal(err)
		}
		check(2, graph(""))
	})
}
