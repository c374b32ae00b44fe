package e2e_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"mailtrigger/internal/client"
	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/testenv"
)

const (
	// largeSize is the least size of the large message: above the default
	// size cap of 50 MB.
	largeSize = 60 << 20
	// maxPeakGrowth bounds how much the service's peak RSS may grow while it
	// records the three messages.
	maxPeakGrowth = 20 << 20
)

const largeSubject = "Quarterly archive (60 MB attachment)"

// largeMessage returns a message of at least largeSize bytes: a short text
// part and a base64 attachment of random bytes.
func largeMessage() []byte {
	var b bytes.Buffer
	b.Grow(largeSize + 64<<10)
	b.WriteString("From: Archive <archive@example.org>\r\nTo: large@example.test\r\nSubject: " + largeSubject + "\r\n" +
		"Message-ID: <large-1@e2e.example.org>\r\nDate: Wed, 25 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"large-boundary\"\r\n\r\n" +
		"--large-boundary\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe archive is attached.\r\n" +
		"--large-boundary\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"archive.bin\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\n")
	rng := rand.NewChaCha8([32]byte{'e', '2', 'e'})
	chunk := make([]byte, 57) // 76 characters of base64 per line
	line := make([]byte, base64.StdEncoding.EncodedLen(len(chunk)))
	for b.Len() < largeSize {
		_, _ = rng.Read(chunk)
		base64.StdEncoding.Encode(line, chunk)
		b.Write(line)
		b.WriteString("\r\n")
	}
	b.WriteString("--large-boundary--\r\n")
	return b.Bytes()
}

// malformedMessage is multipart without a boundary, with a header of raw
// 8-bit garbage.
var malformedMessage = []byte("From: Broken <broken@example.org>\r\nTo: large@example.test\r\nSubject: Broken structure\r\n" +
	"Message-ID: <malformed-1@e2e.example.org>\r\nX-Garbage: \xff\xfe\x80\x81\x9f binary \xc3\x28 junk\r\nMIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed\r\n\r\n--nowhere\r\nContent-Type: text/plain\r\n\r\nunreachable part\r\n--nowhere--\r\n")

var normalMessage = []byte("From: Customer <customer@example.org>\r\nTo: large@example.test\r\nSubject: Normal after the odd ones\r\n" +
	"Message-ID: <normal-1@e2e.example.org>\r\nDate: Wed, 25 Nov 2026 10:05:00 +0000\r\nMIME-Version: 1.0\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n\r\nStill here.\r\n")

// TestLargeMessageBoundedMemory feeds the service, with the default size cap
// of 50 MB, a 60 MB message, a malformed one and a normal one: the first is
// recorded as too large with its header, the second with its parse error and
// its raw bytes, the third normally, and the service's peak RSS grows by at
// most 20 MB meanwhile (it fetches RFC822.SIZE first and then only the header
// of a message above the cap).
func TestLargeMessageBoundedMemory(t *testing.T) {
	large := largeMessage()
	d := testenv.StartDovecot(t)
	address := d.AddUser(t, "large", "pw-large")
	s := newService(t) // the default size cap
	s.start()
	api := s.api()
	createMailbox(s, api, d, "large", address, imapconf.BacklogNew)
	waitState(s, api, "large", imapconf.StateIdle, 15*time.Second)
	// The first start hashes the admin password with argon2id (64 MiB):
	// that peak would hide what ingesting costs. Measure a restarted
	// service, whose peak is its steady state.
	s.stop()
	s.start()
	waitState(s, api, "large", imapconf.StateIdle, 15*time.Second)

	c := d.DialIMAPS(t, address, nil)
	before := s.peakRSS()
	t.Logf("before the appends: peak RSS %.1f MB, RSS %.1f MB", mb(before), mb(s.rss("VmRSS")))
	start := time.Now()
	uids := make([]uint32, 3)
	for i, raw := range [][]byte{large, malformedMessage, normalMessage} {
		uid, err := appendMessage(c, raw)
		if err != nil {
			s.fatalf("appending message %d (%d bytes): %v\n%s", i, len(raw), err, d.Log())
		}
		uids[i] = uid
	}
	t.Logf("appended %d + %d + %d bytes in %v", len(large), len(malformedMessage), len(normalMessage), time.Since(start))

	var msgs []client.Message
	waitFor(s, 60*time.Second, "3 messages recorded", func() (bool, any) {
		l, err := api.ListMessages(context.Background(), "large", 10, "")
		if err != nil {
			return false, err
		}
		msgs = l.Items
		return len(msgs) >= 3, fmt.Sprintf("%d recorded", len(msgs))
	})
	after := s.peakRSS()
	t.Logf("recorded %v after the appends began; peak RSS %.1f MB before, %.1f MB after: growth %.1f MB",
		time.Since(start), mb(before), mb(after), mb(after-before))
	if after-before > maxPeakGrowth {
		s.errorf("peak RSS grew by %.1f MB (%.1f → %.1f MB), want at most %.0f MB",
			mb(after-before), mb(before), mb(after), mb(maxPeakGrowth))
	}

	byMsgID := map[string]client.Message{}
	for _, m := range msgs {
		byMsgID[m.MessageID] = m
	}
	if len(msgs) != 3 || len(byMsgID) != 3 {
		s.fatalf("got %d messages %+v, want 3 distinct", len(msgs), msgs)
	}

	big, ok := byMsgID["large-1@e2e.example.org"]
	switch {
	case !ok:
		s.errorf("the large message was not recorded")
	case !big.TooLarge || big.Subject != largeSubject || big.Size != int64(len(large)) || big.UID != uids[0]:
		s.errorf("large message: got tooLarge %v, subject %q, size %d, uid %d; want true, %q, %d, %d",
			big.TooLarge, big.Subject, big.Size, big.UID, largeSubject, len(large), uids[0])
	default:
		raw, err := api.Get(context.Background(), fmt.Sprintf("/api/v1/messages/%d/raw", big.ID))
		if err != nil {
			s.errorf("raw of the large message: %v", err)
		} else if !bytes.HasPrefix(large, raw) || len(raw) > 64<<10 || !bytes.HasSuffix(raw, []byte("\r\n\r\n")) {
			s.errorf("raw of the large message: got %d bytes starting %.80q, want its header only", len(raw), raw)
		}
	}

	bad, ok := byMsgID["malformed-1@e2e.example.org"]
	switch {
	case !ok:
		s.errorf("the malformed message was not recorded")
	case bad.ParseError == "" || bad.TooLarge || bad.Subject != "Broken structure" || bad.UID != uids[1]:
		s.errorf("malformed message: got parseError %q, tooLarge %v, subject %q, uid %d; want a parse error, false, %q, %d",
			bad.ParseError, bad.TooLarge, bad.Subject, bad.UID, "Broken structure", uids[1])
	default:
		t.Logf("malformed message's parse error: %q", bad.ParseError)
		raw, err := api.Get(context.Background(), fmt.Sprintf("/api/v1/messages/%d/raw", bad.ID))
		if err != nil {
			s.errorf("raw of the malformed message: %v", err)
		} else if !bytes.Equal(raw, malformedMessage) {
			s.errorf("raw of the malformed message: got %q, want %q", raw, malformedMessage)
		}
	}

	ok2, ok := byMsgID["normal-1@e2e.example.org"]
	switch {
	case !ok:
		s.errorf("the normal message was not recorded")
	case ok2.ParseError != "" || ok2.TooLarge || ok2.Subject != "Normal after the odd ones" || ok2.UID != uids[2]:
		s.errorf("normal message: got parseError %q, tooLarge %v, subject %q, uid %d; want none, false, %q, %d",
			ok2.ParseError, ok2.TooLarge, ok2.Subject, ok2.UID, "Normal after the odd ones", uids[2])
	case ok2.ID <= big.ID || ok2.ID <= bad.ID:
		s.errorf("normal message recorded as id %d, want after the large (%d) and malformed (%d) ones", ok2.ID, big.ID, bad.ID)
	default:
		full, err := api.GetMessage(context.Background(), ok2.ID)
		if err != nil || full.Text == nil || strings.TrimSpace(*full.Text) != "Still here." {
			s.errorf("normal message's text: got %v, %v; want %q", full.Text, err, "Still here.")
		}
	}

	st := waitState(s, api, "large", imapconf.StateIdle, 10*time.Second)
	if st.LastError != "" || st.Reconnects != 0 {
		s.errorf("status after the three messages: %+v, want no error and no reconnect", st)
	}
	s.stop()
}

// appendMessage appends raw to INBOX and returns its UID.
func appendMessage(c *imapclient.Client, raw []byte) (uint32, error) {
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
	if data.UID == 0 {
		return 0, fmt.Errorf("no APPENDUID")
	}
	return uint32(data.UID), nil
}

func mb(n int64) float64 { return float64(n) / (1 << 20) }
