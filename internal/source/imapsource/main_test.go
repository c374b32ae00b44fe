package imapsource

import (
	"bytes"
	"context"
	"net"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// testTimeout bounds each call a test makes.
const testTimeout = 15 * time.Second

// newUser adds a user with a password of its own and returns the
// configuration that reaches its INBOX over IMAPS.
func newUser(t *testing.T, d *testenv.Dovecot, localpart string) imapconf.Config {
	t.Helper()
	password := "pw-" + localpart + "-S3cr3t"
	address := d.AddUser(t, localpart, password)
	return imapconf.Config{
		Name:            localpart,
		ServerType:      imapconf.ServerIMAPS,
		Type:            imapconf.TypeGeneric,
		Host:            d.Host,
		Port:            d.IMAPSPort,
		TLS:             imapconf.TLSImplicit,
		CACert:          string(d.CACertPEM),
		Username:        address,
		Password:        password,
		Folder:          imapconf.DefaultFolder,
		AfterProcessing: imapconf.AfterNone,
		PollInterval:    imapconf.DefaultPollInterval,
		Backlog:         imapconf.BacklogNew,
		Auth:            imapconf.AuthPassword,
	}
}

// dialSelect connects with cfg and selects its folder; the connection is closed
// when the test ends.
func dialSelect(t *testing.T, cfg imapconf.Config, opts Options) *Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c, err := Dial(ctx, cfg, opts)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if _, err := c.Select(ctx, cfg.Folder); err != nil {
		t.Fatalf("select: %v", err)
	}
	return c
}

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// crlf returns b with every line ending in CRLF, as Dovecot may store it.
func crlf(b []byte) []byte {
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	return bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n"))
}

// appendMessages appends raws to folder over one connection and returns
// their UIDs.
func appendMessages(t *testing.T, d *testenv.Dovecot, address, folder string, raws ...[]byte) []uint32 {
	t.Helper()
	if len(raws) <= 2 {
		var uids []uint32
		for _, raw := range raws {
			uids = append(uids, d.Append(t, address, folder, raw))
		}
		return uids
	}
	c := d.DialIMAPS(t, address, nil)
	defer c.Close()
	var uids []uint32
	for _, raw := range raws {
		cmd := c.Append(folder, int64(len(raw)), nil)
		if _, err := cmd.Write(raw); err != nil {
			t.Fatalf("appending: %v", err)
		}
		if err := cmd.Close(); err != nil {
			t.Fatalf("appending: %v", err)
		}
		data, err := cmd.Wait()
		if err != nil {
			t.Fatalf("appending: %v", err)
		}
		uids = append(uids, uint32(data.UID))
	}
	return uids
}

// serverState returns the flags of each message in folder by UID, read
// over a connection of its own.
func serverState(t *testing.T, d *testenv.Dovecot, address, folder string) map[uint32][]string {
	t.Helper()
	c := d.DialIMAPS(t, address, nil)
	defer c.Close()
	data, err := c.Select(folder, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatalf("selecting %q: %v", folder, err)
	}
	state := map[uint32][]string{}
	if data.NumMessages == 0 {
		return state
	}
	msgs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Flags: true}).Collect()
	if err != nil {
		t.Fatalf("fetching %q: %v", folder, err)
	}
	for _, m := range msgs {
		var flags []string
		for _, f := range m.Flags {
			if f != `\Recent` {
				flags = append(flags, string(f))
			}
		}
		slices.Sort(flags)
		state[uint32(m.UID)] = flags
	}
	return state
}

// collect runs a fetch and returns the messages it delivered.
func collect(t *testing.T, fetch func(fn func(Message) error) error) []Message {
	t.Helper()
	var msgs []Message
	if err := fetch(func(m Message) error {
		msgs = append(msgs, m)
		return nil
	}); err != nil {
		t.Fatalf("fetch: %v", err)
	}
	return msgs
}

func uidsOf(msgs []Message) []uint32 {
	uids := []uint32{}
	for _, m := range msgs {
		uids = append(uids, m.UID)
	}
	return uids
}

// countingDialer dials TCP and counts the bytes read from every connection,
// and can cut a connection after a number of bytes read, as a network
// failure would.
type countingDialer struct {
	read  atomic.Int64
	cutAt atomic.Int64 // close after this many bytes read, if > 0
}

func (cd *countingDialer) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: conn, d: cd}, nil
}

type countingConn struct {
	net.Conn
	d *countingDialer
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	total := c.d.read.Add(int64(n))
	if cut := c.d.cutAt.Load(); cut > 0 && total >= cut {
		_ = c.Conn.Close()
	}
	return n, err
}
