package store_test

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"mailtrigger/internal/mail"
	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
	"mailtrigger/internal/testenv"
	"mailtrigger/internal/testwait"
)

// oldMessages are messages of the shapes ingest meets: plain, multipart
// with attachments, quoted-printable Latin-1 alternatives, broken ones.
func oldMessages(n int) [][]byte {
	var out [][]byte
	for i := range n {
		var m string
		switch i % 5 {
		case 0:
			m = msg(i, fmt.Sprintf("m%d@x", i))
		case 1:
			m = "From: a@example.com\r\nSubject: Invoice " + fmt.Sprint(i) + "\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" +
				"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlease pay.\r\n" +
				"--b\r\nContent-Type: application/pdf; name=i.pdf\r\nContent-Disposition: attachment; filename=i.pdf\r\n" +
				"Content-Transfer-Encoding: base64\r\n\r\n" + base64.StdEncoding.EncodeToString([]byte(strings.Repeat("%PDF", i+1))) + "\r\n" +
				"--b\r\nContent-Type: text/csv; name=l.csv\r\nContent-Disposition: attachment; filename=l.csv\r\n\r\na,b\r\n1,2\r\n--b--\r\n"
		case 2:
			m = "From: =?iso-8859-1?Q?J=FCrgen?= <j@example.org>\r\nSubject: Gr=?iso-8859-1?Q?=FC=DFe?=\r\n" +
				"Content-Type: multipart/alternative; boundary=a\r\n\r\n--a\r\nContent-Type: text/plain; charset=iso-8859-1\r\n" +
				"Content-Transfer-Encoding: quoted-printable\r\n\r\nGr=FC=DFe, eine lange Zeile, die umbroch=\r\nen wird\r\n" +
				"--a\r\nContent-Type: text/html; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n<p>Gr=FC=DFe</p>\r\n--a--\r\n"
		case 3:
			m = "From: b@example.org\r\nSubject: broken\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\n" +
				"see\r\n--x\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nJVB~ERi0xLjQK=\r\n"
		default:
			m = "Subject: nul\r\nContent-Type: text/plain\r\n\r\nbody with a \x00 NUL\r\n"
		}
		out = append(out, []byte(m))
	}
	return out
}

// recordOld records raws as the code before each message was stored once
// did (the decoded copies, no layout), and has them converted as
// migration 00011 would (message_conversion up to the newest).
func recordOld(t *testing.T, s *store.Store, raws [][]byte) []int64 {
	t.Helper()
	// The pass the store started when it opened found nothing to do, but
	// on a busy machine it may not have looked yet: it would convert what
	// is recorded below while the test drives the batches.
	store.StopConversion(s)
	ctx := context.Background()
	b := store.Batch{IMAPID: 1, IMAPName: "inbox", Epoch: 1}
	for i, raw := range raws {
		m := mail.Parse(raw)
		m.Layout = nil
		b.Messages = append(b.Messages, store.Incoming{UID: uint32(i + 1), Raw: raw, Msg: m, Seen: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)})
	}
	rec, _, err := s.RecordBatch(ctx, b, nil)
	if err != nil || len(rec) != len(raws) {
		t.Fatalf("recording: %d, %v", len(rec), err)
	}
	if _, err := store.DB(s).ExecContext(ctx, `UPDATE message_conversion SET done_through = 0, upto = (SELECT MAX(id) FROM messages)`); err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for _, r := range rec {
		ids = append(ids, r.ID)
	}
	return ids
}

// views is everything the store shows of the messages ids: the message with
// its bodies, its raw bytes, every attachment's content.
func views(t *testing.T, s *store.Store, ids []int64) []string {
	t.Helper()
	ctx := context.Background()
	var out []string
	for _, id := range ids {
		m, err := s.GetMessage(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		all, err := s.GetMessages(ctx, []int64{id})
		if err != nil {
			t.Fatal(err)
		}
		raw, err := s.MessageRaw(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		v := []any{m, all[id], raw}
		for _, a := range m.Attachments {
			_, c, err := s.AttachmentContent(ctx, id, a.N)
			if err != nil {
				t.Fatal(err)
			}
			v = append(v, c)
		}
		data, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(data))
	}
	return out
}

// wantConverted counts the messages of raws that parse to a layout: those
// the conversion stores once.
func wantConverted(t *testing.T, raws [][]byte) int {
	t.Helper()
	var n int
	for _, raw := range raws {
		if mail.Parse(raw).Layout != nil {
			n++
		}
	}
	if n == 0 {
		t.Fatal("no message of the test parses to a layout: nothing to convert")
	}
	return n
}

func progress(t *testing.T, db *sql.DB) (through, upto, converted int64) {
	t.Helper()
	err := db.QueryRow(`SELECT done_through, upto, (SELECT COUNT(*) FROM messages WHERE layout <> '') FROM message_conversion`).
		Scan(&through, &upto, &converted)
	if err != nil {
		t.Fatal(err)
	}
	return through, upto, converted
}

func sameViews(t *testing.T, what string, got, want []string) {
	t.Helper()
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("%s: message %d changed:\n  was %.400s\n  now %.400s", what, i, want[i], got[i])
		}
	}
}

// TestConvertInterrupted: a batch that fails before its commit leaves
// everything as it was; the pass goes on from there and converts the rest,
// and no message's view changes on the way.
func TestConvertInterrupted(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		raws := oldMessages(23)
		ids := recordOld(t, s, raws)
		before := views(t, s, ids)
		db := store.DB(s)
		for range 2 {
			if _, done, err := store.ConvertBatch(s, 5, nil); err != nil || done {
				t.Fatalf("batch: done %v, %v", done, err)
			}
		}
		through, _, converted := progress(t, db)
		crash := errors.New("crash")
		if _, _, err := store.ConvertBatch(s, 5, func() error { return crash }); !errors.Is(err, crash) {
			t.Fatalf("got %v, want the crash", err)
		}
		if th, _, c := progress(t, db); th != through || c != converted {
			t.Errorf("the failed batch moved the progress from %d to %d, converted %d, was %d", through, th, c, converted)
		}
		sameViews(t, "after the failed batch", views(t, s, ids), before)
		n, err := s.ConvertMessages(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		through, upto, converted := progress(t, db)
		if through != upto || converted != int64(wantConverted(t, raws)) || int(converted) > n+10 {
			t.Errorf("done through %d of %d, %d converted (%d by the last pass), want %d", through, upto, converted, n, wantConverted(t, raws))
		}
		sameViews(t, "converted", views(t, s, ids), before)
		// Converted messages keep no copies.
		var copies int
		if err := db.QueryRow(`SELECT COUNT(*) FROM messages WHERE layout <> '' AND (text_body <> '' OR html_body <> '')`).Scan(&copies); err != nil || copies != 0 {
			t.Errorf("%d converted messages keep their copies, %v", copies, err)
		}
	})
}

const convertChildEnv = "MAILTRIGGER_TEST_CONVERT_CHILD"

// TestConvertKilledChild is the child process of TestConvertKilled: it
// opens the store given in the environment, whose background pass converts
// in small, slow batches, and waits to be killed.
func TestConvertKilledChild(t *testing.T) {
	dsn := os.Getenv(convertChildEnv)
	if dsn == "" {
		return // run as a test of its own: nothing to do
	}
	store.SetConversion(3, 250*time.Millisecond)
	o := store.Options{Box: storetest.Box(t)}
	if dir, ok := strings.CutPrefix(dsn, "sqlite:"); ok {
		o.DataDir = dir
	} else {
		o.DatabaseURL = strings.TrimPrefix(dsn, "postgres:")
	}
	s, err := store.Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	time.Sleep(time.Minute)
}

// TestConvertKilled kills (SIGKILL) a process in the middle of the
// conversion, most likely inside a batch's transaction: nothing is lost, and
// the next start finishes the conversion.
func TestConvertKilled(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			ctx := context.Background()
			o := store.Options{DataDir: t.TempDir(), Box: storetest.Box(t)}
			dsn := "sqlite:" + o.DataDir
			if d == store.Postgres {
				o.DatabaseURL = testenv.PostgresURL(t)
				dsn = "postgres:" + o.DatabaseURL
			}
			s, err := store.Open(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			raws := oldMessages(60)
			ids := recordOld(t, s, raws)
			before := views(t, s, ids)
			s.Close()

			var db *sql.DB
			if d == store.Postgres {
				db, err = sql.Open("pgx", o.DatabaseURL)
			} else {
				db, err = sql.Open("sqlite", "file:"+s.SQLitePath()+"?_pragma=busy_timeout(10000)")
			}
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			cmd := exec.Command(os.Args[0], "-test.run=^TestConvertKilledChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), convertChildEnv+"="+dsn)
			out := &testenv.Buffer{}
			cmd.Stdout, cmd.Stderr = out, out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			// Killed once two batches are committed: the third is then
			// in its transaction (the child pauses there, 250 ms a batch:
			// 20 batches leave the test 5 s to see the first two).
			testwait.Until(t, 30*time.Second, func() error {
				if through, _, _ := progress(t, db); through < 6 {
					return fmt.Errorf("done through %d; child output: %s", through, out.String())
				}
				return nil
			})
			time.Sleep(30 * time.Millisecond)
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			cmd.Wait()
			through, upto, _ := progress(t, db)
			if through >= upto {
				t.Fatalf("the child finished (%d of %d) before it was killed", through, upto)
			}
			t.Logf("killed at %d of %d", through, upto)

			s, err = store.Open(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			sameViews(t, "after the kill", views(t, s, ids), before)
			if _, err := s.ConvertMessages(ctx); err != nil {
				t.Fatal(err)
			}
			through, upto, converted := progress(t, db)
			if through != upto || converted != int64(wantConverted(t, raws)) {
				t.Errorf("done through %d of %d, %d converted, want %d", through, upto, converted, wantConverted(t, raws))
			}
			sameViews(t, "converted", views(t, s, ids), before)
		})
	}
}

// TestStoreOnceDown: migrating below 00011 is refused while a message is
// stored once (its bodies would be lost), and done once none is.
func TestStoreOnceDown(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		raw := oldMessages(2)[1]
		m := mail.Parse(raw)
		if m.Layout == nil {
			t.Fatal("the multipart message parses to no layout")
		}
		if _, _, err := s.RecordBatch(ctx, store.Batch{IMAPID: 1, IMAPName: "inbox", Epoch: 1,
			Messages: []store.Incoming{{UID: 1, Raw: raw, Msg: m, Seen: time.Now().Add(-time.Hour)}}}, nil); err != nil {
			t.Fatal(err)
		}
		if err := store.MigrateDownTo(ctx, s, 10); err == nil {
			t.Fatal("migrated down with a message stored once")
		}
		if _, err := s.Prune(ctx, time.Now()); err != nil {
			t.Fatal(err)
		}
		if err := store.MigrateDownTo(ctx, s, 10); err != nil {
			t.Fatalf("migrating down with nothing stored once: %v", err)
		}
	})
}
