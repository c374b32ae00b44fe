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
// the checkpoint cp when set (else the run's own).
type commitFunc func(ctx context.Context, msgs []store.Incoming, key string, cp *source.Checkpoint) ([]store.Recorded, error)

// pipeline is the one ingest pipeline of every source. Messages are parsed
// on all cores while the source reads on (parsing is most of a backlog's
// CPU); a batch is recorded while the next one is read and parsed, at most
// one at a time and each after the one before, so that batches commit in
// order and the checkpoint only moves forward. Two batches (at most 2 ×
// BatchBytes) are held at a time; a message in a spool file is a batch of
// its own and stays in its file, so that only its parse's buffers are in
// memory. Before the first message of a batch is
// parsed, the crash-loop breaker notes it (Guard.Begin), while the batch
// before it is recorded; while it is careful, a batch is one message,
// begun once the one before is recorded.
type pipeline struct {
	ctx      context.Context
	in       *Ingester
	guard    *Guard
	lim      Limits
	o        source.PipelineOptions
	commit   commitFunc
	progress source.Progress
	keyOf    func(source.Message) string // the crash-loop note of a batch starting with a message

	batch  []store.Incoming
	refs   []source.Message // the batch's messages without their bytes
	spools []*spool.File    // the batch's spool files, closed once it is recorded
	bytes  int64
	key    string // the key the batch being gathered was noted under
	limit  int    // messages in the batch being gathered
	added  int    // messages handed over so far

	// note is the crash-loop note of the batch being gathered while it
	// is being written beside the batch being recorded (nil: written).
	note    *pendingNote
	parsing sync.WaitGroup
	sem     chan struct{}
	// recorded gets the result of the batch being recorded.
	recorded chan error

	mu        sync.Mutex
	committed []source.Message
}

// pendingNote is a crash-loop note being written: done is closed once it
// is, with its error in err.
type pendingNote struct {
	done chan struct{}
	err  error
}

// wait waits for the note and returns its error.
func (n *pendingNote) wait() error {
	if n == nil {
		return nil
	}
	<-n.done
	return n.err
}

func newPipeline(ctx context.Context, in *Ingester, g *Guard, lim Limits, o source.PipelineOptions, p source.Progress,
	keyOf func(source.Message) string, commit commitFunc) *pipeline {
	return &pipeline{ctx: ctx, in: in, guard: g, lim: lim, o: o, commit: commit, progress: p, keyOf: keyOf,
		sem: make(chan struct{}, runtime.GOMAXPROCS(0)), limit: 1}
}

func (p *pipeline) waitRecorded() error {
	if p.recorded == nil {
		return nil
	}
	err := <-p.recorded
	p.recorded = nil
	return err
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
		if err := p.flush(nil); err != nil {
			return err
		}
	}
	skip := false
	if p.batch == nil {
		if p.guard.Careful() {
			if err := p.waitRecorded(); err != nil {
				return err
			}
		}
		// At most the messages left: a batch of one is what the
		// crash-loop breaker can blame.
		p.limit = p.guard.BatchMessages(max(p.lim.BatchMessages, 1))
		if p.o.Total > 0 {
			p.limit = min(p.limit, max(p.o.Total-p.added+1, 1))
		}
		if big {
			p.limit = 1
		}
		p.key = p.keyOf(m)
		if p.recorded != nil && !p.guard.Careful() {
			// The batch before is being recorded, and on SQLite its
			// transaction holds the one writer connection: the note is
			// written beside it, not after it, while this batch is read,
			// and its messages are parsed once the note is written.
			// (Begin only writes the note when not careful.)
			n := &pendingNote{done: make(chan struct{})}
			key, span := p.key, p.limit
			go func() {
				defer close(n.done)
				_, n.err = p.guard.Begin(p.ctx, key, span)
			}()
			p.note = n
		} else {
			var err error
			if skip, err = p.guard.Begin(p.ctx, p.key, p.limit); err != nil {
				return err
			}
		}
		// Its final size at once: a parse writes into its slot while
		// more messages are appended, which must not move it.
		p.batch = make([]store.Incoming, 0, p.limit)
	}
	p.batch = append(p.batch, store.Incoming{UID: m.UID, ID: m.ID})
	p.refs = append(p.refs, source.Message{UID: m.UID, ID: m.ID, Size: m.Size, TooLarge: m.TooLarge})
	slot := &p.batch[len(p.batch)-1]
	size := int64(len(m.Raw))
	if big {
		p.spools = append(p.spools, m.Spool)
		size = m.Spool.Size()
	}
	switch {
	case skip:
		*slot = Skipped(m.UID, m.Raw, m.Size, m.TooLarge)
		if big {
			slot.Big = m.Spool
		}
		slot.ID = m.ID
	default:
		n := p.note
		if n == nil {
			p.sem <- struct{}{}
		}
		p.parsing.Go(func() {
			if n != nil {
				// Parsed only once the batch is noted; a batch whose
				// note failed is not recorded (flush).
				if n.wait() != nil {
					return
				}
				p.sem <- struct{}{}
			}
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
		return p.flush(nil)
	}
	return nil
}

// flush starts recording the batch gathered, once the one before it is
// recorded; with cp it records even an empty batch. The batch's spool
// files are closed once it is recorded or failed.
func (p *pipeline) flush(cp *source.Checkpoint) error {
	p.parsing.Wait()
	if err := p.waitRecorded(); err != nil {
		return err
	}
	note := p.note
	p.note = nil
	if err := note.wait(); err != nil {
		return err
	}
	if len(p.batch) == 0 && cp == nil {
		return nil
	}
	// A new slice for the next batch, not batch[:0]: parses of the next
	// batch must not write into the one being recorded.
	b, refs, key, spools := p.batch, p.refs, p.key, p.spools
	p.batch, p.refs, p.bytes, p.key, p.spools = nil, nil, 0, "", nil
	done := make(chan error, 1)
	p.recorded = done
	go func() {
		rec, err := p.commit(p.ctx, b, key, cp)
		closeSpools(spools)
		if err == nil {
			p.progress.Counted(len(b), len(rec))
			p.mu.Lock()
			p.committed = append(p.committed, refs...)
			p.mu.Unlock()
		}
		done <- err
	}()
	return nil
}

// closeSpools closes (removes) spool files.
func closeSpools(files []*spool.File) {
	for _, f := range files {
		_ = f.Close()
	}
}

// Flush implements source.Pipeline.
func (p *pipeline) Flush(cp *source.Checkpoint) error {
	if err := p.flush(cp); err != nil {
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
// recorded are closed too.
func (p *pipeline) Close() {
	p.parsing.Wait()
	_ = p.note.wait()
	_ = p.waitRecorded()
	closeSpools(p.spools)
	p.spools = nil
}
