package imapsource

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"mailtrigger/internal/source/sourcetest"
	"mailtrigger/internal/testenv"
	"mailtrigger/internal/testwait"
)

func TestWaitForMail(t *testing.T) {
	t.Parallel()
	d := testenv.StartDovecot(t)

	modes := []struct {
		name string
		idle bool
	}{
		{"IDLE", true},
		{"polling", false},
	}
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			cfg := newUser(t, d, "wait"+strings.ToLower(mode.name[:4]))
			first := appendMessages(t, d, cfg.Username, "INBOX", sourcetest.NewMessage(1, 10))
			c := dialSelect(t, cfg, Options{})
			c.idle = mode.idle
			const poll = 200 * time.Millisecond

			t.Run("new mail", func(t *testing.T) {
				type result struct {
					uid uint32
					err error
				}
				appended := make(chan result, 1)
				time.AfterFunc(300*time.Millisecond, func() {
					uid, err := appendRaw(d, cfg.Username, cfg.Password, sourcetest.NewMessage(2, 10))
					appended <- result{uid, err}
				})
				began := time.Now()
				if err := c.WaitForMail(testCtx(t), 10*time.Second, poll); err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				r := <-appended
				if r.err != nil {
					t.Fatalf("appending: %v", r.err)
				}
				uid := r.uid
				if elapsed := time.Since(began); elapsed > 3*time.Second {
					t.Errorf("got WaitForMail returning %v after the start, want within 3 s of the append", elapsed)
				}
				msgs := collect(t, func(fn func(Message) error) error { return c.FetchAfter(testCtx(t), first[0], 0, fn) })
				if got := uidsOf(msgs); !slices.Equal(got, []uint32{uid}) {
					t.Errorf("got UIDs %v after the wait, want %v", got, []uint32{uid})
				}
			})

			t.Run("no mail", func(t *testing.T) {
				// Any news of the previous subtest arrived with its commands.
				_ = c.WaitForMail(testCtx(t), 50*time.Millisecond, poll)
				began := time.Now()
				if err := c.WaitForMail(testCtx(t), 700*time.Millisecond, poll); err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				if elapsed := time.Since(began); elapsed < 650*time.Millisecond || elapsed > 3*time.Second {
					t.Errorf("got WaitForMail returning after %v, want about 700ms", elapsed)
				}
				if err := c.Noop(testCtx(t)); err != nil {
					t.Errorf("noop after waiting: got %v, want nil", err)
				}
			})

			t.Run("news during another command", func(t *testing.T) {
				if _, err := appendRaw(d, cfg.Username, cfg.Password, sourcetest.NewMessage(3, 10)); err != nil {
					t.Fatalf("appending: %v", err)
				}
				// The EXISTS comes with the NOOP's response; the wait
				// must not miss it.
				if err := c.Noop(testCtx(t)); err != nil {
					t.Fatal(err)
				}
				began := time.Now()
				if err := c.WaitForMail(testCtx(t), 10*time.Second, 10*time.Second); err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				if elapsed := time.Since(began); elapsed > 100*time.Millisecond {
					t.Errorf("got WaitForMail returning after %v, want at once", elapsed)
				}
			})

			t.Run("context canceled", func(t *testing.T) {
				ctx, cancel := context.WithCancel(context.Background())
				time.AfterFunc(200*time.Millisecond, cancel)
				began := time.Now()
				err := c.WaitForMail(ctx, 10*time.Second, poll)
				if !errors.Is(err, context.Canceled) {
					t.Errorf("got %v, want context.Canceled", err)
				}
				if elapsed := time.Since(began); elapsed > 3*time.Second {
					t.Errorf("got WaitForMail returning after %v, want soon after the cancel", elapsed)
				}
				if err := c.Noop(testCtx(t)); !errors.Is(err, context.Canceled) {
					t.Errorf("noop after the cancel: got %v, want the connection closed for context.Canceled", err)
				}
			})
		})
	}
}

// TestWaitForMailServerStops stops Dovecot under a waiting connection.
func TestWaitForMailServerStops(t *testing.T) {
	t.Parallel()
	d := testenv.StartDovecot(t)
	idling := dialSelect(t, newUser(t, d, "idler"), Options{})
	polling := dialSelect(t, newUser(t, d, "poller"), Options{})
	polling.idle = false

	errs := make(chan error, 2)
	for _, c := range []*Conn{idling, polling} {
		go func() { errs <- c.WaitForMail(context.Background(), 20*time.Second, 100*time.Millisecond) }()
	}
	// Both start waiting, and go on while the server runs.
	testwait.Never(t, 300*time.Millisecond, func() error {
		if len(errs) > 0 {
			return errors.New("WaitForMail returned before the server stopped")
		}
		return nil
	})
	stopped := time.Now()
	d.Stop(t)
	for range 2 {
		select {
		case err := <-errs:
			if !errors.Is(err, ErrClosed) {
				t.Errorf("got %v, want ErrClosed", err)
			}
			var se *StepError
			if !errors.As(err, &se) || se.Step != StepWait {
				t.Errorf("got %v, want a wait step error", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("WaitForMail still waiting %v after the server stopped", time.Since(stopped))
		}
	}
	if err := idling.WaitForMail(testCtx(t), time.Second, time.Second); !errors.Is(err, ErrClosed) {
		t.Errorf("waiting again: got %v, want ErrClosed", err)
	}
}

// appendRaw appends raw to INBOX over IMAPS as another client would. Unlike
// testenv's Append it may run on any goroutine.
func appendRaw(d *testenv.Dovecot, address, password string, raw []byte) (uint32, error) {
	c, err := imapclient.DialTLS(d.Addr(d.IMAPSPort), &imapclient.Options{TLSConfig: d.TLSConfig()})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if err := c.Login(address, password).Wait(); err != nil {
		return 0, err
	}
	cmd := c.Append("INBOX", int64(len(raw)), nil)
	if _, err := cmd.Write(raw); err != nil {
		return 0, err
	}
	if err := cmd.Close(); err != nil {
		return 0, err
	}
	data, err := cmd.Wait()
	if err != nil {
		return 0, err
	}
	return uint32(data.UID), c.Logout().Wait()
}
