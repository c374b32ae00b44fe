package run_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"mailtrigger/internal/mail"
	"mailtrigger/internal/run"
	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
	"mailtrigger/internal/testwait"
)

// BenchmarkDelivery measures runs delivered per second to a local listener
// that answers 200 at once (issue 7, scenario 4), on both databases: b.N
// runs are queued, then one worker delivers them all.
//
//	go test -run '^$' -bench Delivery -benchtime 20000x ./internal/run/
func BenchmarkDelivery(b *testing.B) {
	for _, d := range storetest.Dialects {
		b.Run(string(d), func(b *testing.B) {
			s := storetest.Open(b, d)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) }))
			b.Cleanup(srv.Close)
			f := newFlow(b, s, "bench", flowDef(webhook(srv.URL)))
			for left := b.N; left > 0; left -= 1000 {
				newRuns(b, s, f, min(left, 1000))
			}
			b.ResetTimer()
			elapsed := deliverAll(b, s, run.Options{Workers: 32, PerEndpoint: 32, PollInterval: 20 * time.Millisecond}, 10*time.Minute)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "runs/s")
		})
	}
}

// BenchmarkAttachmentsInFlight measures the heap a backlog of messages with
// a 10 MB attachment each takes while it is delivered to an endpoint that
// holds each answer 200 ms, with includeAttachments: each delivery holds
// the content and its base64 payload until it is sent. "bounded" is the
// default AttachmentBytesInFlight (40 MB), "unbounded" one large enough for
// every delivery at once (as before it existed). It reports the peak of
// the heap in use (sampled every 5 ms) and runs/s.
//
//	go test -run '^$' -bench AttachmentsInFlight -benchtime 1x ./internal/run/
func BenchmarkAttachmentsInFlight(b *testing.B) {
	const runs, size = 24, 10 << 20
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i*7 + i>>9)
	}
	var body strings.Builder
	body.WriteString("From: Scanner <scan@example.com>\r\nTo: invoices@example.com\r\nSubject: Invoice scan\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nScan attached.\r\n" +
		"--b\r\nContent-Type: application/pdf; name=scan.pdf\r\nContent-Disposition: attachment; filename=scan.pdf\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\n")
	enc := base64.StdEncoding.EncodeToString(data)
	for len(enc) > 76 {
		body.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	body.WriteString(enc + "\r\n--b--\r\n")
	raw := body.String()
	for _, c := range []struct {
		name   string
		budget int64
	}{{"bounded", 0}, {"unbounded", 1 << 40}} {
		b.Run(c.name, func(b *testing.B) {
			for range b.N {
				s := storetest.Open(b, store.SQLite)
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					io.Copy(io.Discard, r.Body)
					time.Sleep(200 * time.Millisecond)
				}))
				act := webhook(srv.URL)
				act["includeAttachments"] = true
				f := newFlow(b, s, "scans", flowDef(act))
				for range runs / 4 {
					var batch store.Batch
					batch.IMAPID, batch.IMAPName = f.IMAPID, f.IMAPName
					for range 4 {
						uid := uidSeq.Add(1)
						batch.Messages = append(batch.Messages, store.Incoming{UID: uid, Raw: []byte(raw), Msg: mail.Parse([]byte(raw)), Seen: time.Now()})
						batch.Epoch, batch.Checkpoint = 1, &store.Checkpoint{Kind: store.KindIMAP, Epoch: 1, Last: uid}
					}
					_, _, err := s.RecordBatch(context.Background(), batch, func(ctx context.Context, tx *store.Tx, _ *store.Batch, id int64, in store.Incoming) error {
						_, err := tx.CreateRun(ctx, &store.Run{FlowID: f.ID, FlowName: f.Name, MessageID: id, IMAPName: f.IMAPName, ReceivedAt: in.Seen})
						return err
					})
					if err != nil {
						b.Fatal(err)
					}
				}
				runtime.GC()
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				base := ms.HeapInuse
				var peak atomic.Uint64
				sampling, sampled := make(chan struct{}), make(chan struct{})
				go func() {
					defer close(sampled)
					var ms runtime.MemStats
					for {
						runtime.ReadMemStats(&ms)
						if ms.HeapInuse > peak.Load() {
							peak.Store(ms.HeapInuse)
						}
						select {
						case <-sampling:
							return
						case <-time.After(5 * time.Millisecond):
						}
					}
				}()
				took := deliverAll(b, s, run.Options{PollInterval: 20 * time.Millisecond, AttachmentBytesInFlight: c.budget}, 2*time.Minute)
				close(sampling)
				<-sampled
				srv.Close()
				b.ReportMetric(float64(peak.Load()-base)/(1<<20), "peak-heap-MB")
				b.ReportMetric(runs/took.Seconds(), "runs/s")
			}
		})
	}
}

// deliverAll runs a worker with options o on s until the queue is empty
// (within at most), stops it, and returns how long that took.
func deliverAll(b *testing.B, s *store.Store, o run.Options, within time.Duration) time.Duration {
	b.Helper()
	w := run.New(run.Deps{Store: s, Logger: slog.New(slog.DiscardHandler), Options: o})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		w.Run(ctx)
	}()
	testwait.Until(b, within, func() error {
		n, err := s.QueueDepth(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		if n != 0 {
			return fmt.Errorf("%d runs still queued", n)
		}
		return nil
	})
	took := time.Since(start)
	cancel()
	<-done
	return took
}
