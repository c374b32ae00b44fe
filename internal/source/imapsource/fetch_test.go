package imapsource

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/source/sourcetest"
	"mailtrigger/internal/spool"
	"mailtrigger/internal/testenv"
)

func TestFetch(t *testing.T) {
	t.Parallel()
	d := testenv.StartDovecot(t)
	cfg := newUser(t, d, "fetch")
	began := time.Now().Add(-time.Minute)
	raws := [][]byte{sourcetest.NewMessage(1, 50), sourcetest.NewMessage(2, 5000), sourcetest.NewMessage(3, 300)}
	uids := appendMessages(t, d, cfg.Username, "INBOX", raws...)
	d.Doveadm(t, "flags", "add", "-u", cfg.Username, `\Seen \Flagged`, "mailbox", "INBOX", "uid", "2")
	c := dialSelect(t, cfg, Options{})

	t.Run("FetchAfter(0) reads all", func(t *testing.T) {
		msgs := collect(t, func(fn func(Message) error) error { return c.FetchAfter(testCtx(t), 0, 0, fn) })
		if got := uidsOf(msgs); !slices.Equal(got, uids) {
			t.Fatalf("got UIDs %v, want %v", got, uids)
		}
		for i, m := range msgs {
			want := crlf(raws[i])
			if !bytes.Equal(m.Raw, want) {
				t.Errorf("uid %d: got raw %.60q (%d bytes), want %.60q (%d bytes)", m.UID, m.Raw, len(m.Raw), want, len(want))
			}
			if m.Size != int64(len(want)) {
				t.Errorf("uid %d: got size %d, want %d", m.UID, m.Size, len(want))
			}
			if m.TooLarge {
				t.Errorf("uid %d: got TooLarge, want the whole message", m.UID)
			}
			if m.InternalDate.Before(began) || m.InternalDate.After(time.Now().Add(time.Minute)) {
				t.Errorf("uid %d: got internal date %v, want about now", m.UID, m.InternalDate)
			}
			wantFlags := []string{}
			if m.UID == uids[1] {
				wantFlags = []string{`\Flagged`, `\Seen`}
			}
			gotFlags := slices.Sorted(slices.Values(m.Flags))
			if !slices.Equal(gotFlags, wantFlags) {
				t.Errorf("uid %d: got flags %v, want %v", m.UID, gotFlags, wantFlags)
			}
		}
		// Reading did not mark anything seen (BODY.PEEK).
		state := serverState(t, d, cfg.Username, "INBOX")
		for _, uid := range []uint32{uids[0], uids[2]} {
			if slices.Contains(state[uid], `\Seen`) {
				t.Errorf("uid %d: got flags %v after fetching, want no \\Seen", uid, state[uid])
			}
		}
	})

	tests := []struct {
		name  string
		after uint32
		want  []uint32
	}{
		{"after the first", uids[0], uids[1:]},
		{"after the second", uids[1], uids[2:]},
		// "n:*" with n above every UID returns the last message: filtered.
		{"after the last", uids[2], []uint32{}},
		{"far after the last", uids[2] + 1000, []uint32{}},
		{"after the highest possible UID", 1<<32 - 1, []uint32{}},
	}
	for _, tt := range tests {
		t.Run("FetchAfter "+tt.name, func(t *testing.T) {
			msgs := collect(t, func(fn func(Message) error) error { return c.FetchAfter(testCtx(t), tt.after, 0, fn) })
			if got := uidsOf(msgs); !slices.Equal(got, tt.want) {
				t.Errorf("got UIDs %v, want %v", got, tt.want)
			}
		})
	}

	uidTests := []struct {
		name string
		uids []uint32
		want []uint32
	}{
		{"unsorted with duplicates", []uint32{uids[2], uids[0], uids[2]}, []uint32{uids[0], uids[2]}},
		{"missing UIDs skipped", []uint32{0, uids[1], 9999}, []uint32{uids[1]}},
		{"none", nil, []uint32{}},
	}
	for _, tt := range uidTests {
		t.Run("FetchUIDs "+tt.name, func(t *testing.T) {
			msgs := collect(t, func(fn func(Message) error) error { return c.FetchUIDs(testCtx(t), tt.uids, 0, fn) })
			if got := uidsOf(msgs); !slices.Equal(got, tt.want) {
				t.Errorf("got UIDs %v, want %v", got, tt.want)
			}
		})
	}

	// A message two fetches did not return is skipped only when the server
	// no longer lists it: one still there fails the fetch, so that the
	// checkpoint never passes a message not recorded.
	t.Run("not returned but still listed fails", func(t *testing.T) {
		if err := c.confirmGone(testCtx(t), []uint32{9998, 9999}); err != nil {
			t.Errorf("UIDs that do not exist: %v", err)
		}
		err := c.confirmGone(testCtx(t), []uint32{uids[1], 9999})
		if err == nil || !strings.Contains(err.Error(), fmt.Sprint(uids[1])) {
			t.Errorf("a UID the server still lists: got %v, want an error naming it", err)
		}
	})

	t.Run("fn error stops", func(t *testing.T) {
		errStop := errors.New("stop")
		var calls int
		err := c.FetchAfter(testCtx(t), 0, 0, func(Message) error {
			calls++
			return errStop
		})
		if !errors.Is(err, errStop) {
			t.Errorf("got %v, want %v", err, errStop)
		}
		if calls != 1 {
			t.Errorf("got %d calls, want 1", calls)
		}
		// The connection is still usable.
		if err := c.Noop(testCtx(t)); err != nil {
			t.Errorf("noop after a stopped fetch: got %v, want nil", err)
		}
	})

	t.Run("fn may use the connection", func(t *testing.T) {
		err := c.FetchAfter(testCtx(t), 0, 0, func(Message) error { return c.Noop(testCtx(t)) })
		if err != nil {
			t.Errorf("got %v, want nil", err)
		}
	})

	t.Run("SearchUnseen", func(t *testing.T) {
		got, err := c.SearchUnseen(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		if want := []uint32{uids[0], uids[2]}; !slices.Equal(got, want) {
			t.Errorf("got %v, want %v", got, want)
		}
	})

	t.Run("HighestUID", func(t *testing.T) {
		ways := []struct {
			name        string
			withoutESRC bool
			noUIDNext   bool
		}{
			{"ESEARCH MAX", false, false},
			{"UIDNEXT", true, false},
			{"SEARCH ALL", true, true},
		}
		for _, way := range ways {
			c := dialSelect(t, cfg, Options{})
			if way.withoutESRC {
				delete(c.caps, imap.CapESearch)
			}
			if way.noUIDNext {
				c.uidNext = 0
			}
			got, err := c.HighestUID(testCtx(t))
			if err != nil {
				t.Fatal(err)
			}
			if got != uids[2] {
				t.Errorf("by %s: got %d, want %d", way.name, got, uids[2])
			}
		}
		mb, err := c.Select(testCtx(t), "INBOX")
		if err != nil {
			t.Fatal(err)
		}
		if mb.UIDNext != uids[2]+1 || mb.Messages != 3 {
			t.Errorf("got %+v, want UIDNext %d and 3 messages", mb, uids[2]+1)
		}
	})

	t.Run("empty folder", func(t *testing.T) {
		empty := newUser(t, d, "empty")
		c := dialSelect(t, empty, Options{})
		msgs := collect(t, func(fn func(Message) error) error { return c.FetchAfter(testCtx(t), 0, 0, fn) })
		if len(msgs) != 0 {
			t.Errorf("got %d messages, want none", len(msgs))
		}
		if got, err := c.HighestUID(testCtx(t)); err != nil || got != 0 {
			t.Errorf("got HighestUID %d, %v, want 0, nil", got, err)
		}
		delete(c.caps, imap.CapESearch)
		if got, err := c.HighestUID(testCtx(t)); err != nil || got != 0 {
			t.Errorf("by UIDNEXT: got HighestUID %d, %v, want 0, nil", got, err)
		}
		c.uidNext = 0
		if got, err := c.HighestUID(testCtx(t)); err != nil || got != 0 {
			t.Errorf("by SEARCH ALL: got HighestUID %d, %v, want 0, nil", got, err)
		}
		if got, err := c.SearchUnseen(testCtx(t)); err != nil || len(got) != 0 {
			t.Errorf("got unseen %v, %v, want none", got, err)
		}
	})

	t.Run("batches", func(t *testing.T) {
		many := newUser(t, d, "many")
		n := 2*fetchBatch + 7
		raws := make([][]byte, n)
		for i := range raws {
			raws[i] = sourcetest.NewMessage(i, 200)
		}
		uids := appendMessages(t, d, many.Username, "INBOX", raws...)
		c := dialSelect(t, many, Options{})
		msgs := collect(t, func(fn func(Message) error) error { return c.FetchAfter(testCtx(t), uids[2], 0, fn) })
		if got := uidsOf(msgs); !slices.Equal(got, uids[3:]) {
			t.Fatalf("got UIDs %v, want %v", got, uids[3:])
		}
		for i, m := range msgs {
			if !bytes.Equal(m.Raw, crlf(raws[i+3])) {
				t.Errorf("uid %d: got another message's bytes", m.UID)
			}
		}
	})

	t.Run("UIDVALIDITY changes when the folder is recreated", func(t *testing.T) {
		u := newUser(t, d, "validity")
		u.Folder = "Work"
		appendMessages(t, d, u.Username, u.Folder, sourcetest.NewMessage(1, 10))
		c := dialSelect(t, u, Options{})
		before, err := c.Select(testCtx(t), u.Folder)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		d.Doveadm(t, "mailbox", "delete", "-u", u.Username, u.Folder)
		d.Doveadm(t, "mailbox", "create", "-u", u.Username, u.Folder)
		c = dialSelect(t, u, Options{})
		after, err := c.Select(testCtx(t), u.Folder)
		if err != nil {
			t.Fatal(err)
		}
		if after.UIDValidity == before.UIDValidity {
			t.Errorf("got UIDVALIDITY %d after recreating, want other than %d", after.UIDValidity, before.UIDValidity)
		}
		if after.Messages != 0 {
			t.Errorf("got %d messages, want 0", after.Messages)
		}
	})

	t.Run("connection cut during fetch", func(t *testing.T) {
		u := newUser(t, d, "cut")
		appendMessages(t, d, u.Username, "INBOX", sourcetest.NewMessage(1, 300<<10), sourcetest.NewMessage(2, 300<<10))
		var dialer countingDialer
		c := dialSelect(t, u, Options{Dial: dialer.Dial})
		dialer.cutAt.Store(dialer.read.Load() + 100<<10)
		var got int
		err := c.FetchAfter(testCtx(t), 0, 0, func(Message) error { got++; return nil })
		if !errors.Is(err, ErrClosed) {
			t.Errorf("got %v, want ErrClosed", err)
		}
		var se *StepError
		if !errors.As(err, &se) || se.Step != StepFetch {
			t.Errorf("got %v, want a fetch step error", err)
		}
		if got != 0 {
			t.Errorf("got %d messages delivered, want none of a cut fetch", got)
		}
		if err := c.Noop(testCtx(t)); !errors.Is(err, ErrClosed) {
			t.Errorf("noop after the cut: got %v, want ErrClosed", err)
		}
	})
}

// TestSizeCap runs alone (not parallel), so that the allocation count is
// this test's.
func TestSizeCap(t *testing.T) {
	d := testenv.StartDovecot(t)
	cfg := newUser(t, d, "big")
	const sizeCap = 1 << 20
	small := sourcetest.NewMessage(1, 600<<10)
	large := sourcetest.NewMessage(2, 3<<20)
	small2 := sourcetest.NewMessage(3, 10)
	uids := appendMessages(t, d, cfg.Username, "INBOX", small, large, small2)

	var dialer countingDialer
	c := dialSelect(t, cfg, Options{Dial: dialer.Dial})

	readBefore := dialer.read.Load()
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	allocBefore := ms.TotalAlloc
	msgs := collect(t, func(fn func(Message) error) error {
		return c.FetchUIDs(testCtx(t), uids[1:2], sizeCap, fn)
	})
	runtime.ReadMemStats(&ms)
	allocated := ms.TotalAlloc - allocBefore
	read := dialer.read.Load() - readBefore

	if len(msgs) != 1 {
		t.Fatalf("got %d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if !m.TooLarge {
		t.Errorf("got TooLarge false for a %d-byte message with a cap of %d, want true", m.Size, sizeCap)
	}
	if m.Size != int64(len(large)) {
		t.Errorf("got size %d, want %d", m.Size, len(large))
	}
	wantHeader := large[:bytes.Index(large, []byte("\r\n\r\n"))+4]
	if !bytes.Equal(m.Raw, wantHeader) {
		t.Errorf("got raw %q, want the header %q", m.Raw, wantHeader)
	}
	// The body was not transferred, nor held in memory.
	if read > 64<<10 {
		t.Errorf("got %d bytes read from the server, want a few KB (the message is %d bytes)", read, len(large))
	}
	if allocated > 1<<20 {
		t.Errorf("got %d bytes allocated, want well below the message's %d", allocated, len(large))
	}
	t.Logf("too large message: %d bytes read from the network, %d bytes allocated", read, allocated)

	// Mixed: order kept across runs of whole and header-only messages.
	msgs = collect(t, func(fn func(Message) error) error { return c.FetchAfter(testCtx(t), 0, sizeCap, fn) })
	if got := uidsOf(msgs); !slices.Equal(got, uids) {
		t.Fatalf("got UIDs %v, want %v", got, uids)
	}
	for i, want := range []struct {
		raw      []byte
		tooLarge bool
	}{{small, false}, {wantHeader, true}, {small2, false}} {
		if msgs[i].TooLarge != want.tooLarge || !bytes.Equal(msgs[i].Raw, want.raw) {
			t.Errorf("uid %d: got TooLarge %v and %d bytes, want %v and %d bytes",
				msgs[i].UID, msgs[i].TooLarge, len(msgs[i].Raw), want.tooLarge, len(want.raw))
		}
	}
}

func TestRuns(t *testing.T) {
	const sizeCap = 2 * minRunBytes // the budget, max(sizeCap, minRunBytes)
	m := func(uid uint32, size int64) meta { return meta{uid: uid, size: size} }
	tests := []struct {
		name  string
		metas []meta
		want  [][]uint32
	}{
		{"none", nil, nil},
		{"all small", []meta{m(1, 10), m(2, 10), m(3, 10)}, [][]uint32{{1, 2, 3}}},
		{"large splits", []meta{m(1, 10), m(2, sizeCap+1), m(3, sizeCap+1), m(4, 10)}, [][]uint32{{1}, {2, 3}, {4}}},
		{"budget splits", []meta{m(1, sizeCap/2), m(2, sizeCap/2), m(3, 1)}, [][]uint32{{1, 2}, {3}}},
		{"at the cap is small", []meta{m(1, sizeCap), m(2, 1)}, [][]uint32{{1}, {2}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got [][]uint32
			for run := range runs(tt.metas, sizeCap, nil) {
				var uids []uint32
				for _, m := range run {
					uids = append(uids, m.uid)
				}
				got = append(got, uids)
			}
			if !slices.EqualFunc(got, tt.want, slices.Equal) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// TestRunsSpooled: with a spooler, each message it spools is fetched alone,
// and the messages read into memory together are bounded by the threshold
// (minRunBytes at least), not by the size cap.
func TestRunsSpooled(t *testing.T) {
	const sizeCap = 50 << 20
	const threshold = 1 << 20
	sp := &spool.Spooler{Threshold: threshold}
	m := func(uid uint32, size int64) meta { return meta{uid: uid, size: size} }
	// The budget, minRunBytes, in messages at the threshold (kept in
	// memory) and one byte more.
	var budget []meta
	var first []uint32
	for i := range minRunBytes / threshold {
		budget = append(budget, m(uint32(i+1), threshold))
		first = append(first, uint32(i+1))
	}
	last := uint32(len(budget) + 1)
	budget = append(budget, m(last, 1))
	tests := []struct {
		name  string
		metas []meta
		want  [][]uint32
	}{
		{"all small", []meta{m(1, 10), m(2, 10), m(3, 10)}, [][]uint32{{1, 2, 3}}},
		{"big alone", []meta{m(1, 10), m(2, 5<<20), m(3, 5<<20), m(4, 10), m(5, 10)}, [][]uint32{{1}, {2}, {3}, {4, 5}}},
		{"memory budget", budget, [][]uint32{first, {last}}},
		{"over the cap together", []meta{m(1, 60<<20), m(2, 60<<20), m(3, 5<<20)}, [][]uint32{{1, 2}, {3}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got [][]uint32
			for run := range runs(tt.metas, sizeCap, sp) {
				var uids []uint32
				for _, m := range run {
					uids = append(uids, m.uid)
				}
				got = append(got, uids)
			}
			if !slices.EqualFunc(got, tt.want, slices.Equal) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

type literal struct {
	io.Reader
	size int64
}

func (l literal) Size() int64 { return l.size }

func TestReadLiteral(t *testing.T) {
	msg := "Subject: x\r\nFrom: y\r\n\r\nbody body body\r\n"
	tests := []struct {
		name          string
		limit         int64
		wantRaw       string
		wantTruncated bool
	}{
		{"below the limit", 1000, msg, false},
		{"at the limit", int64(len(msg)), msg, false},
		{"above the limit", 30, msg[:30], true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := strings.NewReader(msg)
			raw, big, truncated, err := readLiteral(literal{r, int64(len(msg))}, tt.limit, nil)
			if err != nil {
				t.Fatal(err)
			}
			if string(raw) != tt.wantRaw || truncated != tt.wantTruncated || big != nil {
				t.Errorf("got %q, %v, want %q, %v", raw, truncated, tt.wantRaw, tt.wantTruncated)
			}
			if r.Len() != 0 {
				t.Errorf("got %d bytes left unread, want the literal consumed", r.Len())
			}
		})
	}
}

func TestHeaderOf(t *testing.T) {
	tests := []struct{ in, want string }{
		{"A: 1\r\nB: 2\r\n\r\nbody\r\n\r\nmore", "A: 1\r\nB: 2\r\n\r\n"},
		{"A: 1\nB: 2\n\nbody", "A: 1\nB: 2\n\n"},
		{"A: 1\nB: 2\n\nbody\r\n\r\n", "A: 1\nB: 2\n\n"},
		{"A: 1\r\nB: 2 with no end", "A: 1\r\nB: 2 with no end"},
	}
	for _, tt := range tests {
		if got := string(headerOf([]byte(tt.in))); got != tt.want {
			t.Errorf("headerOf(%q): got %q, want %q", tt.in, got, tt.want)
		}
	}
}

// fetchTrace is a trace (see dial) that counts the body fetches the client
// sent, as the connection writes it: each command comes in one write.
type fetchTrace struct {
	mu      sync.Mutex
	fetches int
}

var bodyFetchRE = regexp.MustCompile(`(?m)^[^*\s]\S* UID FETCH [^\r\n]*BODY\.PEEK\[\]`)

func (f *fetchTrace) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte("BODY.PEEK[]")) {
		n := len(bodyFetchRE.FindAll(p, -1))
		f.mu.Lock()
		f.fetches += n
		f.mu.Unlock()
	}
	return len(p), nil
}

// bodyFetches counts the body fetches the client has sent so far.
func (f *fetchTrace) bodyFetches() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fetches
}

// traced starts a Dovecot with user name holding n messages of 1.5 MB
// (fetched under a 2 MB cap: runs of two, at most 4 MiB each), and returns
// a connection to it, selected, whose body fetches trace counts.
func traced(t *testing.T, name string, n int) (*testenv.Dovecot, imapconf.Config, [][]byte, []uint32, *Conn, *fetchTrace) {
	t.Helper()
	d := testenv.StartDovecot(t)
	cfg := newUser(t, d, name)
	raws := make([][]byte, n)
	for i := range raws {
		raws[i] = sourcetest.NewMessage(i, 1500<<10)
	}
	uids := appendMessages(t, d, cfg.Username, "INBOX", raws...)
	trace := &fetchTrace{}
	ctx := testCtx(t)
	c, err := dial(ctx, cfg, Options{}, trace)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if _, err := c.Select(ctx, cfg.Folder); err != nil {
		t.Fatal(err)
	}
	return d, cfg, raws, uids, c, trace
}

// TestFetchSendsAhead: FetchSpooled sends the next run's fetch before it
// reads a run, so that the server is never left waiting for a command
// while a backlog is read (a round trip saved per run, with the server
// across a network); FetchUIDs, whose fn may use the connection, sends one
// at a time.
func TestFetchSendsAhead(t *testing.T) {
	t.Parallel()
	// Three runs.
	_, _, raws, uids, c, trace := traced(t, "ahead", 6)
	ctx := testCtx(t)

	// sent[i] is how many body fetches had been sent when fn got message i.
	read := func(fetch func(fn func(Message) error) error) (sent []int) {
		t.Helper()
		before := trace.bodyFetches()
		var got []uint32
		err := fetch(func(m Message) error {
			if !bytes.Equal(m.Raw, crlf(raws[len(got)])) {
				t.Errorf("uid %d: got another message's bytes", m.UID)
			}
			got = append(got, m.UID)
			sent = append(sent, trace.bodyFetches()-before)
			return nil
		})
		if err != nil || !slices.Equal(got, uids) {
			t.Fatalf("got UIDs %v, %v; want %v", got, err, uids)
		}
		return sent
	}
	sent := read(func(fn func(Message) error) error { return c.FetchSpooled(ctx, uids, 2<<20, nil, fn) })
	if want := []int{2, 2, 3, 3, 3, 3}; !slices.Equal(sent, want) {
		t.Errorf("FetchSpooled: body fetches sent as each message was handed over: %v, want %v (one ahead)", sent, want)
	}
	sent = read(func(fn func(Message) error) error { return c.FetchUIDs(ctx, uids, 2<<20, fn) })
	if want := []int{1, 1, 2, 2, 3, 3}; !slices.Equal(sent, want) {
		t.Errorf("FetchUIDs: body fetches sent as each message was handed over: %v, want %v (one at a time)", sent, want)
	}
	if err := c.Noop(ctx); err != nil {
		t.Errorf("noop after the fetches: %v", err)
	}
}

// TestFetchSendsAheadExpunged: a message expunged by another client while
// a backlog is read, after its run's fetch was planned, is missing from
// that fetch while the next run's is on its way; once that one is read,
// the missing message is looked for again and confirmed gone: every other
// message comes once, in order.
func TestFetchSendsAheadExpunged(t *testing.T) {
	t.Parallel()
	d, cfg, raws, uids, c, trace := traced(t, "aheadgone", 8) // four runs
	ctx := testCtx(t)
	gone := uids[4] // the third run's first message
	var got []uint32
	err := c.FetchSpooled(ctx, uids, 2<<20, nil, func(m Message) error {
		if len(got) == 0 {
			// The second run's fetch is sent, the third's not yet.
			d.Doveadm(t, "expunge", "-u", cfg.Username, "mailbox", "INBOX", "uid", fmt.Sprint(gone))
		}
		i := slices.Index(uids, m.UID)
		if i < 0 || !bytes.Equal(m.Raw, crlf(raws[i])) {
			t.Errorf("uid %d: got another message's bytes: %d bytes, %.80q, tooLarge %v", m.UID, len(m.Raw), m.Raw, m.TooLarge)
		}
		got = append(got, m.UID)
		return nil
	})
	want := slices.DeleteFunc(slices.Clone(uids), func(u uint32) bool { return u == gone })
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("got UIDs %v, %v; want %v", got, err, want)
	}
	// Four runs, the third fetched twice.
	if n := trace.bodyFetches(); n != 5 {
		t.Errorf("%d body fetches sent, want 5", n)
	}
	if err := c.Noop(ctx); err != nil {
		t.Errorf("noop after the fetch: %v", err)
	}
}
