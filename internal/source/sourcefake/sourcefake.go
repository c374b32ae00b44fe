// Package sourcefake is an in-memory source.Source for tests of the
// supervisor and the ingest pipeline that need no mail server: a folder of
// messages with UIDs under one UIDVALIDITY, with failures, silence and
// after-processing that tests control and observe.
package sourcefake

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"time"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/source"
	"mailtrigger/internal/spool"
)

// Source is a fake mailbox. Its zero value is not ready: use New.
type Source struct {
	mu       sync.Mutex
	epoch    uint32
	msgs     []source.Message // in UID order
	next     uint32
	failures []error // what the next Connects fail with, in turn
	syncErrs []error // what the next Syncs fail with, in turn
	silent   bool
	maxWait  time.Duration
	newMail  chan struct{}
	connects int
	syncs    int
	applied  []uint32
	action   string
	conn     bool // between Connect and Close
	spool    *spool.Spooler
}

var _ source.Source = (*Source)(nil)

// New returns an empty mailbox under UIDVALIDITY epoch whose Wait returns
// when mail is added, and reports a bound of maxWait (0: no watchdog).
// Committed messages get the after-processing action (imapconf.After…,
// "" for none), which Applied lists.
func New(epoch uint32, maxWait time.Duration, action string) *Source {
	return &Source{epoch: epoch, next: 1, maxWait: maxWait, action: action, newMail: make(chan struct{}, 1)}
}

// Add puts a message in the folder and wakes a Wait; it returns its UID.
func (s *Source) Add(raw string) uint32 {
	s.mu.Lock()
	uid := s.next
	s.next++
	s.msgs = append(s.msgs, source.Message{UID: uid, Raw: []byte(raw), Size: int64(len(raw))})
	s.mu.Unlock()
	select {
	case s.newMail <- struct{}{}:
	default:
	}
	return uid
}

// UseSpool makes Sync hand the messages above sp's threshold over in spool
// files (source.Message.Spool), as the real sources do.
func (s *Source) UseSpool(sp *spool.Spooler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.spool = sp
}

// FailConnect makes the next Connects fail with errs, one each.
func (s *Source) FailConnect(errs ...error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures = append(s.failures, errs...)
}

// FailSync makes the next Syncs fail with errs, one each.
func (s *Source) FailSync(errs ...error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.syncErrs = append(s.syncErrs, errs...)
}

// Silence makes Wait never return (until its context ends), as a server
// that stopped answering.
func (s *Source) Silence(silent bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.silent = silent
}

// Connects returns how many times Connect was called; Syncs, Sync.
func (s *Source) Connects() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.connects
}

// Syncs returns how many times Sync was called.
func (s *Source) Syncs() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.syncs
}

// Applied returns the UIDs the after-processing was applied to, in order.
func (s *Source) Applied() []uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]uint32(nil), s.applied...)
}

// Connect implements source.Source.
func (s *Source) Connect(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.connects++
	if len(s.failures) > 0 {
		err := s.failures[0]
		s.failures = s.failures[1:]
		return err
	}
	s.conn = true
	return nil
}

// Close implements source.Source.
func (s *Source) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conn = false
	return nil
}

// Waiting implements source.Source.
func (s *Source) Waiting() (string, time.Duration) { return imapconf.StateIdle, s.maxWait }

// Wait implements source.Source.
func (s *Source) Wait(ctx context.Context) error {
	s.mu.Lock()
	silent := s.silent
	s.mu.Unlock()
	if silent {
		<-ctx.Done()
		return ctx.Err()
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-s.newMail:
		return nil
	}
}

// Sync implements source.Source: it reads every message after the
// checkpoint (all of them on a first connect, or after the epoch changed),
// records them through l's pipeline, and applies the after-processing to
// the committed ones, first to those owed from before.
func (s *Source) Sync(ctx context.Context, l source.Ledger) error {
	s.mu.Lock()
	s.syncs++
	if !s.conn {
		s.mu.Unlock()
		return errors.New("sourcefake: Sync without Connect")
	}
	if len(s.syncErrs) > 0 {
		err := s.syncErrs[0]
		s.syncErrs = s.syncErrs[1:]
		s.mu.Unlock()
		return err
	}
	epoch := s.epoch
	msgs := append([]source.Message(nil), s.msgs...)
	sp := s.spool
	s.mu.Unlock()

	l.State(imapconf.StateSyncing)
	if err := s.redo(ctx, l); err != nil {
		return err
	}
	cp, ok, err := l.Checkpoint(ctx)
	if err != nil {
		return err
	}
	if !ok || cp.Epoch != epoch {
		cp = source.Checkpoint{Epoch: epoch}
		if err := l.Begin(ctx, cp, nil); err != nil {
			return err
		}
	}
	var todo []source.Message
	for _, m := range msgs {
		if m.UID > cp.Last {
			todo = append(todo, m)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	p, err := l.Pipeline(ctx, source.PipelineOptions{Total: len(todo), Epoch: epoch, Advance: true})
	if err != nil {
		return err
	}
	defer p.Close()
	for _, m := range todo {
		if sp != nil {
			// Read from the "server" as a source reads a literal.
			raw, big, _, err := sp.Take(bytes.NewReader(m.Raw), int64(len(m.Raw)), int64(len(m.Raw)))
			if err != nil {
				return err
			}
			m.Raw, m.Spool = raw, big
		}
		if err := p.Add(m); err != nil {
			return err
		}
	}
	if err := p.Flush(nil); err != nil {
		return err
	}
	if s.action == "" {
		return nil
	}
	return s.redo(ctx, l)
}

// redo applies the after-processing owed.
func (s *Source) redo(ctx context.Context, l source.Ledger) error {
	owed, err := l.Owed(ctx)
	if err != nil || len(owed) == 0 {
		return err
	}
	if err := l.BeforeAction(ctx, s.action); err != nil {
		return err
	}
	s.mu.Lock()
	for _, o := range owed {
		s.applied = append(s.applied, o.UID)
	}
	s.mu.Unlock()
	return l.Paid(ctx, s.epoch, owed)
}
