package ingest_test

import (
	"context"
	"testing"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/ingest"
	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
	"mailtrigger/internal/testenv"
)

// session is one start of the service on a mailbox, as the watchers drive
// the guard: Begin before the first message of each batch, Record after;
// a death is a session that stops between the two.
type session struct {
	t   *testing.T
	in  *ingest.Ingester
	cfg imapconf.Config
	g   *ingest.Guard
}

// start starts a new process (a new Ingester) on st.
func start(t *testing.T, st *store.Store, cfg imapconf.Config) *session {
	t.Helper()
	in := ingest.New(ingest.Deps{Store: st})
	g, err := in.Guard(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &session{t: t, in: in, cfg: cfg, g: g}
}

// begin begins the batch of uid (of up to 25 messages) and returns
// whether to skip it.
func (s *session) begin(uid uint32) bool {
	s.t.Helper()
	return s.beginN(uid, 25)
}

// beginN is begin for a batch of at most n messages.
func (s *session) beginN(uid uint32, n int) bool {
	s.t.Helper()
	skip, err := s.g.Begin(context.Background(), ingest.KeyUID(7, uid), s.g.BatchMessages(n))
	if err != nil {
		s.t.Fatal(err)
	}
	return skip
}

// record records uid (raw when skip) under the note of the batch of first.
func (s *session) record(first, uid uint32, skip bool) {
	s.t.Helper()
	raw := []byte("Subject: m\r\n\r\nbody\r\n")
	in := ingest.Prepare(uid, raw, int64(len(raw)), false)
	if skip {
		in = ingest.Skipped(uid, raw, int64(len(raw)), false)
	}
	if _, err := s.in.Record(context.Background(), s.cfg, store.Batch{Epoch: 7,
		Checkpoint: &store.Checkpoint{Kind: store.KindIMAP, Epoch: 7, Last: uid},
		Messages:   []store.Incoming{in}, Attempt: ingest.KeyUID(7, first)}); err != nil {
		s.t.Fatal(err)
	}
}

func TestMain(m *testing.M) { testenv.Main(m) }

func TestGuard(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		parseErrorOf := func(cfg imapconf.Config, uid uint32) string {
			t.Helper()
			msgs, err := st.ListMessages(ctx, cfg.Name, 0, 100)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range msgs {
				if m.UID == uid {
					return m.ParseError
				}
			}
			t.Fatalf("uid %d not recorded", uid)
			return ""
		}

		t.Run("poison alone", func(t *testing.T) {
			cfg := imapconf.Config{ID: 5, Name: "five"}
			s := start(t, st, cfg)
			if s.g.Careful() || s.beginN(1, 1) {
				t.Fatal("a fresh mailbox: got careful or skip, want neither")
			}
			// death 1, alone
			s = start(t, st, cfg)
			if !s.g.Careful() || s.g.BatchMessages(25) != 1 {
				t.Fatalf("after a death: got careful %v, batch %d; want true, 1", s.g.Careful(), s.g.BatchMessages(25))
			}
			if s.begin(1) {
				t.Fatal("after one death: got skip, want a second try")
			}
			// death 2, alone
			s = start(t, st, cfg)
			if !s.begin(1) {
				t.Fatal("after two deaths alone: got no skip, want it recorded raw")
			}
			s.record(1, 1, true)
			if got := parseErrorOf(cfg, 1); got != ingest.ParseErrorCrashed {
				t.Errorf("parse error: got %q, want %q", got, ingest.ParseErrorCrashed)
			}
		})

		t.Run("poison first in a batch of several", func(t *testing.T) {
			cfg := imapconf.Config{ID: 1, Name: "one"}
			s := start(t, st, cfg)
			if s.g.Careful() || s.begin(1) {
				t.Fatal("a fresh mailbox: got careful or skip, want neither")
			}
			// death 1, in the batch: careful, nobody blamed yet
			s = start(t, st, cfg)
			if !s.g.Careful() || s.g.BatchMessages(25) != 1 {
				t.Fatalf("after a death: got careful %v, batch %d; want true, 1", s.g.Careful(), s.g.BatchMessages(25))
			}
			if s.begin(1) {
				t.Fatal("after one death: got skip, want a second try")
			}
			// death 2, alone
			s = start(t, st, cfg)
			if s.begin(1) {
				t.Fatal("after a death in a batch and one alone: got skip, want a third try")
			}
			// death 3, alone
			s = start(t, st, cfg)
			if !s.begin(1) {
				t.Fatal("after two deaths: got no skip, want it recorded raw")
			}
			s.record(1, 1, true)
			if got := parseErrorOf(cfg, 1); got != ingest.ParseErrorCrashed {
				t.Errorf("parse error: got %q, want %q", got, ingest.ParseErrorCrashed)
			}
			s = start(t, st, cfg)
			if s.g.Careful() {
				t.Error("after the skip was recorded: got careful, want not")
			}
		})

		t.Run("poison in the middle of its batch", func(t *testing.T) {
			cfg := imapconf.Config{ID: 2, Name: "two"}
			s := start(t, st, cfg)
			s.begin(1) // the batch 1..25 dies on 3
			s = start(t, st, cfg)
			for uid := uint32(1); uid <= 2; uid++ {
				if s.begin(uid) {
					t.Fatalf("uid %d: got skip, want parsed", uid)
				}
				s.record(uid, uid, false)
			}
			if s.begin(3) {
				t.Fatal("uid 3 after its batch died: got skip, want a try alone")
			}
			// death 2, on 3 alone
			s = start(t, st, cfg)
			if s.begin(3) {
				t.Fatal("uid 3 after a death in its batch and one alone: got skip, want another try")
			}
			// death 3, on 3 alone
			s = start(t, st, cfg)
			if !s.begin(3) {
				t.Fatal("uid 3 after two deaths alone: got no skip, want it recorded raw")
			}
			s.record(3, 3, true)
			if s.g.Careful() || s.begin(4) {
				t.Fatal("uid 4: got careful or skip, want batches again")
			}
			if got := parseErrorOf(cfg, 2); got != "" {
				t.Errorf("uid 2: got parse error %q, want none", got)
			}
		})

		t.Run("two unrelated deaths condemn no message", func(t *testing.T) {
			// The kill-storm case: the service is killed in a batch, then
			// again while it reads that batch one message at a time.
			cfg := imapconf.Config{ID: 6, Name: "six"}
			s := start(t, st, cfg)
			s.begin(1) // the batch 1..25 dies
			s = start(t, st, cfg)
			for uid := uint32(1); uid <= 2; uid++ {
				s.begin(uid)
				s.record(uid, uid, false)
			}
			s.begin(3) // killed while 3 is read alone
			s = start(t, st, cfg)
			if s.begin(3) {
				t.Fatal("uid 3 after a death in its batch and one alone: got skip, want it parsed")
			}
			s.record(3, 3, false)
			if got := parseErrorOf(cfg, 3); got != "" {
				t.Errorf("uid 3: got parse error %q, want none", got)
			}
		})

		t.Run("a death not caused by a message", func(t *testing.T) {
			cfg := imapconf.Config{ID: 3, Name: "three"}
			s := start(t, st, cfg)
			if _, err := s.g.Begin(ctx, ingest.KeyUID(7, 1), 3); err != nil {
				t.Fatal(err)
			}
			s = start(t, st, cfg) // killed during a batch of 3
			for uid := uint32(1); uid <= 3; uid++ {
				if !s.g.Careful() || s.begin(uid) {
					t.Fatalf("uid %d: got careful %v or skip, want careful without skip", uid, s.g.Careful())
				}
				s.record(uid, uid, false)
			}
			if s.g.Careful() || s.begin(4) {
				t.Fatal("past the dead batch: got careful or skip, want batches again")
			}
		})

		t.Run("a failed transaction is not a death", func(t *testing.T) {
			cfg := imapconf.Config{ID: 6, Name: "six"}
			s := start(t, st, cfg)
			for range 3 { // the session fails after each Begin and starts again in the same process
				g, err := s.in.Guard(ctx, cfg)
				if err != nil {
					t.Fatal(err)
				}
				s.g = g
				if s.g.Careful() || s.begin(1) {
					t.Fatal("after a failed transaction of this process: got careful or skip, want neither")
				}
			}
		})

		t.Run("a note for a message gone from the server", func(t *testing.T) {
			cfg := imapconf.Config{ID: 4, Name: "four"}
			if err := st.SetAttempt(ctx, cfg.ID, store.IngestAttempt{Key: ingest.KeyUID(7, 99), Attempts: 2, Span: 1}); err != nil {
				t.Fatal(err)
			}
			s := start(t, st, cfg)
			if s.begin(100) {
				t.Fatal("another message than the noted one: got skip, want parsed")
			}
		})

		t.Run("a batch recorded while the next is noted", func(t *testing.T) {
			cfg := imapconf.Config{ID: 5, Name: "five"}
			s := start(t, st, cfg)
			s.begin(1)
			s.begin(26) // pipelined: the next batch is noted before the first commits
			s.record(1, 1, false)
			a, ok, err := st.GetAttempt(ctx, cfg.ID)
			if err != nil || !ok || a.Key != ingest.KeyUID(7, 26) {
				t.Fatalf("got %+v %v %v, want the note of the next batch kept", a, ok, err)
			}
		})
	})
}
