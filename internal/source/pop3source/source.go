package pop3source

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
	// SizeCap is the size above which only a message's header is kept.
	SizeCap int64
	// Login, when set, runs before each connection (source.LoginFunc).
	Login source.LoginFunc
	// Spool, when set, takes the messages above its threshold into spool
	// files instead of memory (nil: every message is read into memory).
	Spool *spool.Spooler
}

// Source is the source.Source of a POP3 mailbox: one connection per Sync
// (a poll), every poll interval. Each poll lists the unique ids, forgets the
// remembered ones the server no longer has, marks for deletion (after-
// processing delete) the ones recorded already (a crash may have come
// between the commit and QUIT), reads and records the others, marks them
// for deletion once committed, and QUITs, on which the server removes what
// was marked.
type Source struct {
	cfg imapconf.Config
	o   SourceOptions
	log *slog.Logger
}

var _ source.Source = (*Source)(nil)

// NewSource returns the Source of configuration cfg.
func NewSource(cfg imapconf.Config, o SourceOptions) *Source {
	return &Source{cfg: cfg, o: o, log: source.Logger(o.Logger)}
}

// Connect does nothing: each Sync connects.
func (s *Source) Connect(context.Context) error { return nil }

// Close does nothing: each Sync closes its connection.
func (s *Source) Close() error { return nil }

// Waiting implements source.Source.
func (s *Source) Waiting() (string, time.Duration) { return imapconf.StatePolling, 0 }

// Wait waits for the poll interval.
func (s *Source) Wait(ctx context.Context) error {
	return source.Sleep(ctx, time.Duration(s.cfg.PollInterval)*time.Second)
}

// Sync runs one poll.
func (s *Source) Sync(ctx context.Context, l source.Ledger) error {
	l.State(imapconf.StateConnecting)
	opts, err := s.o.WithLogin(ctx, s.o.Login)
	if err != nil {
		return err
	}
	conn, err := Dial(ctx, s.cfg, opts)
	if err != nil {
		return err
	}
	defer conn.Close()
	l.State(imapconf.StateSyncing)
	entries, err := conn.UIDL(ctx)
	if err != nil {
		return err
	}
	if _, ok, err := l.Checkpoint(ctx); err != nil {
		return err
	} else if !ok {
		var skip []string
		if s.cfg.Backlog != imapconf.BacklogAll {
			for _, e := range entries {
				skip = append(skip, e.UIDL)
			}
			s.log.Info("first connect: only mail arriving from now on is read", "skipped", len(skip))
		} else {
			s.log.Info("first connect: reading all the mail", "messages", len(entries))
		}
		if err := l.Begin(ctx, source.Checkpoint{}, skip); err != nil {
			return err
		}
	}
	present := make(map[string]bool, len(entries))
	for _, e := range entries {
		present[e.UIDL] = true
	}
	if err := l.Retain(ctx, present); err != nil {
		return err
	}
	known, err := l.Known(ctx)
	if err != nil {
		return err
	}
	del := s.cfg.AfterProcessing == imapconf.AfterDelete
	marked := 0
	dele := func(nums []int) error {
		if len(nums) > 0 {
			// Only the lease holder deletes, and only what is durably
			// recorded.
			if err := l.BeforeAction(ctx, imapconf.AfterDelete); err != nil {
				return err
			}
		}
		if err := conn.DeleMany(ctx, nums); err != nil {
			return fmt.Errorf("after-processing (delete): %w", err)
		}
		marked += len(nums)
		return nil
	}
	var read []Entry
	var owed []int
	num := map[string]int{}
	for _, e := range entries {
		switch {
		case !known[e.UIDL]:
			read = append(read, e)
			num[e.UIDL] = e.Num
		case del:
			owed = append(owed, e.Num)
		}
	}
	if len(owed) > 0 {
		s.log.Info("deleting messages recorded earlier", "messages", len(owed))
		if err := dele(owed); err != nil {
			return err
		}
	}

	p, err := l.Pipeline(ctx, source.PipelineOptions{Total: len(read)})
	if err != nil {
		return err
	}
	defer p.Close()
	// Each batch is marked for deletion once it is committed.
	deleCommitted := func() error {
		if !del {
			return nil
		}
		var nums []int
		for _, m := range p.Committed() {
			nums = append(nums, num[m.ID])
		}
		return dele(nums)
	}
	// The sizes: one LIST for all when there are several (LIST n is a
	// round trip for each).
	todo := make([]Sized, len(read))
	uidl := make(map[int]string, len(read))
	var sizes map[int]int64
	if len(read) > 1 {
		if sizes, err = conn.Sizes(ctx); err != nil {
			return fmt.Errorf("reading new mail: %w", err)
		}
	}
	for i, e := range read {
		size, ok := sizes[e.Num]
		if !ok {
			if size, err = conn.Size(ctx, e.Num); err != nil {
				return fmt.Errorf("reading new mail: %w", err)
			}
		}
		todo[i] = Sized{Num: e.Num, Size: size}
		uidl[e.Num] = e.UIDL
	}
	var stopped error // why the pipeline or the deletes stopped the reading
	err = conn.RetrMany(ctx, todo, s.o.SizeCap, s.o.Spool, func(m Message) error {
		// p owns m.Spool from here, also when Add fails.
		if err := p.Add(source.Message{ID: uidl[m.Num], Raw: m.Raw, Spool: m.Spool, Size: m.Size, TooLarge: m.TooLarge}); err != nil {
			stopped = fmt.Errorf("reading new mail: %w", err)
			return stopped
		}
		if err := deleCommitted(); err != nil {
			stopped = err
			return err
		}
		return nil
	})
	if stopped != nil {
		return stopped
	}
	if err != nil {
		return fmt.Errorf("reading new mail: %w", err)
	}
	if err := p.Flush(nil); err != nil {
		return fmt.Errorf("reading new mail: %w", err)
	}
	if err := deleCommitted(); err != nil {
		return err
	}
	// QUIT only now, every message marked being committed: the server
	// removes the marked messages on QUIT.
	if err := conn.Quit(ctx); err != nil && marked > 0 {
		return fmt.Errorf("after-processing (delete): %w", err)
	}
	return nil
}
