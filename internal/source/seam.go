package source

import (
	"context"
	"time"

	"mailtrigger/internal/spool"
)

// Source is one mailbox as its protocol reads it: the seam between the
// supervisor (package watch), the ingest pipeline (package ingest, through
// a Ledger) and a protocol's client. imapsource, pop3source and graphsource
// each implement it; a fourth protocol implements it in a package of its
// own. A Source is used by one goroutine, the mailbox's watcher, which
// calls Connect, then Sync and Wait in turn until one fails, then Close,
// and starts again with backoff.
type Source interface {
	// Connect connects and logs in (IMAP also opens the folder). A source
	// that connects for each round (POP3) or speaks HTTP (Graph) may do
	// less here.
	Connect(ctx context.Context) error
	// Sync reads what arrived after the checkpoint l keeps, hands it to a
	// pipeline of l (which records it in batches, each with its checkpoint,
	// in one transaction), and then applies the after-processing the
	// committed messages are owed (and what earlier sessions left owed).
	Sync(ctx context.Context, l Ledger) error
	// Wait waits for more mail: IMAP IDLE or NOOP polling, the poll
	// interval for POP3 and Graph.
	Wait(ctx context.Context) error
	// Waiting returns the state shown while Wait runs and how long one
	// Wait may last before the server counts as silent (0: Wait is a timer
	// that cannot overrun).
	Waiting() (state string, maxWait time.Duration)
	// Close ends the session; the Source may be connected again.
	Close() error
}

// Checkpoint is where reading a mailbox stands, in one form for every
// source; each uses the fields that apply to it.
type Checkpoint struct {
	// Epoch is IMAP's UIDVALIDITY: ids of another epoch mean nothing.
	Epoch uint32
	// Last is the last IMAP UID read.
	Last uint32
	// Cursor is an opaque position such as Graph's deltaLink.
	Cursor string
}

// Message is one message a source read.
type Message struct {
	// UID is the IMAP UID (0 for sources without one).
	UID uint32
	// ID is the id that names the message across sessions for sources
	// without UIDs: POP3's UIDL, Graph's message id.
	ID string
	// Raw is the whole message, or only its header when TooLarge; nil
	// when the message is in Spool.
	Raw []byte
	// Spool, when set, holds the whole message (above the spool threshold)
	// instead of Raw. Whoever ends up holding the message closes it.
	Spool    *spool.File
	Size     int64
	TooLarge bool
}

// Owed is after-processing owed to the server for a committed message.
type Owed struct {
	Epoch  uint32
	UID    uint32
	ID     string
	Action string
	MoveTo string
}

// Progress is told how a round goes, for the mailbox's status.
type Progress interface {
	// State sets the state shown (imapconf.State…).
	State(state string)
	// Backlog says how many messages the round is about to read.
	Backlog(total int)
	// Counted reports a committed batch: read messages, recorded of them
	// new.
	Counted(read, recorded int)
}

// Ledger is the record of one mailbox as a source reads and writes it
// (package ingest implements it over the store): the checkpoint, the ids
// recorded, the after-processing owed, and the pipeline that records
// messages.
type Ledger interface {
	Progress
	// Checkpoint returns the stored checkpoint; ok is false before the
	// first connect.
	Checkpoint(ctx context.Context) (cp Checkpoint, ok bool, err error)
	// Begin stores the checkpoint of a first connect, and the ids present
	// then that are not to be read (skip).
	Begin(ctx context.Context, cp Checkpoint, skip []string) error
	// Known returns the ids recorded or skipped (POP3, Graph).
	Known(ctx context.Context) (map[string]bool, error)
	// Remember adds ids to the known ones without recording messages.
	Remember(ctx context.Context, ids []string) error
	// Forget forgets the known ids given; Retain those not in present.
	Forget(ctx context.Context, ids []string) error
	Retain(ctx context.Context, present map[string]bool) error
	// Owed returns the after-processing owed for committed messages.
	Owed(ctx context.Context) ([]Owed, error)
	// Paid forgets owed after-processing that was done (of one epoch).
	Paid(ctx context.Context, epoch uint32, done []Owed) error
	// ClearOwed forgets what is owed to epochs other than current.
	ClearOwed(ctx context.Context, current uint32) error
	// BeforeAction comes before after-processing action is applied on the
	// server: it checks that this replica still holds the mailbox and,
	// before mail is deleted or moved, that what recorded it is durable.
	BeforeAction(ctx context.Context, action string) error
	// Pipeline starts recording a run of messages.
	Pipeline(ctx context.Context, o PipelineOptions) (Pipeline, error)
}

// PipelineOptions shape one run of a Pipeline.
type PipelineOptions struct {
	// Total is how many messages the run will hand over (0: unknown).
	Total int
	// Epoch is the epoch the messages' UIDs belong to.
	Epoch uint32
	// Advance moves the checkpoint to each batch's last UID with the batch
	// (IMAP); otherwise it stays (a backlog read before the first
	// checkpoint) or moves with Flush.
	Advance bool
}

// Pipeline records the messages handed to it, in order, in batches.
type Pipeline interface {
	// Add hands over the next message: it is parsed (in parallel with
	// the next ones) and recorded in a batch (while the next batch is
	// read). It takes m.Spool over, also when it fails: the pipeline
	// closes it once the message is recorded or cannot be.
	Add(m Message) error
	// Flush records what was added and waits for every batch. cp, when
	// set, is stored with the last batch, which is then recorded even if
	// empty.
	Flush(cp *Checkpoint) error
	// Committed returns the messages of the batches committed since the
	// last call, in order. It may be called at any time: a source that
	// acts on each batch once it is committed (POP3 marks it for deletion)
	// calls it after each Add; after Flush it holds every batch.
	Committed() []Message
	// Close waits for what is in flight; call it (deferred) on every path.
	Close()
}

// Sleep waits for d, or until ctx ends (then it returns ctx's error): the
// Wait of sources that poll.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
