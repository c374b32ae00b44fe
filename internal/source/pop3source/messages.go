package pop3source

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"mailtrigger/internal/spool"
)

// Entry is one line of UIDL: a message's number in this session and its
// unique id, which stays the same across sessions.
type Entry struct {
	Num  int
	UIDL string
}

// Message is one message read with Retr.
type Message struct {
	// Num is the message's number in this session.
	Num int
	// Size is the size LIST reports.
	Size int64
	// Raw is the message exactly as the server sent it (with only the
	// dot-stuffing undone) or, when TooLarge, only its header section
	// (with the blank line that ends it); nil when the message is in
	// Spool.
	Raw []byte
	// Spool holds the whole message instead of Raw when it was read into
	// a spool file (RetrSpooled); the caller closes it.
	Spool *spool.File
	// TooLarge reports that the message is bigger than the size cap, and
	// so Raw holds only its header.
	TooLarge bool
}

// Stat returns the number of messages and their total size.
func (c *Conn) Stat(ctx context.Context) (count int, size int64, err error) {
	err = c.do(ctx, StepStat, 0, func() error {
		text, err := c.cmd("STAT", "STAT")
		if err != nil {
			return err
		}
		count, size, err = parseNumSize(text)
		if err != nil {
			return fmt.Errorf("STAT: %w", err)
		}
		return nil
	})
	return count, size, err
}

// UIDL returns every message's number and unique id, in the server's order.
// A server without UIDL fails with an error matching ErrNoUIDL.
func (c *Conn) UIDL(ctx context.Context) ([]Entry, error) {
	var entries []Entry
	err := c.do(ctx, StepUIDL, 0, func() error {
		if _, err := c.cmd("UIDL", "UIDL"); err != nil {
			var re *ResponseError
			if errors.As(err, &re) && (c.caps == nil || !hasCap(c.caps, "UIDL")) {
				return fmt.Errorf("%w: %w", ErrNoUIDL, err)
			}
			return err
		}
		seen := map[string]bool{}
		return c.readLines(maxListLines, func(line string) error {
			e, err := parseUIDL(line)
			if err != nil {
				return err
			}
			if seen[e.UIDL] {
				return fmt.Errorf("server gave two messages the unique id %q", e.UIDL)
			}
			seen[e.UIDL] = true
			entries = append(entries, e)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return entries, nil
}

func parseUIDL(line string) (Entry, error) {
	f := strings.Fields(line)
	if len(f) < 2 {
		return Entry{}, fmt.Errorf("invalid UIDL line %q", truncate(line))
	}
	n, err := strconv.Atoi(f[0])
	if err != nil || n < 1 {
		return Entry{}, fmt.Errorf("invalid message number in UIDL line %q", truncate(line))
	}
	uidl := f[1]
	if len(uidl) > maxUIDLLen {
		return Entry{}, fmt.Errorf("unique id longer than %d characters in UIDL line %q", maxUIDLLen, truncate(line))
	}
	for i := range len(uidl) {
		if uidl[i] < 0x21 || uidl[i] > 0x7e {
			return Entry{}, fmt.Errorf("invalid character in unique id in UIDL line %q", truncate(line))
		}
	}
	// A copy: the id alone is kept, not the line it is part of.
	return Entry{Num: n, UIDL: strings.Clone(uidl)}, nil
}

// parseNumSize parses "n size", the text of STAT and of LIST n.
func parseNumSize(text string) (int, int64, error) {
	f := strings.Fields(text)
	if len(f) < 2 {
		return 0, 0, fmt.Errorf("invalid response %q", truncate(text))
	}
	n, err1 := strconv.Atoi(f[0])
	size, err2 := strconv.ParseInt(f[1], 10, 64)
	if err1 != nil || err2 != nil || n < 0 || size < 0 {
		return 0, 0, fmt.Errorf("invalid response %q", truncate(text))
	}
	return n, size, nil
}

// Size returns the size of message n, as LIST n reports it.
func (c *Conn) Size(ctx context.Context, n int) (int64, error) {
	var size int64
	err := c.do(ctx, StepList, 0, func() error {
		var err error
		size, err = c.list(n)
		return err
	})
	return size, err
}

func (c *Conn) list(n int) (int64, error) {
	text, err := c.cmd("LIST", "LIST "+strconv.Itoa(n))
	if err != nil {
		return 0, err
	}
	num, size, err := parseNumSize(text)
	if err != nil {
		return 0, fmt.Errorf("LIST: %w", err)
	}
	if num != n {
		return 0, fmt.Errorf("LIST %d: server answered for message %d", n, num)
	}
	return size, nil
}

// Retr reads message n. When its size (as LIST reports it, or as it turns
// out while reading) is above sizeCap (zero means DefaultSizeCap), only its
// header section is kept, read with TOP n 0 where the server offers TOP,
// else by reading the whole message and discarding all but the header; the
// Message is then TooLarge. At most about sizeCap bytes are held.
func (c *Conn) Retr(ctx context.Context, n int, sizeCap int64) (Message, error) {
	return c.RetrSpooled(ctx, n, sizeCap, nil)
}

// RetrSpooled is Retr with a message whose size (as LIST reports it) is
// above sp's threshold, and at most sizeCap, streamed into a spool file
// (Message.Spool) as it comes, the dot-stuffing undone on the way, instead
// of memory; if it turns out bigger than sizeCap, its header is read back
// from the file, which is removed. A nil sp reads every message into
// memory. No spool file is left when it fails.
func (c *Conn) RetrSpooled(ctx context.Context, n int, sizeCap int64, sp *spool.Spooler) (Message, error) {
	size, err := c.Size(ctx, n)
	if err != nil {
		return Message{}, err
	}
	var m Message
	err = c.RetrMany(ctx, []Sized{{Num: n, Size: size}}, sizeCap, sp, func(got Message) error {
		m = got
		return nil
	})
	return m, err
}

// Sized is a message to read: its number and its size as LIST reports it.
type Sized struct {
	Num  int
	Size int64
}

// Sizes returns every message's size by its number, as LIST reports them:
// one command for all, where LIST n is a round trip for each.
func (c *Conn) Sizes(ctx context.Context) (map[int]int64, error) {
	sizes := map[int]int64{}
	err := c.do(ctx, StepList, 0, func() error {
		if _, err := c.cmd("LIST", "LIST"); err != nil {
			return err
		}
		return c.readLines(maxListLines, func(line string) error {
			n, size, err := parseNumSize(line)
			if err != nil {
				return fmt.Errorf("LIST: %w", err)
			}
			sizes[n] = size
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return sizes, nil
}

// Pipelining reports whether the server takes commands before it has
// answered the ones before (RFC 2449 PIPELINING).
func (c *Conn) Pipelining() bool { return hasCap(c.caps, "PIPELINING") }

// pipeBytes bounds the messages RetrMany reads into memory with one
// round trip: about that much is held at a time (messages it spools, which
// go to files, are not counted).
const pipeBytes = 4 << 20

// RetrMany reads msgs in order, each as RetrSpooled does with the size
// given, and calls fn for each; fn owns the message's spool file. Where the
// server offers PIPELINING, the commands for messages adding up to about
// pipeBytes in memory are sent together and their answers read in order:
// one round trip for them, where one at a time each message costs one (a
// mail server across a network is tens of milliseconds away). fn is called
// once a group is read, between groups no command is outstanding. A -ERR
// for one message ends it with that error, the messages before it handed
// to fn and the answers to the rest of its group read (so that the
// session stays in step).
func (c *Conn) RetrMany(ctx context.Context, msgs []Sized, sizeCap int64, sp *spool.Spooler, fn func(Message) error) error {
	if sizeCap <= 0 {
		sizeCap = DefaultSizeCap
	}
	for len(msgs) > 0 {
		n, held := 1, int64(0)
		if c.Pipelining() {
			for n = 0; n < len(msgs); n++ {
				s := msgs[n]
				if s.Size <= sizeCap && (sp == nil || !sp.Big(s.Size)) {
					if n > 0 && held+s.Size > pipeBytes {
						break
					}
					held += s.Size
				}
			}
		}
		got, err := c.retrGroup(ctx, msgs[:n], sizeCap, sp)
		for i, m := range got {
			if ferr := fn(m); ferr != nil {
				closeSpools(got[i+1:])
				return ferr
			}
		}
		if err != nil {
			return err
		}
		msgs = msgs[n:]
	}
	return nil
}

// closeSpools removes the spool files of msgs.
func closeSpools(msgs []Message) {
	for _, m := range msgs {
		if m.Spool != nil {
			_ = m.Spool.Close()
		}
	}
}

// retrGroup sends the commands reading group together and reads their
// answers in order. It returns the messages read before the first -ERR (or
// failure), with that error.
func (c *Conn) retrGroup(ctx context.Context, group []Sized, sizeCap int64, sp *spool.Spooler) ([]Message, error) {
	lines := make([]string, len(group))
	var extra time.Duration
	for i, s := range group {
		lines[i] = "RETR " + strconv.Itoa(s.Num)
		if s.Size > sizeCap && hasCap(c.caps, "TOP") {
			lines[i] = "TOP " + strconv.Itoa(s.Num) + " 0"
		} else {
			extra += time.Duration(s.Size/minRate) * time.Second
		}
	}
	var got []Message
	var refused error
	err := c.do(ctx, StepRetr, extra, func() error {
		for _, line := range lines {
			if err := c.tp.PrintfLine("%s", line); err != nil {
				return err
			}
		}
		for i, s := range group {
			k := &keeper{limit: sizeCap, headerOnly: s.Size > sizeCap}
			name := strings.Fields(lines[i])[0]
			if _, err := c.response(name); err != nil {
				var re *ResponseError
				if errors.As(err, &re) {
					// No data follows a -ERR; read on to the
					// answers still owed.
					if refused == nil {
						refused = err
					}
					continue
				}
				return err
			}
			if !k.headerOnly && sp != nil && sp.Big(s.Size) {
				var err error
				if k.w, err = sp.Create(); err != nil {
					return err
				}
			}
			if err := readDotBody(c.bufioReader(), k.write); err != nil {
				k.abort()
				return err
			}
			if refused != nil {
				k.abort() // after the failure: not handed on
				continue
			}
			m := Message{Num: s.Num, Size: s.Size, Raw: k.buf, TooLarge: k.headerOnly}
			if k.w != nil {
				m.Raw, m.Spool = nil, k.w.Done()
			}
			got = append(got, m)
		}
		return refused
	})
	if err != nil {
		var re *ResponseError
		if !errors.As(err, &re) {
			// The session is broken: nothing read is handed on.
			closeSpools(got)
			got = nil
		}
		return got, err
	}
	return got, nil
}

// DeleMany marks the messages nums deleted, as Dele marks one: with
// PIPELINING the commands are sent together and their answers read in
// order (one round trip for all), else one after the other. The first
// -ERR is returned once every answer is read.
func (c *Conn) DeleMany(ctx context.Context, nums []int) error {
	if !c.Pipelining() {
		for _, n := range nums {
			if err := c.Dele(ctx, n); err != nil {
				return err
			}
		}
		return nil
	}
	for group := range slices.Chunk(nums, 1000) {
		err := c.do(ctx, StepDele, 0, func() error {
			for _, n := range group {
				if err := c.tp.PrintfLine("DELE %d", n); err != nil {
					return err
				}
			}
			var refused error
			for range group {
				if _, err := c.response("DELE"); err != nil {
					var re *ResponseError
					if !errors.As(err, &re) {
						return err
					}
					if refused == nil {
						refused = err
					}
				}
			}
			return refused
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// Dele marks message n deleted. The server removes it only at Quit; Close
// or a dropped connection unmarks it.
func (c *Conn) Dele(ctx context.Context, n int) error {
	return c.do(ctx, StepDele, 0, func() error {
		_, err := c.cmd("DELE", "DELE "+strconv.Itoa(n))
		return err
	})
}

// readDotBody reads a multi-line response's data from r up to its
// terminating line ".", undoing the dot-stuffing (RFC 1939 §3: a line that
// starts with "." has one more "." in front), and passes everything else
// to write unchanged: line ends stay as sent, and lines longer than r's
// buffer are passed in pieces but never altered. An error of write stops
// it.
func readDotBody(r *bufio.Reader, write func([]byte) error) error {
	bol := true // at the beginning of a line
	for {
		chunk, err := r.ReadSlice('\n')
		if err != nil && err != bufio.ErrBufferFull {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		if bol && len(chunk) > 0 && chunk[0] == '.' {
			if err == nil && (string(chunk) == ".\r\n" || string(chunk) == ".\n") {
				return nil
			}
			chunk = chunk[1:]
		}
		if len(chunk) > 0 {
			if err := write(chunk); err != nil {
				return err
			}
		}
		bol = err == nil
	}
}

// keeper collects a message up to limit bytes; above it, or from the start
// when headerOnly, it keeps only the header section. With w it writes the
// message to that spool file instead of buf, until it finds it is above
// limit: then it keeps the header read back from the file, which it
// removes.
type keeper struct {
	limit      int64
	headerOnly bool
	buf        []byte
	done       bool // nothing more is kept
	scanned    int  // buf[:scanned] has been searched for the header's end
	w          *spool.Writer
	written    int64 // bytes written to w
}

func (k *keeper) write(p []byte) error {
	if k.done {
		return nil
	}
	if k.w != nil {
		if k.written+int64(len(p)) <= k.limit {
			n, err := k.w.Write(p)
			k.written += int64(n)
			return err
		}
		// Bigger than LIST said, and above the cap: keep the header.
		f := k.w.Done()
		k.w = nil
		header, err := spool.ReadHeader(io.MultiReader(f.Reader(), bytes.NewReader(p)), k.limit)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		k.buf, k.headerOnly, k.done = header, true, true
		return err
	}
	if !k.headerOnly && int64(len(k.buf)+len(p)) > k.limit {
		k.headerOnly = true
	}
	k.buf = append(k.buf, p...)
	if !k.headerOnly {
		return nil
	}
	if end := k.headerEnd(); end >= 0 {
		// A header larger than the cap keeps only its start.
		k.buf = k.buf[:min(int64(end), k.limit)]
		k.done = true
	} else if int64(len(k.buf)) > k.limit {
		k.buf = k.buf[:k.limit]
		k.done = true
	}
	return nil
}

// abort removes the spool file being written, if any.
func (k *keeper) abort() {
	if k.w != nil {
		k.w.Abort()
		k.w = nil
	}
}

// headerEnd returns the length of the header section with its ending blank
// line, or -1 if buf does not hold all of it yet.
func (k *keeper) headerEnd() int {
	b := k.buf
	if bytes.HasPrefix(b, []byte("\r\n")) {
		return 2
	}
	if bytes.HasPrefix(b, []byte("\n")) {
		return 1
	}
	from := max(k.scanned-2, 0)
	k.scanned = len(b)
	for i := bytes.IndexByte(b[from:], '\n'); i >= 0; {
		at := from + i + 1 // just after a line end
		switch {
		case bytes.HasPrefix(b[at:], []byte("\r\n")):
			return at + 2
		case bytes.HasPrefix(b[at:], []byte("\n")):
			return at + 1
		case at+1 >= len(b) && (at == len(b) || b[at] == '\r'):
			// Not decidable yet: look here again with more data.
			k.scanned = at
			return -1
		}
		from = at
		i = bytes.IndexByte(b[from:], '\n')
	}
	return -1
}
