package imapsource

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/spool"
)

const (
	// fetchBatch is how many messages one UID FETCH of their sizes and
	// flags asks for. Between two such fetches the body fetches sent
	// ahead (fetchRuns) run dry: about two round trips lost per batch,
	// 20 for a 10,000-message backlog (it was 200 until session 14).
	fetchBatch = 1000
	// minRunBytes is the least number of bytes of whole messages one body
	// fetch may hold; at most max(sizeCap, minRunBytes) are held at once.
	//
	// Each command is a round trip during which the server sends nothing:
	// on a busy machine one took about 12 ms, mostly waiting for the
	// server's process to be scheduled. With 50 and 1 MiB, reading the
	// bench's 10,000-message backlog (408 MB) took 600 commands and about
	// 11 s; with 200 and 4 MiB, 150 commands and about 7 s
	// (docs/benchmarks.md, session 9).
	minRunBytes = 4 << 20
	// minRate is the transfer rate below which reading a message body
	// times out: body fetches get CommandTimeout plus size/minRate.
	minRate = 64 << 10
)

// Mailbox is what selecting a folder reports.
type Mailbox struct {
	// UIDValidity changes when the folder is recreated: UIDs of the old
	// folder then mean nothing.
	UIDValidity uint32
	// UIDNext is the UID the next message will get, at least; 0 if the
	// server did not say (RFC 2060 servers).
	UIDNext uint32
	// Messages is the number of messages in the folder.
	Messages uint32
}

// Message is one message read from the folder.
type Message struct {
	UID uint32
	// Flags are the message's flags when it was read, such as \Seen
	// (without the session flag \Recent).
	Flags []string
	// Size is the size the server reports (RFC822.SIZE).
	Size int64
	// InternalDate is when the server received the message.
	InternalDate time.Time
	// Raw is the whole message as the server has it or, when TooLarge,
	// only its header section (with the blank line that ends it); nil
	// when the message is in Spool.
	Raw []byte
	// Spool holds the whole message instead of Raw when it was read into
	// a spool file (FetchSpooled); fn closes it, or hands it on.
	Spool *spool.File
	// TooLarge reports that the message is bigger than the size cap, and
	// so Raw holds only its header.
	TooLarge bool
}

// Select opens folder read-write ("" means INBOX) for the other methods.
func (c *Conn) Select(ctx context.Context, folder string) (Mailbox, error) {
	return c.selectFolder(ctx, folder, false)
}

// Examine opens folder read-only ("" means INBOX): fetching works, Apply
// does not. Test uses it, so that testing changes nothing.
func (c *Conn) Examine(ctx context.Context, folder string) (Mailbox, error) {
	return c.selectFolder(ctx, folder, true)
}

func (c *Conn) selectFolder(ctx context.Context, folder string, readOnly bool) (Mailbox, error) {
	if folder == "" {
		folder = imapconf.DefaultFolder
	}
	var data *imap.SelectData
	err := c.do(ctx, StepSelect, func() error {
		var err error
		data, err = c.client.Select(folder, &imap.SelectOptions{ReadOnly: readOnly}).Wait()
		if err != nil {
			return fmt.Errorf("folder %q: %w", folder, err)
		}
		return nil
	})
	if err != nil {
		return Mailbox{}, err
	}
	c.uidNext = uint32(data.UIDNext)
	c.log.Debug("imap selected", "folder", folder, "messages", data.NumMessages,
		"uidValidity", data.UIDValidity, "uidNext", data.UIDNext)
	return Mailbox{
		UIDValidity: data.UIDValidity,
		UIDNext:     uint32(data.UIDNext),
		Messages:    data.NumMessages,
	}, nil
}

// FetchAfter reads the messages of the selected folder with a UID above
// afterUID and calls fn for each, in ascending UID order, stopping at and
// returning fn's first error.
//
// A message of at most sizeCap bytes (<= 0 means DefaultSizeCap) comes
// whole; of a bigger one only the header is read, and TooLarge is set, so
// a message's body never sits in memory above the cap. At most
// max(sizeCap, 4 MiB) of whole messages is held at a time. A message that
// disappears while being read (expunged by another client) is skipped.
//
// fn may use the Conn (for example to Apply), but it is called after the
// fetch that read its message has completed, not as bytes arrive.
func (c *Conn) FetchAfter(ctx context.Context, afterUID uint32, sizeCap int64, fn func(Message) error) error {
	uids, err := c.SearchAfter(ctx, afterUID)
	if err != nil {
		return err
	}
	return c.FetchUIDs(ctx, uids, sizeCap, fn)
}

// SearchAfter returns the UIDs above afterUID in the selected folder,
// ascending: what FetchAfter would read.
func (c *Conn) SearchAfter(ctx context.Context, afterUID uint32) ([]uint32, error) {
	if afterUID == math.MaxUint32 {
		return nil, nil
	}
	uids, err := c.searchUIDs(ctx, &imap.SearchCriteria{
		UID: []imap.UIDSet{{imap.UIDRange{Start: imap.UID(afterUID + 1), Stop: 0}}},
	})
	if err != nil {
		return nil, err
	}
	// "n:*" means "*:n" when n is above every UID: the search then returns
	// the highest UID, already read.
	return slices.DeleteFunc(uids, func(uid uint32) bool { return uid <= afterUID }), nil
}

// SearchUnseen returns the UIDs of the messages without \Seen in the
// selected folder, ascending: the backlog of the "unseen" mode.
func (c *Conn) SearchUnseen(ctx context.Context) ([]uint32, error) {
	return c.searchUIDs(ctx, &imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}})
}

// HighestUID returns a UID at least as high as that of every message in the
// selected folder, 0 if it is empty: the checkpoint of the "new" backlog
// mode, which skips what is there already. It is the highest UID in use
// (UID SEARCH RETURN (MAX) ALL) where the server has ESEARCH, else UIDNEXT-1
// as the last Select reported it, else the highest UID of UID SEARCH ALL.
func (c *Conn) HighestUID(ctx context.Context) (uint32, error) {
	if !c.caps.Has(imap.CapESearch) && c.uidNext > 0 {
		return c.uidNext - 1, nil
	}
	var highest uint32
	err := c.do(ctx, StepSearch, func() error {
		// Not FETCH * (UID): imapclient matches a FETCH response to its
		// command by number, no number matches "*", and the response is
		// dropped. Nor FETCH n (UID) with n the count of
		// imapclient's Mailbox(): it is set only after Select's Wait
		// has returned.
		var options *imap.SearchOptions
		if c.caps.Has(imap.CapESearch) {
			options = &imap.SearchOptions{ReturnMax: true}
		}
		data, err := c.client.UIDSearch(&imap.SearchCriteria{}, options).Wait()
		if err != nil {
			return err
		}
		highest = data.Max
		if set, ok := data.All.(imap.UIDSet); ok {
			uids, ok := set.Nums()
			if !ok {
				return fmt.Errorf("server answered with a dynamic UID set %v", set)
			}
			for _, uid := range uids {
				highest = max(highest, uint32(uid))
			}
		}
		return nil
	})
	return highest, err
}

// searchUIDs runs UID SEARCH and returns the UIDs ascending.
func (c *Conn) searchUIDs(ctx context.Context, criteria *imap.SearchCriteria) ([]uint32, error) {
	var uids []uint32
	err := c.do(ctx, StepSearch, func() error {
		data, err := c.client.UIDSearch(criteria, nil).Wait()
		if err != nil {
			return err
		}
		// Not data.AllUIDs: it panics on a "*" a broken server sends.
		set, _ := data.All.(imap.UIDSet)
		all, ok := set.Nums()
		if !ok {
			return fmt.Errorf("server answered with a dynamic UID set %v", set)
		}
		uids = make([]uint32, len(all))
		for i, uid := range all {
			uids[i] = uint32(uid)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(uids)
	return slices.Compact(uids), nil
}

// FetchUIDs reads the messages with the given UIDs from the selected
// folder and calls fn for each, as FetchAfter does. UIDs that do not exist
// (any more) are skipped; uids need not be sorted.
func (c *Conn) FetchUIDs(ctx context.Context, uids []uint32, sizeCap int64, fn func(Message) error) error {
	return c.fetch(ctx, uids, sizeCap, nil, false, fn)
}

// FetchSpooled is FetchUIDs with the messages above sp's threshold (and
// at most sizeCap) read from the connection in chunks into a spool file
// (Message.Spool) instead of memory; fn owns the file. Each such message
// is fetched by a command of its own, and the messages read into memory
// by one command are together at most max(threshold, 4 MiB), so that
// twice that much is held at a time whatever the size cap (the run handed
// over and the next, read meanwhile). A nil sp reads every message into
// memory.
//
// Unlike FetchUIDs's, fn must not use the Conn: the fetch of the messages
// after fn's is on its way while fn runs (see fetchRuns).
func (c *Conn) FetchSpooled(ctx context.Context, uids []uint32, sizeCap int64, sp *spool.Spooler, fn func(Message) error) error {
	return c.fetch(ctx, uids, sizeCap, sp, true, fn)
}

// fetch is FetchSpooled, sending each run's fetch ahead when ahead is set.
func (c *Conn) fetch(ctx context.Context, uids []uint32, sizeCap int64, sp *spool.Spooler, ahead bool, fn func(Message) error) error {
	if sizeCap <= 0 {
		sizeCap = DefaultSizeCap
	}
	uids = slices.Clone(uids)
	uids = slices.DeleteFunc(uids, func(uid uint32) bool { return uid == 0 })
	slices.Sort(uids)
	uids = slices.Compact(uids)
	for batch := range slices.Chunk(uids, fetchBatch) {
		metas, err := c.fetchMeta(ctx, batch)
		if err != nil {
			return err
		}
		if err := c.fetchRuns(ctx, slices.Collect(runs(metas, sizeCap, sp)), sizeCap, sp, ahead, fn); err != nil {
			return err
		}
	}
	return nil
}

// fetchRuns fetches the bodies of runs and hands each message to fn, in
// order. With ahead, the fetch of the next run is sent, and read by a
// goroutine of its own, while a run is read and handed over, so that the
// server always has one to answer: fetching one run at a time waits a
// round trip for each (with the server 100 ms away, 3,000 messages took
// 7.2 s instead of 3.9; docs/benchmarks.md, session 14). Each fetch has its
// reader because the server may interleave the answers of two commands
// (Dovecot does, with a message streamed to a spool file). So two runs
// may be in memory at once, 2 × max(threshold, 4 MiB); a spooled message
// is not read ahead, nor beside one. A run that needs a second fetch (see
// fetchMeta) takes it once the run read ahead is read.
func (c *Conn) fetchRuns(ctx context.Context, runs [][]meta, sizeCap int64, sp *spool.Spooler, ahead bool, fn func(Message) error) error {
	var next *reading
	defer func() { next.drop() }()
	for i, run := range runs {
		cur := next
		next = nil
		if cur == nil {
			cur = c.startRun(ctx, run, sizeCap, sp)
		}
		if ahead && i+1 < len(runs) && !spooled(run[0], sizeCap, sp) && !spooled(runs[i+1][0], sizeCap, sp) {
			next = c.startRun(ctx, runs[i+1], sizeCap, sp)
		}
		<-cur.done
		if cur.err != nil {
			return cur.err
		}
		if len(cur.missing) > 0 {
			if next != nil {
				<-next.done // then no other command is waiting for its answer
			}
			if err := c.finishRun(ctx, cur.f, cur.got, cur.missing, sizeCap, sp); err != nil {
				cur.got.close()
				return err
			}
		}
		if err := c.handOver(cur.f, cur.got, fn); err != nil {
			return err
		}
	}
	return nil
}

// reading is a run's fetch, sent, and read by a goroutine of its own.
type reading struct {
	f       *bodyFetch
	done    chan struct{} // closed once read: then the fields below are set
	got     *fetched
	missing []uint32
	err     error
}

// startRun sends run's fetch and reads the answer on a goroutine.
func (c *Conn) startRun(ctx context.Context, run []meta, sizeCap int64, sp *spool.Spooler) *reading {
	r := &reading{done: make(chan struct{})}
	f, err := c.sendRun(ctx, run, sizeCap)
	if err != nil {
		r.err = err
		close(r.done)
		return r
	}
	r.f = f
	go func() {
		defer close(r.done)
		r.got, r.missing, r.err = c.readRun(ctx, f, sizeCap, sp)
	}()
	return r
}

// drop waits until r (if any) is read and closes the spool files it read.
func (r *reading) drop() {
	if r == nil {
		return
	}
	<-r.done
	if r.got != nil {
		r.got.close()
	}
}

// meta is what the first fetch tells of a message.
type meta struct {
	uid     uint32
	flags   []string
	size    int64
	date    time.Time
	hasSize bool
	hasDate bool
}

// fetchMeta fetches UID, FLAGS, RFC822.SIZE and INTERNALDATE of uids and
// returns what it got, by ascending UID; missing UIDs were expunged.
//
// imapclient hands a FETCH response to the pending UID FETCH whose set
// holds the response's UID, and drops any later response for that UID. An
// unsolicited FETCH (FLAGS) of another client's change, arriving first,
// would thus take the place of the real one: such incomplete messages are
// fetched once more.
func (c *Conn) fetchMeta(ctx context.Context, uids []uint32) ([]meta, error) {
	got := map[uint32]meta{}
	want := uids
	for attempt := 0; attempt < 2 && len(want) > 0; attempt++ {
		err := c.do(ctx, StepFetch, func() error {
			cmd := c.client.Fetch(uidSet(want), &imap.FetchOptions{
				UID: true, Flags: true, RFC822Size: true, InternalDate: true,
			})
			defer cmd.Close()
			for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
				var m meta
				for item := msg.Next(); item != nil; item = msg.Next() {
					switch item := item.(type) {
					case imapclient.FetchItemDataUID:
						m.uid = uint32(item.UID)
					case imapclient.FetchItemDataFlags:
						m.flags = []string{}
						for _, f := range item.Flags {
							// \Recent is of this session, not the message.
							if !strings.EqualFold(string(f), `\Recent`) {
								m.flags = append(m.flags, string(f))
							}
						}
					case imapclient.FetchItemDataRFC822Size:
						m.size, m.hasSize = item.Size, true
					case imapclient.FetchItemDataInternalDate:
						m.date, m.hasDate = item.Time, true
					}
				}
				if m.uid != 0 && m.hasSize && m.hasDate {
					got[m.uid] = m
				}
			}
			return cmd.Close()
		})
		if err != nil {
			return nil, err
		}
		want = slices.DeleteFunc(slices.Clone(want), func(uid uint32) bool { _, ok := got[uid]; return ok })
	}
	if err := c.confirmGone(ctx, want); err != nil {
		return nil, err
	}
	metas := make([]meta, 0, len(got))
	for _, m := range got {
		metas = append(metas, m)
	}
	slices.SortFunc(metas, func(a, b meta) int { return cmp.Compare(a.uid, b.uid) })
	return metas, nil
}

// spooled reports whether m is read into a spool file: a whole message
// above sp's threshold.
func spooled(m meta, sizeCap int64, sp *spool.Spooler) bool {
	return sp != nil && m.size <= sizeCap && sp.Big(m.size)
}

// runs splits metas, ascending by UID, into consecutive runs fetched by one
// command each: runs of messages read whole into memory, together at most
// max(sizeCap, minRunBytes) bytes (max(sp's threshold, minRunBytes) with a
// spooler), runs of too large messages, of which only headers are read,
// and, with a spooler, each message it spools in a run of its own.
func runs(metas []meta, sizeCap int64, sp *spool.Spooler) func(yield func([]meta) bool) {
	budget := max(sizeCap, minRunBytes)
	if sp != nil {
		budget = max(min(sp.MaxInMemory(), sizeCap), minRunBytes)
	}
	return func(yield func([]meta) bool) {
		start, bytes := 0, int64(0)
		for i, m := range metas {
			if i > start {
				prevLarge := metas[start].size > sizeCap
				large := m.size > sizeCap
				if large != prevLarge || spooled(m, sizeCap, sp) || spooled(metas[start], sizeCap, sp) || (!large && bytes+m.size > budget) {
					if !yield(metas[start:i]) {
						return
					}
					start, bytes = i, 0
				}
			}
			if m.size <= sizeCap {
				bytes += m.size
			}
		}
		if start < len(metas) {
			yield(metas[start:])
		}
	}
}

// taken is a message's body as read: in memory, or in a spool file.
type taken struct {
	raw   []byte
	spool *spool.File
}

// bodyFetch is one run's fetch of its bodies (or headers), whose first
// UID FETCH may be sent before the run before it is read (fetchRuns).
type bodyFetch struct {
	run     []meta
	large   bool // the run's messages are over the size cap: headers only
	section *imap.FetchItemBodySection
	extra   time.Duration // the read's allowance beyond the command timeout
	cmd     *imapclient.FetchCommand
}

// sendRun sends the first UID FETCH of run's bodies (headers for messages
// over sizeCap).
func (c *Conn) sendRun(ctx context.Context, run []meta, sizeCap int64) (*bodyFetch, error) {
	f := &bodyFetch{run: run, large: run[0].size > sizeCap, section: &imap.FetchItemBodySection{Peek: true}}
	var total int64
	if f.large {
		f.section.Specifier = imap.PartSpecifierHeader
	} else {
		for _, m := range run {
			total += m.size
		}
	}
	f.extra = time.Duration(total/minRate) * time.Second
	err := c.do(ctx, StepFetch, func() error {
		f.cmd = c.client.Fetch(uidSet(f.uids()), &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{f.section}})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return f, nil
}

// uids are the UIDs of f's run.
func (f *bodyFetch) uids() []uint32 {
	uids := make([]uint32, len(f.run))
	for i, m := range f.run {
		uids[i] = m.uid
	}
	return uids
}

// fetched is what readRun read of a run: the bodies by UID, and the UIDs
// whose body was larger than RFC822.SIZE said (truncated at sizeCap).
type fetched struct {
	raws      map[uint32]taken
	truncated map[uint32]bool
}

// close closes the spool files of f's bodies not handed over.
func (f *fetched) close() {
	for _, t := range f.raws {
		if t.spool != nil {
			_ = t.spool.Close()
		}
	}
}

// readRun reads the answer to f's command, the run's first fetch, and
// returns what came and the UIDs that did not.
func (c *Conn) readRun(ctx context.Context, f *bodyFetch, sizeCap int64, sp *spool.Spooler) (*fetched, []uint32, error) {
	got := &fetched{raws: map[uint32]taken{}, truncated: map[uint32]bool{}}
	if err := c.readBodies(ctx, f, f.uids(), got, sizeCap, sp); err != nil {
		got.close()
		return nil, nil, err
	}
	return got, f.missing(got), nil
}

// finishRun fetches once more the messages of f's run that the first fetch
// did not return (want; see fetchMeta), then takes those still missing as
// expunged once UID SEARCH confirms it. No other command may be waiting
// for its answer.
func (c *Conn) finishRun(ctx context.Context, f *bodyFetch, got *fetched, want []uint32, sizeCap int64, sp *spool.Spooler) error {
	if err := c.readBodies(ctx, f, want, got, sizeCap, sp); err != nil {
		return err
	}
	return c.confirmGone(ctx, f.missing(got))
}

// size is the size the server gave for uid of f's run (0 if not there).
func (f *bodyFetch) size(uid uint32) int64 {
	i, ok := slices.BinarySearchFunc(f.run, uid, func(m meta, uid uint32) int { return cmp.Compare(m.uid, uid) })
	if !ok {
		return 0
	}
	return f.run[i].size
}

// missing are the UIDs of f's run that got has no body for.
func (f *bodyFetch) missing(got *fetched) []uint32 {
	return slices.DeleteFunc(f.uids(), func(uid uint32) bool { _, ok := got.raws[uid]; return ok })
}

// readBodies reads into got the answer to f's command, or, once that is
// read, to a new fetch of want. A spool file not kept (a message fetched
// twice) is closed.
func (c *Conn) readBodies(ctx context.Context, f *bodyFetch, want []uint32, got *fetched, sizeCap int64, sp *spool.Spooler) error {
	cmd := f.cmd
	f.cmd = nil
	return c.doFor(ctx, StepFetch, f.extra, func() error {
		if cmd == nil {
			cmd = c.client.Fetch(uidSet(want), &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{f.section}})
		}
		defer cmd.Close()
		for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
			var uid uint32
			var body taken
			var tooBig, hasBody bool
			for item := msg.Next(); item != nil; item = msg.Next() {
				switch item := item.(type) {
				case imapclient.FetchItemDataUID:
					uid = uint32(item.UID)
				case imapclient.FetchItemDataBodySection:
					if !item.MatchCommand(f.section) {
						continue
					}
					if body.spool != nil {
						_ = body.spool.Close()
					}
					var err error
					body.raw, body.spool, tooBig, err = readLiteral(item.Literal, sizeCap, sp)
					if err != nil {
						return fmt.Errorf("reading uid %d: %w", uid, err)
					}
					hasBody = true
				}
			}
			// No bytes for a whole message that had a size: Dovecot
			// answers so for a message another client expunged since
			// (RFC 2180, 4.1.3), which is then looked for again as not
			// returned, and not recorded as an empty message. (A header
			// alone may be empty.)
			if uid == 0 || !hasBody || (!f.large && len(body.raw) == 0 && body.spool == nil && f.size(uid) > 0) {
				if body.spool != nil {
					_ = body.spool.Close()
				}
				continue
			}
			if old := got.raws[uid]; old.spool != nil {
				_ = old.spool.Close()
			}
			got.raws[uid] = body
			if tooBig {
				got.truncated[uid] = true
			}
		}
		return cmd.Close()
	})
}

// handOver calls fn for each message of f's run that got read, in order;
// the spool files of those it did not get to are closed.
func (c *Conn) handOver(f *bodyFetch, got *fetched, fn func(Message) error) error {
	defer got.close()
	for _, m := range f.run {
		body, ok := got.raws[m.uid]
		if !ok {
			c.log.Debug("imap message gone while fetching", "uid", m.uid)
			continue
		}
		delete(got.raws, m.uid) // let fn's caller be the only holder
		tooLarge := f.large
		if got.truncated[m.uid] {
			// The body was bigger than RFC822.SIZE said: keep its header.
			body.raw = headerOf(body.raw)
			tooLarge = true
		}
		err := fn(Message{
			UID:          m.uid,
			Flags:        m.flags,
			Size:         m.size,
			InternalDate: m.date,
			Raw:          body.raw,
			Spool:        body.spool,
			TooLarge:     tooLarge,
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// confirmGone checks that the messages uids, which two fetches did not
// return, were expunged: skipping them is then right. A message the server
// still lists fails the fetch instead (the caller reconnects and reads from
// its checkpoint again), so that a response lost on the way never makes the
// checkpoint pass a message that was not recorded.
func (c *Conn) confirmGone(ctx context.Context, uids []uint32) error {
	if len(uids) == 0 {
		return nil
	}
	there, err := c.searchUIDs(ctx, &imap.SearchCriteria{UID: []imap.UIDSet{uidSet(uids)}})
	if err != nil {
		return err
	}
	if len(there) > 0 {
		return &StepError{Step: StepFetch, Err: fmt.Errorf("the server did not return uid(s) %v it still lists", there)}
	}
	c.log.Debug("imap messages gone while fetching", "uids", uids)
	return nil
}

// inMemory is the spooler of a fetch without one: it never spools.
var inMemory = &spool.Spooler{Threshold: math.MaxInt64}

// readLiteral reads a literal of at most limit bytes, into memory, or into
// a spool file when sp (nil: never) spools its size; of a longer one it
// keeps the start (see spool.Spooler.Take: the first limit bytes, or only
// the header when limit is above sp's threshold), discards the rest and
// reports truncated. A nil literal (the server sent NIL) reads as empty.
func readLiteral(lit imap.LiteralReader, limit int64, sp *spool.Spooler) (raw []byte, big *spool.File, truncated bool, err error) {
	if lit == nil {
		return []byte{}, nil, false, nil
	}
	if sp == nil {
		sp = inMemory
	}
	return sp.Take(lit, lit.Size(), limit)
}

// headerOf returns the header section of the start of a message: up to and
// including the first empty line, or all of it if it has none.
func headerOf(raw []byte) []byte {
	end := len(raw)
	for _, sep := range []string{"\r\n\r\n", "\n\n"} {
		if i := bytes.Index(raw, []byte(sep)); i >= 0 {
			end = min(end, i+len(sep))
		}
	}
	return raw[:end]
}

// uidSet returns the set of uids, compressed into ranges.
func uidSet(uids []uint32) imap.UIDSet {
	var set imap.UIDSet
	for _, uid := range uids {
		set.AddNum(imap.UID(uid))
	}
	return set
}
