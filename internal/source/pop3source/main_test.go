package pop3source

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// testTimeout bounds each call a test makes.
const testTimeout = 15 * time.Second

// modes are the two ways of securing the connection, each test runs both.
var modes = []string{imapconf.TLSImplicit, imapconf.TLSStartTLS}

// newUser adds a user with a password of its own and returns the
// configuration that reaches its mailbox over POP3S or STLS.
func newUser(t *testing.T, d *testenv.Dovecot, localpart, mode string) imapconf.Config {
	t.Helper()
	password := "pw-" + localpart + "-S3cr3t"
	address := d.AddUser(t, localpart, password)
	return config(d, address, password, mode)
}

// config returns the configuration of address with password over mode.
func config(d *testenv.Dovecot, address, password, mode string) imapconf.Config {
	port := d.POP3SPort
	if mode == imapconf.TLSStartTLS {
		port = d.POP3Port
	}
	return imapconf.Config{
		Name:            strings.ReplaceAll(strings.Split(address, "@")[0], "-", "_"),
		ServerType:      imapconf.ServerPOP3S,
		Type:            imapconf.TypeGeneric,
		Host:            d.Host,
		Port:            port,
		TLS:             mode,
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

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// dialT connects with cfg; the connection is closed when the test ends.
func dialT(t *testing.T, cfg imapconf.Config) *Conn {
	t.Helper()
	c, err := Dial(testCtx(t), cfg, Options{})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// uidls returns the unique ids of a new session's UIDL.
func uidls(t *testing.T, cfg imapconf.Config) []string {
	t.Helper()
	c := dialT(t, cfg)
	defer c.Close()
	entries, err := c.UIDL(testCtx(t))
	if err != nil {
		t.Fatalf("uidl: %v", err)
	}
	var ids []string
	for i, e := range entries {
		if e.Num != i+1 {
			t.Errorf("got entry %d numbered %d, want %d", i, e.Num, i+1)
		}
		ids = append(ids, e.UIDL)
	}
	return ids
}

// header returns the header section of raw with its blank line.
func header(raw []byte) []byte {
	i := bytes.Index(raw, []byte("\r\n\r\n"))
	return raw[:i+4]
}

// appendAll appends raws to address's INBOX.
func appendAll(t *testing.T, d *testenv.Dovecot, address string, raws ...[]byte) {
	t.Helper()
	for _, raw := range raws {
		d.Append(t, address, "INBOX", raw)
	}
}

func hasCapability(caps []string, name string) bool {
	return slices.ContainsFunc(caps, func(c string) bool {
		f := strings.Fields(c)
		return len(f) > 0 && strings.EqualFold(f[0], name)
	})
}
