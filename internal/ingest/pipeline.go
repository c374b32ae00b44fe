package ingest

import (
	"context"
	"runtime"
	"slices"
	"sync"

	"mailtrigger/internal/source"
	"mailtrigger/internal/spool"
	"mailtrigger/internal/store"
)

// Limits bound the batches of a pipeline: the messages and bytes one ingest
// transaction records at most.
type Limits struct {
	BatchMessages int
	BatchBytes    int64
}

// commitFunc records one batch: msgs under the crash-loop note key, with
// the checkpoint cp when set (else the run's own), in the order o says.
type commitFunc func(ctx context.Context, msgs []store.Incoming, key string, cp *source.Checkpoint, o order) ([]store.Recorded, error)

// order is how a batch keeps its place behind the one before it while both
// are written at once (store.Batch's Reserved and Await): reserved, once its
// ids are taken, lets the next batch begin; await waits for the one before
// it to commit, and returns its error.
type order struct {
	reserved func()
	await    func() error
}

// pipeline is the one ingest pipeline of every source, in three stages
// that overlap: the source reads a batch while the batch before it is
// parsed (on all cores: parsing is most of a backlog's CPU) and the one
// before that is recorded. Batches commit one at a time and in order, so
// that the checkpoint only moves forward (with overlap, the next one is
// written meanwhile); a batch whose predecessor failed is not recorded. At
// most three batches (3 × BatchBytes) are held at a time: the source waits
// while two are parsed or recorded. A message in a spool file is a batch
// of its own and stays in its file, so that only its parse's buffers are
// in memory.
//
// The crash-loop breaker's note covers every batch not yet recorded:
// outside the careful mode one standing note is written before the first
// message of a round is parsed, for as many messages as the pipeline can
// hold unrecorded, and removed by the transaction that records the round's
// last batch (Flush). Batches in between write no note, so that reading
// and parsing never wait for the database's writer (on SQLite one
// connection, held by the batch being recorded). While careful, a batch is
// one message with its own note, begun once everything before it is
// recorded.
type pipeline struct {
	ctx    context.Context
	in     *Ingester
	guard  *Guard
	lim    Limits
	o      source.PipelineOptions
	commit commitFunc
	// overlap lets a batch be written while the one before it is, the
	// commits still in order (PostgreSQL, IMAP): on one connection a batch
	// is a chain of round trips during which the database server and the
	// service mostly wait for each other. Batches with ids (POP3, Graph)
	// number their messages from what is recorded before them, and
	// SQLite has one writer: for those a batch begins once the one before
	// it is recorded.
	overlap  bool
	progress source.Progress
	keyOf    func(source.Message) string // the crash-loop note of a batch starting with a message

	batch  []store.Incoming
	refs   []source.Message // the batch's messages without their bytes
	spools []*spool.File    // the batch's spool files, closed once it is recorded
	bytes  int64
	key    string // the careful note the batch being gathered was noted under ("": the standing one)
	limit  int    // messages in the batch being gathered
	added  int    // messages handed over so far
	// standing is the key of the standing note, "" while none is.
	standing string

	// parsing counts the parses of the batch being gathered.
	parsing *sync.WaitGroup
	sem     chan struct{}
	// pending are the batches handed over and not yet known recorded,
	// oldest first.
	pending []*recording

	mu        sync.Mutex
	committed []source.Message
}

// recording is a batch handed over to be parsed and recorded: done is
// closed once it is recorded or failed, with its error in err.
type recording struct {
	done chan struct{}
	err  error
	// reserved is closed once the batch's ids are taken (overlap): the
	// next batch may begin.
	reserved     chan struct{}
	reservedOnce sync.Once
}

// pendingMax is how many batches may be parsed or recorded while the source
// reads the next one.
const pendingMax = 2

func newPipeline(ctx context.Context, in *Ingester, g *Guard, lim Limits, o source.PipelineOptions, p source.Progress,
	keyOf func(source.Message) string, commit commitFunc) *pipeline {
	return &pipeline{ctx: ctx, in: in, guard: g, lim: lim, o: o, commit: commit, progress: p, keyOf: keyOf,
		sem: make(chan struct{}, runtime.GOMAXPROCS(0)), limit: 1}
}

// waitOldest waits for the oldest batch handed over and returns its error.
func (p *pipeline) waitOldest() error {
	r := p.pending[0]
	<-r.done
	p.pending = p.pending[1:]
	return r.err
}

// waitRecorded waits for every batch handed over.
func (p *pipeline) waitRecorded() error {
	var first error
	for len(p.pending) > 0 {
		if err := p.waitOldest(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Add implements source.Pipeline. It owns m.Spool from now on, also when
// it fails: a spool file is closed (removed) once its batch is recorded or
// fails, or when the pipeline is closed before that. A spooled message
// goes in a batch of its own, and counts its size against BatchBytes.
func (p *pipeline) Add(m source.Message) error {
	if err := p.add(m); err != nil {
		if m.Spool != nil && !slices.Contains(p.spools, m.Spool) {
			_ = m.Spool.Close()
		}
		return err
	}
	return nil
}

func (p *pipeline) add(m source.Message) error {
	p.added++
	big := m.Spool != nil
	if big && len(p.batch) > 0 {
		if err := p.flush(nil, false); err != nil {
			return err
		}
	}
	skip := false
	if p.batch == nil {
		// At most the messages left: a batch of one is what the
		// crash-loop breaker can blame.
		left := 0
		if p.o.Total > 0 {
			left = max(p.o.Total-p.added+1, 1)
		}
		p.limit = p.guard.BatchMessages(max(p.lim.BatchMessages, 1))
		if left > 0 {
			p.limit = min(p.limit, left)
		}
		if big {
			p.limit = 1
		}
		p.key = ""
		switch {
		case p.guard.Careful():
			// One message, noted on its own once all before it are
			// recorded (so that its note replaces no other's).
			if err := p.waitRecorded(); err != nil {
				return err
			}
			p.standing = ""
			p.key = p.keyOf(m)
			var err error
			if skip, err = p.guard.Begin(p.ctx, p.key, p.limit); err != nil {
				return err
			}
		case p.standing == "":
			// The standing note, for all the pipeline may hold
			// unrecorded: the batches handed over and this one.
			if err := p.waitRecorded(); err != nil {
				return err
			}
			span := (pendingMax + 1) * max(p.lim.BatchMessages, 1)
			if left > 0 {
				span = min(span, left)
			}
			key := p.keyOf(m)
			if _, err := p.guard.Begin(p.ctx, key, span); err != nil {
				return err
			}
			p.standing = key
		}
		// Its final size at once: a parse writes into its slot while
		// more messages are appended, which must not move it.
		p.batch = make([]store.Incoming, 0, p.limit)
		p.parsing = new(sync.WaitGroup)
	}
	p.batch = append(p.batch, store.Incoming{UID: m.UID, ID: m.ID})
	p.refs = append(p.refs, source.Message{UID: m.UID, ID: m.ID, Size: m.Size, TooLarge: m.TooLarge})
	slot := &p.batch[len(p.batch)-1]
	size := int64(len(m.Raw))
	if big {
		p.spools = append(p.spools, m.Spool)
		size = m.Spool.Size()
	}
	if skip {
		*slot = Skipped(m.UID, m.Raw, m.Size, m.TooLarge)
		if big {
			slot.Big = m.Spool
		}
		slot.ID = m.ID
	} else {
		// The source reads on while the message waits for a core.
		p.parsing.Go(func() {
			p.sem <- struct{}{}
			defer func() { <-p.sem }()
			if big {
				*slot = p.in.PrepareFile(m.UID, m.Spool)
			} else {
				*slot = p.in.Prepare(m.UID, m.Raw, m.Size, m.TooLarge)
			}
			slot.ID = m.ID
		})
	}
	p.bytes += size
	if len(p.batch) >= p.limit || p.bytes >= p.lim.BatchBytes {
		return p.flush(nil, false)
	}
	return nil
}

// flush hands the batch gathered over to be recorded once it is parsed and
// the one before it is recorded, after waiting while pendingMax batches
// are; with cp it records even an empty batch. last says it is the round's
// last batch: it removes the standing note. The batch's spool files are
// closed once it is recorded or failed.
func (p *pipeline) flush(cp *source.Checkpoint, last bool) error {
	for len(p.pending) >= pendingMax {
		if err := p.waitOldest(); err != nil {
			return err
		}
	}
	key := p.key
	if last && p.standing != "" {
		key, p.standing = p.standing, ""
	}
	if len(p.batch) == 0 && cp == nil {
		if key == "" {
			return nil
		}
		// Nothing left to record, but the standing note is to go.
		if err := p.waitRecorded(); err != nil {
			return err
		}
		return p.guard.End(p.ctx, key)
	}
	// A new slice for the next batch, not batch[:0]: parses of the next
	// batch must not write into the one being recorded.
	b, refs, spools, parsing := p.batch, p.refs, p.spools, p.parsing
	p.batch, p.refs, p.bytes, p.key, p.spools, p.parsing = nil, nil, 0, "", nil, nil
	var before *recording
	if n := len(p.pending); n > 0 {
		before = p.pending[n-1]
	}
	r := &recording{done: make(chan struct{}), reserved: make(chan struct{})}
	p.pending = append(p.pending, r)
	go func() {
		defer close(r.done)
		defer closeSpools(spools)
		if parsing != nil {
			parsing.Wait()
		}
		await := func() error {
			if before == nil {
				return nil
			}
			<-before.done
			return before.err
		}
		if !p.overlap {
			if err := await(); err != nil {
				r.err = err
				return
			}
		} else if before != nil {
			select {
			case <-before.reserved:
			case <-before.done:
				if before.err != nil {
					r.err = before.err
					return
				}
			}
		}
		o := order{await: await, reserved: func() { r.reservedOnce.Do(func() { close(r.reserved) }) }}
		rec, err := p.commit(p.ctx, b, key, cp, o)
		if err != nil {
			if errBefore := await(); errBefore != nil {
				err = errBefore // not recorded because the batch before failed
			}
			r.err = err
			return
		}
		p.progress.Counted(len(b), len(rec))
		p.mu.Lock()
		p.committed = append(p.committed, refs...)
		p.mu.Unlock()
	}()
	return nil
}

// closeSpools closes (removes) spool files.
func closeSpools(files []*spool.File) {
	for _, f := range files {
		_ = f.Close()
	}
}

// Flush implements source.Pipeline: the round's last batch is recorded
// (with cp, when set) and every batch before it.
func (p *pipeline) Flush(cp *source.Checkpoint) error {
	if err := p.flush(cp, true); err != nil {
		return err
	}
	return p.waitRecorded()
}

// Committed implements source.Pipeline.
func (p *pipeline) Committed() []source.Message {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.committed
	p.committed = nil
	return c
}

// Close implements source.Pipeline: the spool files of a batch never
// handed over are closed too. A standing note stays: the round did not
// end (a note of this process is replaced by its next round, see Guard).
func (p *pipeline) Close() {
	if p.parsing != nil {
		p.parsing.Wait()
	}
	_ = p.waitRecorded()
	closeSpools(p.spools)
	p.spools = nil
}
