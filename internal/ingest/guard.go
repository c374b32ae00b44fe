package ingest

import (
	"context"
	"os"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/mail"
	"mailtrigger/internal/store"
)

// ParseErrorCrashed is the parse error of a message the crash-loop breaker
// recorded raw, without parsing it.
const ParseErrorCrashed = "skipped after repeated crashes"

// Guard is the crash-loop breaker of one mailbox session (issue 12). A
// message that kills the service while it is parsed or recorded (out of
// memory, a bug) would otherwise be read again after every restart, and the
// mailbox would never get past it.
//
// Before the first message of a round of reading is parsed, Begin notes
// durably that message and how many messages the pipeline may hold
// unrecorded (store.SetAttempt: one small write per round, not per batch,
// so that reading and parsing never wait for the database's writer); the
// transaction that records the round's last batch removes the note. A note
// found when a session starts means the service died with those messages
// unrecorded. The guard then goes careful: one message per batch, each
// noted on its own before it is parsed, until it is past the messages the
// dead note spanned. Each careful note counts the deaths of the message
// while it was recorded alone (a batch of one, careful or not). A message
// whose count has reached 2 when it comes up again is recorded raw with
// ParseErrorCrashed, unparsed, and the checkpoint moves on. So a poison
// message that arrives alone (new mail, one at a time) costs two
// restarts, and one among several three: a death with several messages
// unrecorded only makes the guard careful, since it cannot tell which
// message caused it; an innocent message among them is parsed again on
// its own and recorded as usual. Callers pass the real bound as span (the
// messages left to read, when fewer), so that a round of one message
// counts. Each
// note names the process that wrote it: a note this process left (a
// transaction that failed, a lost connection, after which the session
// starts again) is not a death and is simply replaced.
type Guard struct {
	in      *Ingester
	imapID  int64
	left    store.IngestAttempt // what a death left; Key "" if nothing
	careful bool
	seen    int // messages begun while careful
}

// Guard reads what a death may have left for configuration c and returns
// the breaker for a session on it.
func (in *Ingester) Guard(ctx context.Context, c imapconf.Config) (*Guard, error) {
	a, ok, err := in.store.GetAttempt(ctx, c.ID)
	if err != nil {
		return nil, err
	}
	if ok && a.Owner == in.instance {
		ok, a = false, store.IngestAttempt{}
	}
	if ok {
		in.log.Warn("the service died while recording mail of this mailbox; reading one message at a time for a while",
			"imap", c.Name, "message", a.Key, "deaths", a.Attempts, "batch", a.Span)
	}
	return &Guard{in: in, imapID: c.ID, left: a, careful: ok}, nil
}

// BatchMessages returns the messages a batch may hold: n, or 1 while the
// guard is careful.
func (g *Guard) BatchMessages(n int) int {
	if g.careful {
		return 1
	}
	return n
}

// Careful reports whether the next batch is one message, begun only after
// the batch before it was recorded.
func (g *Guard) Careful() bool { return g.careful }

// Begin notes that the message key, the first of a batch of at most span
// messages, is about to be parsed and recorded; the batch's Record must get
// key so that the note goes with it. skip says to record the message raw
// without parsing it (Skipped).
func (g *Guard) Begin(ctx context.Context, key string, span int) (skip bool, err error) {
	if !g.careful {
		return false, g.in.store.SetAttempt(ctx, g.imapID, store.IngestAttempt{Key: key, Attempts: 1, Span: span, Owner: g.in.instance})
	}
	// Only a death while the message was recorded alone counts against it.
	// A batch of several that died tells nothing about which of its
	// messages was the cause: blaming each of them would record innocent
	// messages raw (their flows never run) when the service is killed
	// twice in a row for reasons of its own (an OOM kill of another
	// process's making, a restart loop), as the kill-storm tests do.
	deaths := 0
	if key == g.left.Key && g.left.Span <= 1 {
		deaths = g.left.Attempts
	}
	g.seen++
	if g.seen >= max(g.left.Span, 1) {
		g.careful = false
	}
	if deaths >= 2 {
		g.in.log.Error("message recorded raw without parsing: the service died twice while recording it",
			"imap_id", g.imapID, "message", key, "deaths", deaths)
		// The note stays as it is; the record removes it.
		return true, g.in.store.SetAttempt(ctx, g.imapID, store.IngestAttempt{Key: key, Attempts: deaths, Span: 1, Owner: g.in.instance})
	}
	return false, g.in.store.SetAttempt(ctx, g.imapID, store.IngestAttempt{Key: key, Attempts: deaths + 1, Span: 1, Owner: g.in.instance})
}

// End removes the note Begin wrote under key, when no batch's record
// removed it (a round whose last batch was handed over before it ended).
func (g *Guard) End(ctx context.Context, key string) error {
	return g.in.store.ClearAttempt(ctx, g.imapID, key)
}

// Skipped is a message recorded raw, unparsed, by the crash-loop breaker.
func Skipped(uid uint32, raw []byte, size int64, tooLarge bool) store.Incoming {
	m := &mail.Message{Size: size, TooLarge: tooLarge, From: []mail.Address{}, To: []mail.Address{}, Cc: []mail.Address{},
		ReplyTo: []mail.Address{}, Attachments: []mail.Attachment{}, ParseErrors: []string{ParseErrorCrashed}}
	return store.Incoming{UID: uid, Raw: raw, Msg: m, Seen: timeNow()}
}

// Prepare is the package's Prepare with the test hook of the crash-loop
// breaker's end-to-end test: when Deps.TestCrashOnSubject is set, the
// process exits, like a service killed for its memory, once a message with
// that subject is parsed.
func (in *Ingester) Prepare(uid uint32, raw []byte, size int64, tooLarge bool) store.Incoming {
	return in.crashOn(Prepare(uid, raw, size, tooLarge))
}

// PrepareFile is the package's PrepareFile with the test hook of Prepare.
func (in *Ingester) PrepareFile(uid uint32, f store.RawFile) store.Incoming {
	return in.crashOn(PrepareFile(uid, f))
}

// crashOn exits the process when p is the message the test hook names.
func (in *Ingester) crashOn(p store.Incoming) store.Incoming {
	if in.crashOnSubject != "" && p.Msg.Subject == in.crashOnSubject {
		in.log.Error("test hook: exiting on a parsed message", "subject", p.Msg.Subject)
		os.Exit(86)
	}
	return p
}

// KeyUID, KeyUIDL and KeyGraph are the keys Begin takes for an IMAP message,
// a POP3 message and a Microsoft Graph message.
func KeyUID(uidValidity, uid uint32) string {
	return "uid:" + itoa(uint64(uidValidity)) + ":" + itoa(uint64(uid))
}
func KeyUIDL(uidl string) string { return "uidl:" + uidl }
func KeyGraph(id string) string  { return "graph:" + id }
