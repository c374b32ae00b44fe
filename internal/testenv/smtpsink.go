package testenv

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// SMTPSink is a minimal SMTP server on 127.0.0.1, without TLS, that keeps
// the messages it accepts: the receiving end of e-mail tests. With a
// username and password it requires AUTH PLAIN or LOGIN with them before
// MAIL FROM, and answers 535 to anything else. Every command line it
// received is kept (Transcript), so that a test can look for what a client
// must not send in the clear.
//
// Its methods may be called from any goroutine.
type SMTPSink struct {
	Host string
	Port int

	username, password string
	ln                 net.Listener

	mu         sync.Mutex
	messages   []SinkMessage
	transcript bytes.Buffer
	reject     int // reply code for RCPT TO (0: accept)
}

// SinkMessage is one message an SMTPSink accepted.
type SinkMessage struct {
	From string
	To   []string
	User string // the user it authenticated as, "" without AUTH
	Raw  []byte // the message as received (dot-unstuffed)
}

// Header returns the message's header field name, RFC 2047 words decoded.
func (m SinkMessage) Header(name string) string {
	msg, err := mail.ReadMessage(bytes.NewReader(m.Raw))
	if err != nil {
		return ""
	}
	v := msg.Header.Get(name)
	if d, err := new(mime.WordDecoder).DecodeHeader(v); err == nil {
		return d
	}
	return v
}

// Body returns the message's body, its transfer encoding undone (a
// single-part message).
func (m SinkMessage) Body() string {
	msg, err := mail.ReadMessage(bytes.NewReader(m.Raw))
	if err != nil {
		return ""
	}
	var r io.Reader = msg.Body
	switch strings.ToLower(msg.Header.Get("Content-Transfer-Encoding")) {
	case "quoted-printable":
		r = quotedprintable.NewReader(r)
	case "base64":
		r = base64.NewDecoder(base64.StdEncoding, r)
	}
	b, _ := io.ReadAll(r)
	return string(b)
}

// StartSMTPSink starts a sink, stopped at cleanup. username "" accepts
// mail without AUTH.
func StartSMTPSink(t testing.TB, username, password string) *SMTPSink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: starting the smtp sink: %v", err)
	}
	s := &SMTPSink{username: username, password: password, ln: ln}
	addr := ln.Addr().(*net.TCPAddr)
	s.Host, s.Port = addr.IP.String(), addr.Port
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { s.serve(c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return s
}

// Messages returns the messages accepted so far.
func (s *SMTPSink) Messages() []SinkMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]SinkMessage(nil), s.messages...)
}

// Transcript returns every line clients sent (message data included).
func (s *SMTPSink) Transcript() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.transcript.String()
}

// RejectRecipients makes RCPT TO answer code (a 4xx or 5xx; 0: accept).
func (s *SMTPSink) RejectRecipients(code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reject = code
}

func (s *SMTPSink) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	w := bufio.NewWriter(c)
	reply := func(lines ...string) bool {
		for _, l := range lines {
			w.WriteString(l + "\r\n")
		}
		return w.Flush() == nil
	}
	readLine := func() (string, bool) {
		l, err := r.ReadString('\n')
		if err != nil {
			return "", false
		}
		s.mu.Lock()
		s.transcript.WriteString(l)
		s.mu.Unlock()
		return strings.TrimRight(l, "\r\n"), true
	}
	if !reply("220 sink.test ESMTP ready") {
		return
	}
	var user string
	var msg *SinkMessage
	for {
		line, ok := readLine()
		if !ok {
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			ok = reply("250-sink.test", "250-AUTH PLAIN LOGIN", "250-8BITMIME", "250 SIZE 10485760")
		case "HELO":
			ok = reply("250 sink.test")
		case "AUTH":
			user, ok = s.auth(arg, reply, readLine)
		case "MAIL":
			if s.username != "" && user == "" {
				ok = reply("530 5.7.0 authentication required")
				break
			}
			msg = &SinkMessage{From: addrOf(arg), User: user}
			ok = reply("250 2.1.0 ok")
		case "RCPT":
			s.mu.Lock()
			code := s.reject
			s.mu.Unlock()
			switch {
			case msg == nil:
				ok = reply("503 5.5.1 MAIL first")
			case code != 0:
				ok = reply(strconv.Itoa(code) + " recipient refused")
			default:
				msg.To = append(msg.To, addrOf(arg))
				ok = reply("250 2.1.5 ok")
			}
		case "DATA":
			if msg == nil || len(msg.To) == 0 {
				ok = reply("503 5.5.1 RCPT first")
				break
			}
			if !reply("354 end with .") {
				return
			}
			var data bytes.Buffer
			for {
				l, ok := readLine()
				if !ok {
					return
				}
				if l == "." {
					break
				}
				data.WriteString(strings.TrimPrefix(l, ".") + "\r\n")
			}
			msg.Raw = data.Bytes()
			s.mu.Lock()
			s.messages = append(s.messages, *msg)
			s.mu.Unlock()
			msg = nil
			ok = reply("250 2.0.0 queued")
		case "RSET":
			msg = nil
			ok = reply("250 2.0.0 ok")
		case "NOOP":
			ok = reply("250 2.0.0 ok")
		case "QUIT":
			reply("221 2.0.0 bye")
			return
		default:
			ok = reply("502 5.5.2 command not implemented")
		}
		if !ok {
			return
		}
	}
}

// auth runs an AUTH exchange; it returns the user authenticated ("" when
// refused) and whether the connection is still good.
func (s *SMTPSink) auth(arg string, reply func(...string) bool, readLine func() (string, bool)) (string, bool) {
	mech, initial, _ := strings.Cut(arg, " ")
	read := func(prompt string) (string, bool) {
		if !reply("334 " + prompt) {
			return "", false
		}
		l, ok := readLine()
		if !ok {
			return "", false
		}
		b, err := base64.StdEncoding.DecodeString(l)
		return string(b), err == nil
	}
	var user, pass string
	switch strings.ToUpper(mech) {
	case "PLAIN":
		var resp string
		if initial != "" {
			b, err := base64.StdEncoding.DecodeString(initial)
			if err != nil {
				return "", reply("501 5.5.2 bad base64")
			}
			resp = string(b)
		} else {
			var ok bool
			if resp, ok = read(""); !ok {
				return "", reply("501 5.5.2 bad response")
			}
		}
		parts := strings.Split(resp, "\x00")
		if len(parts) != 3 {
			return "", reply("501 5.5.2 bad PLAIN response")
		}
		user, pass = parts[1], parts[2]
	case "LOGIN":
		var ok bool
		if user, ok = read(base64.StdEncoding.EncodeToString([]byte("Username:"))); !ok {
			return "", reply("501 5.5.2 bad response")
		}
		if pass, ok = read(base64.StdEncoding.EncodeToString([]byte("Password:"))); !ok {
			return "", reply("501 5.5.2 bad response")
		}
	default:
		return "", reply("504 5.5.4 mechanism not supported")
	}
	if s.username == "" || user != s.username || pass != s.password {
		return "", reply("535 5.7.8 authentication credentials invalid")
	}
	return user, reply("235 2.7.0 authenticated")
}

// addrOf returns the address in "FROM:<a@b> SIZE=…" or "TO:<a@b>".
func addrOf(arg string) string {
	i, j := strings.Index(arg, "<"), strings.Index(arg, ">")
	if i < 0 || j < i {
		return ""
	}
	return arg[i+1 : j]
}

// String describes the sink.
func (s *SMTPSink) String() string { return fmt.Sprintf("smtp sink %s:%d", s.Host, s.Port) }
