// Package valid collects field-level validation errors and holds the rules
// shared by several entities (names, e-mail addresses, host names, GUIDs, URLs).
package valid

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"maps"
	"net"
	"net/mail"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Errors maps a JSON field name to what is wrong with it. It is the error a
// rejected input returns; the API answers it with 400 and every field.
type Errors map[string]string

// Add records msg for field unless the field already has a message.
func (e Errors) Add(field, msg string) {
	if _, ok := e[field]; !ok {
		e[field] = msg
	}
}

// Err returns e as an error, or nil when it is empty.
func (e Errors) Err() error {
	if len(e) == 0 {
		return nil
	}
	return e
}

func (e Errors) Error() string {
	var b strings.Builder
	b.WriteString("invalid input: ")
	for i, k := range slices.Sorted(maps.Keys(e)) {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s: %s", k, e[k])
	}
	return b.String()
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_]+$`)

// MaxNameLen is the longest name of an IMAP configuration or a flow.
const MaxNameLen = 50

// Name checks the rule shared by IMAP configuration and flow names: 1–50
// letters, digits and underscores. It returns "" when s is valid.
func Name(s string) string {
	switch {
	case s == "":
		return "required"
	case len(s) > MaxNameLen:
		return fmt.Sprintf("at most %d characters", MaxNameLen)
	case !nameRE.MatchString(s):
		return "only letters, digits and underscore"
	}
	return ""
}

// Email checks that s is a bare e-mail address (local@domain, no display name).
func Email(s string) string {
	if s == "" {
		return "required"
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s || a.Name != "" {
		return "must be an e-mail address such as name@example.com"
	}
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || Host(s[at+1:]) != "" {
		return "must be an e-mail address such as name@example.com"
	}
	return ""
}

// Host checks that s is a host name or an IP address and nothing else: no
// scheme, port, path or brackets.
func Host(s string) string {
	const msg = "must be a host name or IP address, without scheme, port or path"
	if s == "" {
		return "required"
	}
	if net.ParseIP(s) != nil {
		return ""
	}
	if len(s) > 253 {
		return msg
	}
	for label := range strings.SplitSeq(strings.TrimSuffix(s, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return msg
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return msg
			}
		}
	}
	return ""
}

var guidRE = regexp.MustCompile(`^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$`)

// GUID checks that s has the form 8-4-4-4-12 hexadecimal digits.
func GUID(s string) string {
	if s == "" {
		return "required"
	}
	if !guidRE.MatchString(s) {
		return "must be a GUID such as 00000000-0000-0000-0000-000000000000"
	}
	return ""
}

// Domain checks that s is a domain name with at least two labels.
func Domain(s string) string {
	if Host(s) != "" || net.ParseIP(s) != nil || !strings.Contains(strings.Trim(s, "."), ".") {
		return "must be a domain name such as contoso.onmicrosoft.com"
	}
	return ""
}

// HTTPSURL checks that s is an absolute https URL. http is allowed only for
// loopback hosts, where tests and local proxies live.
func HTTPSURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.User != nil || (u.Scheme != "https" && u.Scheme != "http") {
		return "must be an absolute https:// URL"
	}
	if u.Scheme == "http" && !IsLoopback(u.Hostname()) {
		return "must be https (http only for localhost)"
	}
	return ""
}

// IsLoopback reports whether host is localhost or a loopback address.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// PEMCertificates checks that s holds at least one PEM certificate and only
// certificates that parse.
func PEMCertificates(s string) string {
	rest := []byte(s)
	n := 0
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return fmt.Sprintf("must contain only PEM certificates, found %q", block.Type)
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return fmt.Sprintf("certificate %d does not parse: %v", n+1, err)
		}
		n++
	}
	if n == 0 || strings.TrimSpace(string(rest)) != "" {
		return "must be one or more PEM certificates (-----BEGIN CERTIFICATE-----)"
	}
	return ""
}

// Text checks the length of free text in characters and that it is UTF-8.
func Text(s string, max int) string {
	if !utf8.ValidString(s) {
		return "must be valid UTF-8"
	}
	if n := utf8.RuneCountInString(s); n > max {
		return fmt.Sprintf("at most %d characters (got %d)", max, n)
	}
	return ""
}

// OneOf checks that s is one of allowed.
func OneOf(s string, allowed ...string) string {
	if slices.Contains(allowed, s) {
		return ""
	}
	return "must be one of " + strings.Join(allowed, ", ")
}

// Line checks that s is valid UTF-8 without control characters (NUL, tab,
// line breaks, DEL, C1): the rule of every single-line text input.
// PostgreSQL refuses NUL and invalid UTF-8 outright; the others have no place
// in names, addresses, URLs or header values.
func Line(s string) string {
	return controls(s, false)
}

// MultiLine checks that s is valid UTF-8 whose only control characters are
// tab, line feed and carriage return: the rule of free text such as
// descriptions and PEM certificates.
func MultiLine(s string) string {
	return controls(s, true)
}

func controls(s string, multiLine bool) string {
	if !utf8.ValidString(s) {
		return "must be valid UTF-8"
	}
	for _, r := range s {
		if !unicode.IsControl(r) {
			continue
		}
		if multiLine && (r == '\t' || r == '\n' || r == '\r') {
			continue
		}
		if r == 0 {
			return "must not contain NUL characters"
		}
		if multiLine {
			return "must not contain control characters other than tab and line breaks"
		}
		return "must not contain control characters (such as NUL, tab or line breaks)"
	}
	return ""
}

// Strings checks every string in v (a struct, or a pointer, slice or map
// holding them, as decoded from a request) with Line, or with MultiLine for
// a struct field tagged `valid:"multiline"` (`valid:"-"` skips a read-only
// field), and names each bad one by its
// JSON path (name, start.emailTrigger.subject, activities[0].headers.X-Key).
// Map keys are checked as single lines, named as path.key. It applies to every string field of
// an input, present and future, so that no field can carry NUL to the
// database.
func Strings(v any) Errors {
	e := Errors{}
	walkStrings(reflect.ValueOf(v), "", false, e)
	return e
}

func walkStrings(v reflect.Value, path string, multiLine bool, e Errors) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			walkStrings(v.Elem(), path, multiLine, e)
		}
	case reflect.String:
		if m := controls(v.String(), multiLine); m != "" {
			e.Add(path, m)
		}
	case reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" || f.Tag.Get("valid") == "-" {
				continue
			}
			if name == "" {
				name = f.Name
			}
			if path != "" {
				name = path + "." + name
			}
			walkStrings(v.Field(i), name, f.Tag.Get("valid") == "multiline", e)
		}
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Uint8 {
			return // []byte is data, not text
		}
		for i := range v.Len() {
			walkStrings(v.Index(i), fmt.Sprintf("%s[%d]", path, i), multiLine, e)
		}
	case reflect.Map:
		iter := v.MapRange()
		for iter.Next() {
			k := iter.Key()
			p := path
			if k.Kind() == reflect.String {
				p = path + "." + k.String()
				if m := controls(k.String(), false); m != "" {
					e.Add(p, "the name "+m)
					continue
				}
			}
			walkStrings(iter.Value(), p, multiLine, e)
		}
	}
}

// Query checks the names and values of URL query parameters with Line,
// naming each bad parameter (a bad name is reported under "query").
func Query(q url.Values) Errors {
	e := Errors{}
	for k, vs := range q {
		if m := Line(k); m != "" {
			e.Add("query", "a parameter name "+m)
			continue
		}
		for _, v := range vs {
			if m := Line(v); m != "" {
				e.Add(k, m)
			}
		}
	}
	return e
}
