package flow

import (
	"fmt"
	"regexp"
	"strings"
	"unicode"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

var fold = cases.Fold()

// Normalize prepares a subject for comparison: Unicode NFC, white space
// trimmed and runs of it collapsed to one space. Case is kept.
func Normalize(s string) string {
	return strings.Join(strings.FieldsFunc(norm.NFC.String(s), unicode.IsSpace), " ")
}

// Folded is Normalize plus Unicode case folding: "Straße" and "STRASSE" are
// equal, as are "Invoice" and "INVOICE".
func Folded(s string) string { return fold.String(Normalize(s)) }

// replyPrefix matches one reply or forward prefix as mail clients in several
// languages write it: Re:, RE:, Fwd:, FW:, AW: (German), WG: (German
// forward), SV: (Scandinavian), VS: (Finnish), Antw: (Dutch), also with a
// counter such as Re[2]: or Re^2:.
var replyPrefix = regexp.MustCompile(`(?i)^\s*(re|fwd?|aw|wg|sv|vs|antw)(\[\d+\]|\^\d+)?\s*:\s*`)

// StripReplyPrefixes removes every leading reply or forward prefix.
func StripReplyPrefixes(s string) string {
	for range 20 {
		loc := replyPrefix.FindStringIndex(s)
		if loc == nil {
			break
		}
		s = s[loc[1]:]
	}
	return s
}

// Matcher is a compiled trigger.
type Matcher struct {
	t       Trigger
	pattern string // folded for exact, contains and prefix
	re      *regexp.Regexp
}

// Compile prepares t for matching. A regex that does not compile is an
// error (Build refuses it first).
func Compile(t Trigger) (*Matcher, error) {
	m := &Matcher{t: t}
	if t.Match == MatchRegex {
		re, err := regexp.Compile(t.Subject)
		if err != nil {
			return nil, fmt.Errorf("compiling the subject regex: %w", err)
		}
		m.re = re
	} else {
		m.pattern = Folded(t.Subject)
	}
	return m, nil
}

// Match reports whether a message with the decoded subject and sender
// (its first From address) starts the flow, and if not, why.
func (m *Matcher) Match(subject, from string) (bool, string) {
	s := subject
	if m.t.IgnoreReplyPrefixes {
		s = StripReplyPrefixes(s)
	}
	if f := m.t.From; f != "" {
		ok := strings.EqualFold(from, f)
		if strings.HasPrefix(f, "@") {
			ok = strings.HasSuffix(strings.ToLower(from), strings.ToLower(f))
		}
		if !ok {
			return false, fmt.Sprintf("sender %q is not %q", from, f)
		}
	}
	switch m.t.Match {
	case MatchRegex:
		if m.re.MatchString(Normalize(s)) {
			return true, fmt.Sprintf("subject %q matches /%s/", subject, m.t.Subject)
		}
		return false, fmt.Sprintf("subject %q does not match /%s/", subject, m.t.Subject)
	case MatchContains:
		if strings.Contains(Folded(s), m.pattern) {
			return true, fmt.Sprintf("subject %q contains %q", subject, m.t.Subject)
		}
		return false, fmt.Sprintf("subject %q does not contain %q", subject, m.t.Subject)
	case MatchPrefix:
		if strings.HasPrefix(Folded(s), m.pattern) {
			return true, fmt.Sprintf("subject %q starts with %q", subject, m.t.Subject)
		}
		return false, fmt.Sprintf("subject %q does not start with %q", subject, m.t.Subject)
	default:
		if Folded(s) == m.pattern {
			return true, fmt.Sprintf("subject %q is %q", subject, m.t.Subject)
		}
		return false, fmt.Sprintf("subject %q is not %q", subject, m.t.Subject)
	}
}
