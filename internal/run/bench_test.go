package run_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"mailtrigger/internal/run"
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
			w := run.New(run.Deps{Store: s, Logger: slog.New(slog.DiscardHandler),
				Options: run.Options{Workers: 32, PerEndpoint: 32, PollInterval: 20 * time.Millisecond}})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			b.ResetTimer()
			start := time.Now()
			go func() {
				defer close(done)
				w.Run(ctx)
			}()
			testwait.Until(b, 10*time.Minute, func() error {
				n, err := s.QueueDepth(context.Background())
				if err != nil {
					b.Fatal(err)
				}
				if n != 0 {
					return fmt.Errorf("%d runs still queued", n)
				}
				return nil
			})
			elapsed := time.Since(start)
			b.StopTimer()
			cancel()
			<-done
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "runs/s")
		})
	}
}
