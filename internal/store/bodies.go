package store

// A short-lived cache of the bodies ingest decoded, for the run worker.

import (
	"runtime/debug"
	"slices"
	"sync"
	"time"
)

// A message stored once keeps only its raw bytes and layout: its text and
// HTML bodies are decoded again from the raw message when they are read.
// The run worker reads them for every run it delivers (GetMessages), most
// often a moment after the batch that created the run committed, while
// mail.Parse decoded exactly those bodies (Layout.Bodies gives what Parse
// gave) at ingest. RecordBatch keeps them here, after its commit, for the
// messages it created runs for; GetMessages takes them from here instead of
// reading the raw message and decoding it a second time. They are kept
// before the commit, so that a run the worker claims as soon as the commit
// lands finds them, and dropped again when the transaction fails; an entry
// names its message by mailbox, epoch, UID, size and subject besides its
// id, and serves only a row that matches (a rolled-back id that SQLite
// hands to another message is never served someone else's bodies). A
// message it misses (evicted, expired, recorded by another replica, a run retried
// later) is decoded from its raw bytes as before.
//
// The cache is bounded in bytes, and an entry expires after bodiesTTL (a
// timer drops what expired once the cache goes quiet). An entry stays when
// it is read: a run the worker claimed and handed back (its endpoint busy)
// is read again a moment later. When the cache is full, the entries already
// read go first, oldest first, and if that is not room enough the new
// entry is not kept: a run worker that fell behind ingest (a backlog on
// PostgreSQL, docs/benchmarks.md) reads its messages in the order they were
// kept, so that dropping the oldest unread entries for new ones would have
// it miss every one, where this way it finds the cache's worth and decodes
// the rest. The time to live is
// far below the shortest retention (a day), so that Prune on another
// replica, which empties a message's bodies, never leaves one here that
// the database no longer has (Prune in this process empties the cache
// besides).
//
// The cache holds up to 64 MB: with 16 MB, a run worker on PostgreSQL fell
// far enough behind a 10,000-message backlog that it decoded again the
// bodies of almost half of its messages, reading their raw bytes back from
// the database (docs/benchmarks.md, session 13). Under a soft memory limit
// it holds at most an eighth of the limit. One entry holds at most 4 MB, a
// quarter of the cache's old size.
var (
	bodiesMaxBytes int64 = 64 << 20
	bodiesMaxEntry int64 = 4 << 20
	bodiesTTL            = 2 * time.Minute
)

// bodiesLimit is how many bytes the cache holds: bodiesMaxBytes, or an
// eighth of the soft memory limit when that is less.
func bodiesLimit() int64 {
	return min(bodiesMaxBytes, debug.SetMemoryLimit(-1)/8)
}

// bodyCache maps a message id to its decoded bodies.
type bodyCache struct {
	mu      sync.Mutex
	entries map[int64]cachedBodies
	order   []int64 // ids in the order they were put; some taken out since
	head    int     // order[head:] are the ids that may still be in entries
	read    []int64 // ids of entries read, in the order first read; some taken out since
	bytes   int64
	timer   *time.Timer // drops expired entries; nil while the cache is empty
}

type cachedBodies struct {
	who        bodiesOf
	text, html string
	at         time.Time
	read       bool // served once: the first to go when the cache is full
}

// bodiesOf is the message an entry belongs to, beside its id.
type bodiesOf struct {
	imapID  int64
	epoch   uint32
	uid     uint32
	size    int64
	subject string
}

// of says which message m is.
func (m StoredMessage) of() bodiesOf {
	return bodiesOf{imapID: m.IMAPID, epoch: m.UIDValidity, uid: m.UID, size: m.Size, subject: m.Subject}
}

func (c cachedBodies) size() int64 { return int64(len(c.text) + len(c.html) + len(c.who.subject) + 96) }

// put keeps the bodies of message id (who), decoded at now.
func (c *bodyCache) put(id int64, who bodiesOf, text, html string, now time.Time) {
	e := cachedBodies{who: who, text: text, html: html, at: now}
	limit := bodiesLimit()
	if e.size() > min(limit/4, bodiesMaxEntry) {
		return // one big message would push out many small ones
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.evict(now, limit)
	if c.entries == nil {
		c.entries = map[int64]cachedBodies{}
	}
	old, existed := c.entries[id]
	if existed {
		delete(c.entries, id) // its id stays in order
		c.bytes -= old.size()
	}
	// Room from the entries read, oldest first; else the new one waits
	// outside (see above).
	for c.bytes+e.size() > limit && len(c.read) > 0 {
		r := c.read[0]
		c.read = c.read[1:]
		if old, ok := c.entries[r]; ok && old.read {
			delete(c.entries, r)
			c.bytes -= old.size()
		}
	}
	if c.bytes+e.size() > limit {
		return
	}
	if !existed {
		c.order = append(c.order, id)
	}
	c.entries[id] = e
	c.bytes += e.size()
	if c.timer == nil {
		c.timer = time.AfterFunc(bodiesTTL, c.expire)
	}
}

// expire drops the entries expired, and runs again when the oldest left
// expires.
func (c *bodyCache) expire() {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	c.evict(now, bodiesLimit())
	c.timer = nil
	if c.head < len(c.order) {
		oldest := c.entries[c.order[c.head]].at
		c.timer = time.AfterFunc(max(oldest.Add(bodiesTTL).Sub(now), time.Millisecond), c.expire)
	}
}

// get returns the entry of message id, if kept and fresh.
func (c *bodyCache) get(id int64, now time.Time) (cachedBodies, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.evict(now, bodiesLimit())
	e, ok := c.entries[id]
	if ok && !e.read {
		e.read = true
		c.entries[id] = e
		c.read = append(c.read, id)
		if len(c.read) > 2*len(c.entries)+1024 {
			// Ids of entries gone meanwhile (expired, dropped).
			c.read = slices.DeleteFunc(c.read, func(r int64) bool { _, ok := c.entries[r]; return !ok })
		}
	}
	return e, ok
}

// drop forgets the entries of messages ids.
func (c *bodyCache) drop(ids []int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range ids {
		if e, ok := c.entries[id]; ok {
			delete(c.entries, id)
			c.bytes -= e.size()
		}
	}
}

// clear forgets every entry.
func (c *bodyCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.entries, c.order, c.head, c.read, c.bytes = nil, nil, 0, nil, 0
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
}

// evict drops the oldest entries while the cache is over limit bytes
// (bodiesLimit) or they expired, and the ids of the entries taken out
// before.
func (c *bodyCache) evict(now time.Time, limit int64) {
	for c.head < len(c.order) {
		id := c.order[c.head]
		e, ok := c.entries[id]
		if ok && c.bytes <= limit && now.Sub(e.at) < bodiesTTL {
			break
		}
		if ok {
			delete(c.entries, id)
			c.bytes -= e.size()
		}
		c.head++
	}
	if c.head > 1024 && c.head > len(c.order)/2 {
		c.order = append([]int64(nil), c.order[c.head:]...)
		c.head = 0
	}
	if len(c.entries) == 0 {
		c.entries, c.order, c.head, c.read = nil, nil, 0, nil
	}
}
