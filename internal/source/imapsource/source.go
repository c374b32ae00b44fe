package imapsource

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/source"
	"mailtrigger/internal/spool"
)

// SourceOptions are the knobs of a Source: those of Dial, and the rest.
type SourceOptions struct {
	Options
	// SizeCap is the size above which only a message's header is read.
	SizeCap int64
	// IdleMax is how long one WaitForMail waits (then the watcher waits
	// again); zero means DefaultMaxWait.
	IdleMax time.Duration
	// Login, when set, runs before each connection (source.LoginFunc).
	Login source.LoginFunc
	// Spool, when set, takes the messages above its threshold into spool
	// files instead of memory (nil: every message is read into memory).
	Spool *spool.Spooler
}

// Source is the source.Source of an IMAP mailbox: one connection per
// session, the folder selected; each Sync reads the messages after the
// checkpoint UID (UIDVALIDITY being the checkpoint's epoch) and applies the
// after-processing to those committed; Wait idles (or polls with NOOP).
type Source struct {
	cfg  imapconf.Config
	o    SourceOptions
	log  *slog.Logger
	conn *Conn
	mb   Mailbox
	cp   source.Checkpoint
	// fresh is a connection whose first Sync is still to come: it finds
	// the starting point and redoes the after-processing owed.
	fresh bool
}

var _ source.Source = (*Source)(nil)

// NewSource returns the Source of configuration cfg.
func NewSource(cfg imapconf.Config, o SourceOptions) *Source {
	return &Source{cfg: cfg, o: o, log: source.Logger(o.Logger)}
}

// Connect dials, logs in and selects the folder.
func (s *Source) Connect(ctx context.Context) error {
	opts, err := s.o.WithLogin(ctx, s.o.Login)
	if err != nil {
		return err
	}
	conn, err := Dial(ctx, s.cfg, opts)
	if err != nil {
		return err
	}
	mb, err := conn.Select(ctx, s.cfg.Folder)
	if err != nil {
		_ = conn.Close()
		return err
	}
	s.conn, s.mb, s.fresh = conn, mb, true
	return nil
}

// Close logs out.
func (s *Source) Close() error {
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	s.conn = nil
	return err
}

// Waiting implements source.Source.
func (s *Source) Waiting() (string, time.Duration) {
	state := imapconf.StatePolling
	if s.conn != nil && s.conn.HasIdle() {
		state = imapconf.StateIdle
	}
	return state, s.idleMax()
}

func (s *Source) idleMax() time.Duration {
	if s.o.IdleMax <= 0 {
		return DefaultMaxWait
	}
	return s.o.IdleMax
}

// Wait waits for mail with IDLE, or NOOP every poll interval.
func (s *Source) Wait(ctx context.Context) error {
	return s.conn.WaitForMail(ctx, s.idleMax(), time.Duration(s.cfg.PollInterval)*time.Second)
}

// Sync implements source.Source.
func (s *Source) Sync(ctx context.Context, l source.Ledger) error {
	if s.fresh {
		cp, err := s.startingPoint(ctx, l)
		if err != nil {
			return err
		}
		// Redo the after-processing a crash or failure left undone.
		if err := source.RedoOwed(ctx, l, s.log, s.mb.UIDValidity, s.apply); err != nil {
			return err
		}
		s.cp, s.fresh = cp, false
	}
	l.State(imapconf.StateSyncing)
	uids, err := s.conn.SearchAfter(ctx, s.cp.Last)
	if err != nil {
		return err
	}
	s.cp, err = s.catchUp(ctx, l, s.cp, uids, true)
	return err
}

// startingPoint returns the checkpoint to read after: the stored one, a new
// one for a first connect (per the backlog mode), or UID 0 of a new
// UIDVALIDITY when the folder was recreated.
func (s *Source) startingPoint(ctx context.Context, l source.Ledger) (source.Checkpoint, error) {
	mb := s.mb
	cp, ok, err := l.Checkpoint(ctx)
	if err != nil {
		return cp, err
	}
	if ok && cp.Epoch == mb.UIDValidity {
		return cp, nil
	}
	if ok {
		// The folder was recreated: read it again; what was recorded
		// already is recognised and not recorded twice.
		s.log.Warn("UIDVALIDITY changed; reading the folder again", "old", cp.Epoch, "new", mb.UIDValidity)
		if err := l.ClearOwed(ctx, mb.UIDValidity); err != nil {
			return cp, err
		}
		return source.Checkpoint{Epoch: mb.UIDValidity}, nil
	}
	last := uint32(0)
	if mb.UIDNext > 0 {
		last = mb.UIDNext - 1
	}
	switch s.cfg.Backlog {
	case imapconf.BacklogAll:
		return source.Checkpoint{Epoch: mb.UIDValidity}, nil
	case imapconf.BacklogUnseen:
		uids, err := s.conn.SearchUnseen(ctx)
		if err != nil {
			return cp, err
		}
		var old []uint32
		for _, u := range uids {
			if u <= last {
				old = append(old, u)
			}
		}
		s.log.Info("first connect: reading unseen mail", "messages", len(old))
		start := source.Checkpoint{Epoch: mb.UIDValidity}
		if _, err := s.catchUp(ctx, l, start, old, false); err != nil {
			return cp, err
		}
	default:
		s.log.Info("first connect: only mail arriving from now on is read", "after_uid", last)
	}
	newCP := source.Checkpoint{Epoch: mb.UIDValidity, Last: last}
	return newCP, l.Begin(ctx, newCP, nil)
}

// catchUp reads the messages uids into a pipeline of l, each batch moving
// the checkpoint to its last UID when advance is set, and then does the
// after-processing they are owed.
func (s *Source) catchUp(ctx context.Context, l source.Ledger, cp source.Checkpoint, uids []uint32, advance bool) (source.Checkpoint, error) {
	if len(uids) == 0 {
		return cp, nil
	}
	p, err := l.Pipeline(ctx, source.PipelineOptions{Total: len(uids), Epoch: cp.Epoch, Advance: advance})
	if err != nil {
		return cp, err
	}
	defer p.Close()
	err = s.conn.FetchSpooled(ctx, uids, s.o.SizeCap, s.o.Spool, func(m Message) error {
		return p.Add(source.Message{UID: m.UID, Raw: m.Raw, Spool: m.Spool, Size: m.Size, TooLarge: m.TooLarge})
	})
	if err == nil {
		err = p.Flush(nil)
	} else {
		p.Close()
	}
	done := p.Committed()
	if advance && len(done) > 0 {
		cp.Last = done[len(done)-1].UID
	}
	if err != nil {
		return cp, fmt.Errorf("reading new mail: %w", err)
	}
	if len(done) > 0 && s.cfg.AfterProcessing != imapconf.AfterNone {
		owed := make([]source.Owed, len(done))
		for i, m := range done {
			owed[i] = source.Owed{Epoch: cp.Epoch, UID: m.UID}
		}
		if err := source.Pay(ctx, l, cp.Epoch, s.cfg.AfterProcessing, s.cfg.MoveTo, owed, s.apply); err != nil {
			return cp, err
		}
	}
	return cp, nil
}

// apply does after-processing action on the messages owed it: the Apply
// of source.Pay and source.RedoOwed.
func (s *Source) apply(ctx context.Context, action, moveTo string, owed []source.Owed) error {
	uids := make([]uint32, len(owed))
	for i, o := range owed {
		uids[i] = o.UID
	}
	return s.conn.Apply(ctx, action, moveTo, uids)
}
