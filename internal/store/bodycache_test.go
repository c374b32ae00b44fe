package store

import (
	"fmt"
	"math"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

// TestBodyCacheFullKeepsTheUnread: a full cache makes room from the entries
// already read, oldest first, and otherwise does not keep a new entry, so
// that a reader behind the writer, reading in the order they were kept,
// finds the cache's worth of them (dropping the oldest for new ones would
// have it miss every one).
func TestBodyCacheFullKeepsTheUnread(t *testing.T) {
	b, ttl := bodiesMaxBytes, bodiesTTL
	defer func() { bodiesMaxBytes, bodiesTTL = b, ttl }()
	bodiesMaxBytes, bodiesTTL = 10_000, time.Hour
	c := &bodyCache{}
	defer c.clear()
	now := time.Now()
	body := strings.Repeat("x", 1900) // an entry is about 2 KB: five fit
	for id := int64(1); id <= 10; id++ {
		c.put(id, bodiesOf{uid: uint32(id)}, body, "", now)
	}
	kept := func() string {
		var ids []string
		for id := int64(1); id <= 12; id++ {
			if _, ok := c.entries[id]; ok {
				ids = append(ids, fmt.Sprint(id))
			}
		}
		return strings.Join(ids, ",")
	}
	if got := kept(); got != "1,2,3,4,5" {
		t.Fatalf("kept %s, want 1,2,3,4,5: the first ones, none read yet", got)
	}
	// The reader takes 1 and 2; the next ones put replace them, and one
	// more finds no room.
	for _, id := range []int64{1, 2} {
		if _, ok := c.get(id, now); !ok {
			t.Fatalf("entry %d not served", id)
		}
	}
	for id := int64(11); id <= 12; id++ {
		c.put(id, bodiesOf{uid: uint32(id)}, body, "", now)
	}
	if got := kept(); got != "3,4,5,11,12" {
		t.Fatalf("kept %s, want 3,4,5,11,12: the ones read made room", got)
	}
	c.put(13, bodiesOf{uid: 13}, body, "", now)
	if _, ok := c.entries[13]; ok || c.bytes > bodiesMaxBytes {
		t.Fatalf("entry 13 kept in a full cache of unread entries (%d bytes)", c.bytes)
	}
	// The list of entries read stays bounded while entries come and go.
	bodiesMaxBytes = 1 << 30
	for id := int64(100); id < 20_000; id++ {
		c.put(id, bodiesOf{uid: uint32(id)}, "t", "", now)
		c.get(id, now)
		c.drop([]int64{id})
	}
	if len(c.read) > 2*len(c.entries)+1025 {
		t.Fatalf("%d ids of entries read held for %d entries", len(c.read), len(c.entries))
	}
}

// TestBodyCacheFollowsTheMemoryLimit: under a soft memory limit the cache
// holds at most an eighth of it, and one entry at most a quarter of that.
func TestBodyCacheFollowsTheMemoryLimit(t *testing.T) {
	old := debug.SetMemoryLimit(80 << 20)
	defer debug.SetMemoryLimit(old)
	if got := bodiesLimit(); got != 10<<20 {
		t.Fatalf("bodiesLimit %d under an 80 MiB limit, want 10 MiB", got)
	}
	c := &bodyCache{}
	defer c.clear()
	now := time.Now()
	c.put(1, bodiesOf{uid: 1}, strings.Repeat("x", 3<<20), "", now) // over a quarter of 10 MiB
	c.put(2, bodiesOf{uid: 2}, strings.Repeat("x", 2<<20), "", now)
	if _, ok := c.entries[1]; ok {
		t.Error("kept a 3 MiB entry in a cache of 10 MiB")
	}
	if _, ok := c.entries[2]; !ok {
		t.Error("did not keep a 2 MiB entry in a cache of 10 MiB")
	}
	debug.SetMemoryLimit(math.MaxInt64)
	if got := bodiesLimit(); got != bodiesMaxBytes {
		t.Fatalf("bodiesLimit %d without a limit, want %d", got, bodiesMaxBytes)
	}
}
