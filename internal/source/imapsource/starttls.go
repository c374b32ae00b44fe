package imapsource

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"strings"

	"mailtrigger/internal/source"
)

// startTLSTag is the tag of the STARTTLS command. imapclient numbers its
// own commands from T1 on the connection secured by it, so they differ.
const startTLSTag = "S1"

// replayedGreeting is what imapclient is handed as the greeting after
// STARTTLS: the server sent its own in the clear, before, and says nothing
// after the handshake. It has no capabilities, so imapclient asks for them
// over TLS (those sent in the clear are forgotten, RFC 3501 §6.2.1).
const replayedGreeting = "* OK greeting read before STARTTLS\r\n"

// startTLS secures d's plain connection: it reads the greeting, sends
// STARTTLS whatever the capabilities say (a server without it answers BAD
// or NO), and once the server agreed does the TLS handshake. imapclient is
// then to read replayedGreeting before what comes over TLS.
//
// It does this rather than imapclient.NewStartTLS so that every line read
// in the clear is bounded (source.ReadLine) and what is read over TLS goes
// through a responseLimit too: NewStartTLS makes its TLS connection itself,
// out of reach. Nothing but STARTTLS is sent in the clear. A PREAUTH
// greeting is refused (RFC 3501 §7.1.4), and so is anything the server
// sent after its answer to STARTTLS: it came in the clear and could have
// been injected.
//
// Every error is a StepTLS *StepError.
func startTLS(d *source.Dialing) (*tls.Conn, error) {
	r := bufio.NewReader(d.Conn)
	if err := plainGreeting(r); err != nil {
		return nil, d.Fail(StepTLS, fmt.Errorf("greeting: %w", err))
	}
	if _, err := io.WriteString(d.Conn, startTLSTag+" STARTTLS\r\n"); err != nil {
		return nil, d.Fail(StepTLS, fmt.Errorf("sending STARTTLS: %w", err))
	}
	if err := startTLSAnswer(r); err != nil {
		return nil, d.Fail(StepTLS, err)
	}
	if r.Buffered() > 0 {
		return nil, d.Fail(StepTLS, errors.New("server sent data after its STARTTLS response"))
	}
	return d.StartTLS()
}

// plainGreeting reads the greeting on a connection without TLS.
func plainGreeting(r *bufio.Reader) error {
	line, err := source.ReadLine(r)
	if err != nil {
		return err
	}
	untagged, ok := strings.CutPrefix(line, "* ")
	if !ok {
		return fmt.Errorf("unexpected greeting %.100q", line)
	}
	switch status, text := statusOf(untagged); status {
	case "OK":
		return nil
	case "PREAUTH":
		return errors.New("server sent PREAUTH on a connection without TLS, which is refused")
	case "BYE":
		return fmt.Errorf("server said BYE: %.100q", text)
	}
	return fmt.Errorf("unexpected greeting %.100q", line)
}

// startTLSAnswer reads the lines up to the server's answer to STARTTLS,
// skipping untagged ones (such as CAPABILITY), and returns nil if it was
// OK.
func startTLSAnswer(r *bufio.Reader) error {
	for {
		line, err := source.ReadLine(r)
		if err != nil {
			return fmt.Errorf("reading the answer to STARTTLS: %w", err)
		}
		if strings.HasPrefix(line, "* ") {
			continue
		}
		tagged, ok := strings.CutPrefix(line, startTLSTag+" ")
		if !ok {
			return fmt.Errorf("unexpected answer to STARTTLS: %.100q", line)
		}
		status, text := statusOf(tagged)
		switch status {
		case "OK":
			return nil
		case "NO", "BAD":
			return fmt.Errorf("server refused STARTTLS: %s %.100q", status, text)
		}
		return fmt.Errorf("unexpected answer to STARTTLS: %.100q", line)
	}
}

// statusOf splits "OK text" into the status, upper-cased, and the text.
func statusOf(s string) (status, text string) {
	status, text, _ = strings.Cut(s, " ")
	return strings.ToUpper(status), text
}
