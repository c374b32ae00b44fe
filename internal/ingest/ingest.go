// Package ingest owns the pipeline from a mail source to the store, for
// every source: a Ledger (source.Ledger) maps a mailbox's source-neutral
// checkpoint, ids and owed after-processing onto the store, and its
// Pipeline batches the messages a source reads (BatchMessages, BatchBytes),
// parses them in parallel (leniently: a message that cannot be parsed is
// stored raw with its error), and records each batch, in order, with the
// checkpoint and the after-processing owed, in one transaction, while the
// next is read. The crash-loop breaker (Guard) notes each batch before it
// is parsed.
package ingest

import (
	"bytes"
	"context"
	"crypto/rand"
	"log/slog"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/mail"
	"mailtrigger/internal/store"
)

// Ingester records messages.
type Ingester struct {
	store     *store.Store
	log       *slog.Logger
	hook      store.RecordHook
	committed func()
	metrics   *metrics
	// crashOnSubject is Deps.TestCrashOnSubject.
	crashOnSubject string
	// instance names this Ingester in the crash-loop breaker's notes.
	instance string
}

// Deps are what an Ingester needs. Hook, when set, runs in the ingest
// transaction for every recorded message (the flows create their runs there).
type Deps struct {
	Store    *store.Store
	Logger   *slog.Logger
	Hook     store.RecordHook
	Registry prometheus.Registerer // nil: metrics are not exported
	// Committed, when set, is called after a batch that recorded messages
	// committed (it wakes the run worker).
	Committed func()
	// TestCrashOnSubject is a test hook, set only by the end-to-end test of
	// the crash-loop breaker (MAILTRIGGER_TEST_CRASH_ON_SUBJECT): the process
	// exits when Ingester.Prepare parses a message with this subject.
	TestCrashOnSubject string
}

type metrics struct {
	messages prometheus.Counter
	bytes    prometheus.Counter
	latency  prometheus.Histogram
}

// New returns an Ingester.
func New(d Deps) *Ingester {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	m := &metrics{
		messages: prometheus.NewCounter(prometheus.CounterOpts{Name: "mailtrigger_messages_ingested_total", Help: "Messages recorded."}),
		bytes:    prometheus.NewCounter(prometheus.CounterOpts{Name: "mailtrigger_message_bytes_ingested_total", Help: "Bytes of messages read from servers."}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "mailtrigger_ingest_batch_seconds", Help: "Time to record one batch.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}),
	}
	if d.Registry != nil {
		d.Registry.MustRegister(m.messages, m.bytes, m.latency)
	}
	if d.Committed == nil {
		d.Committed = func() {}
	}
	return &Ingester{store: d.Store, log: d.Logger, hook: d.Hook, committed: d.Committed, metrics: m, crashOnSubject: d.TestCrashOnSubject,
		instance: rand.Text()}
}

// Prepare parses one message as read from the server. raw is the whole
// message, or only its header section when tooLarge; size is the whole
// message's size on the server.
func Prepare(uid uint32, raw []byte, size int64, tooLarge bool) store.Incoming {
	var m *mail.Message
	if tooLarge {
		var err error
		m, err = mail.ParseHeader(bytes.NewReader(raw), size)
		if err != nil {
			m = &mail.Message{Size: size, TooLarge: true, ParseErrors: []string{err.Error()}}
		}
	} else {
		m = mail.Parse(raw)
	}
	return store.Incoming{UID: uid, Raw: raw, Msg: m, Seen: timeNow()}
}

// PrepareFile parses one message held in a spool file (or any big raw
// message outside memory) with the streaming parser, reading f as it goes:
// the Incoming stores the message from f (Big) in chunks. f stays open; its
// holder closes it once the message is recorded.
func PrepareFile(uid uint32, f store.RawFile) store.Incoming {
	return store.Incoming{UID: uid, Big: f, Msg: mail.ParseFile(f, f.Size()), Seen: timeNow()}
}

func timeNow() time.Time { return time.Now() }

// rawSize is the size of the raw bytes of m: in memory or in Big.
func rawSize(m store.Incoming) int64 {
	if m.Big != nil {
		return m.Big.Size()
	}
	return int64(len(m.Raw))
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

// Record records batch b of configuration c (which gives b its IMAPID,
// IMAPName, Action and MoveTo) in one transaction, with b's checkpoint,
// returning what was recorded (a message recorded before is skipped).
func (in *Ingester) Record(ctx context.Context, c imapconf.Config, b store.Batch) ([]store.Recorded, error) {
	b.IMAPID, b.IMAPName, b.Action, b.MoveTo = c.ID, c.Name, c.AfterProcessing, c.MoveTo
	start := time.Now()
	msgs := b.Messages
	rec, skipped, err := in.store.RecordBatch(ctx, b, in.hook)
	if err != nil {
		return nil, err
	}
	if len(rec) > 0 {
		in.committed()
	}
	in.metrics.latency.Observe(time.Since(start).Seconds())
	in.metrics.messages.Add(float64(len(rec)))
	var n int64
	for _, m := range msgs {
		n += rawSize(m)
	}
	in.metrics.bytes.Add(float64(n))
	for _, m := range msgs {
		if m.Msg.TooLarge || len(m.Msg.ParseErrors) > 0 {
			in.log.Warn("message recorded with problems", "imap", c.Name, "uid", m.UID, "too_large", m.Msg.TooLarge, "parse_error", m.Msg.ParseError())
		}
	}
	var last uint32
	if b.Checkpoint != nil {
		last = b.Checkpoint.Last
	}
	in.log.Debug("batch recorded", "imap", c.Name, "recorded", len(rec), "skipped", skipped, "last_uid", last, "duration", time.Since(start))
	return rec, nil
}
