package store_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"mailtrigger/internal/flow"
	"mailtrigger/internal/mail"
	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
	"mailtrigger/internal/testenv"
)

// benchMessage returns a message of about 20 KB: a text and an HTML
// alternative, as the bench's backlog sends.
func benchMessage(i int) []byte {
	var text strings.Builder
	for text.Len() < 9000 {
		fmt.Fprintf(&text, "invoice %d payment due, reference %d.\r\n", i, text.Len())
	}
	var b strings.Builder
	fmt.Fprintf(&b, "From: Billing <billing@example.org>\r\nTo: backlog@example.test\r\nSubject: Invoice %d\r\n"+
		"Message-ID: <backlog-%d@bench.example.org>\r\nDate: Wed, 25 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"+
		"Content-Type: multipart/alternative; boundary=alt\r\n\r\n", i, i)
	b.WriteString("--alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + text.String())
	b.WriteString("\r\n--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body><pre>" + text.String() + "</pre></body></html>")
	b.WriteString("\r\n--alt--\r\n")
	return []byte(b.String())
}

// benchSetup creates on s a mailbox with one flow that matches every
// benchMessage, and returns a function that makes a batch of n messages
// with new UIDs, and the hook of the flows.
func benchSetup(tb testing.TB, s *store.Store, name string, n int) (next func() store.Batch, hook store.RecordHook) {
	tb.Helper()
	ctx := context.Background()
	c := sampleIMAP(name)
	if err := s.CreateIMAP(ctx, &c); err != nil {
		tb.Fatal(err)
	}
	def, err := json.Marshal(map[string]any{"name": name, "enabled": true,
		"start":      map[string]any{"emailTrigger": map[string]any{"imap": c.Name, "subject": "Invoice", "match": "prefix"}},
		"activities": []any{map[string]any{"type": "webhook", "url": "http://127.0.0.1:1/hook"}}})
	if err != nil {
		tb.Fatal(err)
	}
	f := store.FlowRecord{Name: name, IMAPID: c.ID, IMAPName: c.Name, Enabled: true, Definition: string(def), Secrets: []string{"s"}}
	if err := s.CreateFlow(ctx, &f); err != nil {
		tb.Fatal(err)
	}
	raws := make([][]byte, n)
	msgs := make([]*mail.Message, n)
	for i := range raws {
		raws[i] = benchMessage(i)
		msgs[i] = mail.Parse(raws[i])
	}
	uid := uint32(0)
	next = func() store.Batch {
		batch := store.Batch{IMAPID: c.ID, IMAPName: c.Name, Epoch: 1, Action: "seen"}
		for i := range n {
			uid++
			m := *msgs[i]
			m.MessageID = fmt.Sprintf("bench-%d@example.org", uid)
			batch.Messages = append(batch.Messages, store.Incoming{UID: uid, Raw: raws[i], Msg: &m, Seen: time.Now()})
		}
		batch.Checkpoint = &store.Checkpoint{Kind: store.KindIMAP, Epoch: 1, Last: uid}
		return batch
	}
	return next, flow.Hook(s)
}

// BenchmarkRecordBatch records batches of 100 messages of 20 KB on a
// mailbox with one flow that matches every message (a match and a run per
// message), with the after-processing owed and the checkpoint, as the
// ingest of a backlog does.
func BenchmarkRecordBatch(b *testing.B) {
	for _, d := range storetest.Dialects {
		b.Run(string(d), func(b *testing.B) {
			ctx := context.Background()
			s := storetest.Open(b, d)
			const n = 100
			next, hook := benchSetup(b, s, "bench", n)
			b.SetBytes(int64(n * len(benchMessage(0))))
			// CPU time, which a loaded machine changes less than the
			// elapsed time: this process's and, on PostgreSQL, that of
			// the server processes serving its database.
			db := ""
			if d == store.Postgres {
				if err := store.DB(s).QueryRow(`SELECT current_database()`).Scan(&db); err != nil {
					b.Fatal(err)
				}
			}
			cpu0, srv0 := selfCPU(), serverCPU(db)
			b.ResetTimer()
			for range b.N {
				rec, _, err := s.RecordBatch(ctx, next(), hook)
				if err != nil || len(rec) != n {
					b.Fatalf("recorded %d of %d: %v", len(rec), n, err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/msg")
			b.ReportMetric(float64(selfCPU()-cpu0)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
			if db != "" {
				var srv time.Duration
				for pid, t := range serverCPU(db) {
					srv += t - srv0[pid]
				}
				b.ReportMetric(float64(srv)/float64(time.Millisecond)/float64(b.N), "server-cpu-ms/op")
			}
		})
	}
}

// TestRecordBatchRoundTrips checks that recording a batch on PostgreSQL
// costs as many round trips for 100 messages as for 10 (each with a match
// and a run), and no more than five: BEGIN, the lookup sent with the flows
// and the run ids, the COPY, the other writes sent together, COMMIT.
func TestRecordBatchRoundTrips(t *testing.T) {
	ctx := context.Background()
	s, trips := openCounted(t)
	trips10 := int64(0)
	for _, n := range []int{10, 100} {
		next, hook := benchSetup(t, s, fmt.Sprintf("inbox%d", n), n)
		// The first batch fills pgx's statement cache.
		if _, _, err := s.RecordBatch(ctx, next(), hook); err != nil {
			t.Fatal(err)
		}
		trips.reset()
		rec, _, err := s.RecordBatch(ctx, next(), hook)
		if err != nil || len(rec) != n {
			t.Fatalf("recorded %d of %d: %v", len(rec), n, err)
		}
		got := trips.load()
		t.Logf("%d messages: %d round trips", n, got)
		// +1: the driver pings a connection idle for a second.
		if got > 5+1 {
			t.Errorf("%d messages: %d round trips, want at most 5", n, got)
		}
		if n == 10 {
			trips10 = got
		} else if got > trips10+1 {
			t.Errorf("%d round trips for 100 messages, %d for 10: want no more", got, trips10)
		}
	}
}

// TestDeliveryRoundTrips: the run worker's statements for a batch of runs
// on PostgreSQL, whatever its size: a claim in one round trip, the reads of
// its messages in one, a finish in two (BEGIN with the statement, then the
// COMMIT once the count is checked), a hand-back in one. With a database
// 10 ms away each round trip is 10 ms every run of the batch waits.
func TestDeliveryRoundTrips(t *testing.T) {
	ctx := context.Background()
	s, trips := openCounted(t)
	for _, n := range []int{3, 40} {
		next, hook := benchSetup(t, s, fmt.Sprintf("deliver%d", n), n)
		for range 2 { // the first round fills pgx's statement cache
			if _, _, err := s.RecordBatch(ctx, next(), hook); err != nil {
				t.Fatal(err)
			}
		}
		check := func(what string, want int64, fn func() error) {
			t.Helper()
			trips.reset()
			if err := fn(); err != nil {
				t.Fatalf("%d runs: %s: %v", n, what, err)
			}
			// +1: the driver pings a connection idle for a second.
			if got := trips.load(); got > want+1 {
				t.Errorf("%d runs: %s in %d round trips, want %d", n, what, got, want)
			}
		}
		for round := range 2 {
			var runs []store.Run
			check("claiming", 1, func() (err error) {
				if round == 0 {
					runs, err = s.ClaimRuns(ctx, time.Now().Add(time.Hour), n, time.Minute)
				} else {
					// Flows capped (their endpoint full): one
					// round trip too, however many.
					caps := []store.FlowCap{{FlowID: -2}, {FlowID: -1, Max: 1}}
					runs, err = s.ClaimRunsCapped(ctx, time.Now().Add(time.Hour), n, time.Minute, caps)
				}
				if err == nil && len(runs) != n {
					err = fmt.Errorf("claimed %d", len(runs))
				}
				return err
			})
			ids := make([]int64, len(runs))
			for i, r := range runs {
				ids[i] = r.MessageID
			}
			check("reading the messages", 1, func() error {
				m, err := s.GetMessages(ctx, ids)
				if err == nil && len(m) != n {
					err = fmt.Errorf("read %d messages", len(m))
				}
				return err
			})
			if round == 0 {
				rel := make([]store.Release, len(runs))
				for i, r := range runs {
					rel[i] = store.Release{RunID: r.ID, Next: time.Now()}
				}
				check("handing back", 1, func() error { return s.ReleaseRuns(ctx, rel) })
				continue
			}
			fs := make([]store.Finish, len(runs))
			for i, r := range runs {
				fs[i] = store.Finish{RunID: r.ID, Status: store.RunDelivered, Next: time.Now(),
					Attempt: store.Attempt{StartedAt: time.Now(), StatusCode: 200}}
			}
			check("finishing", 2, func() error { return s.FinishAttempts(ctx, fs) })
		}
	}
}

// tripCounter counts the round trips between the store and PostgreSQL: the
// times the client speaks after the server did.
type tripCounter struct {
	trips       atomic.Int64
	serverSpoke atomic.Bool
}

func (c *tripCounter) reset() {
	if c != nil {
		c.trips.Store(0)
	}
}

func (c *tripCounter) load() int64 { return c.trips.Load() }

// openCounted opens a PostgreSQL store through a loopback proxy that
// counts its round trips.
func openCounted(tb testing.TB) (*store.Store, *tripCounter) {
	tb.Helper()
	u, err := url.Parse(testenv.PostgresURL(tb))
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	c := &tripCounter{}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	target := u.Host
	go func() {
		for {
			cl, err := ln.Accept()
			if err != nil {
				return
			}
			sv, err := net.Dial("tcp", target)
			if err != nil {
				cl.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, cl, sv)
			mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); c.pipe(sv, cl, true); sv.Close() }()
			go func() { defer wg.Done(); c.pipe(cl, sv, false); cl.Close() }()
		}
	}()
	u.Host = ln.Addr().String()
	s, err := store.Open(context.Background(), store.Options{DataDir: tb.TempDir(), Box: storetest.Box(tb), DatabaseURL: u.String()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		s.Close()
		ln.Close()
		mu.Lock()
		for _, cn := range conns {
			cn.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return s, c
}

// pipe copies from src to dst; fromClient says which way.
func (c *tripCounter) pipe(dst io.Writer, src io.Reader, fromClient bool) {
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if fromClient {
				if c.serverSpoke.Swap(false) {
					c.trips.Add(1)
				}
			} else {
				c.serverSpoke.Store(true)
			}
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// selfCPU is the CPU time this process used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// serverCPU is the CPU time used by each PostgreSQL backend serving
// database db (by pid), read from /proc (Linux; nothing elsewhere).
func serverCPU(db string) map[int]time.Duration {
	out := map[int]time.Duration{}
	if db == "" {
		return out
	}
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err != nil || !strings.HasPrefix(string(cmd), "postgres: ") || !strings.Contains(string(cmd), " "+db+" ") {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", d.Name(), "stat"))
		if err != nil {
			continue
		}
		// Fields after the command's closing parenthesis: utime and stime
		// are the 12th and 13th, in clock ticks (100 a second).
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(f) < 13 {
			continue
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		out[pid] = time.Duration(ut+st) * 10 * time.Millisecond
	}
	return out
}
