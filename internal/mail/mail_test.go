package mail

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// msg joins lines with CRLF, as messages come from IMAP.
func msg(lines ...string) []byte {
	return []byte(strings.Join(lines, "\r\n"))
}

// checkInvariants fails if m breaks a promise every Message keeps.
func checkInvariants(t *testing.T, m *Message) {
	t.Helper()
	if m == nil {
		t.Fatal("got nil message, want a message")
	}
	strs := []string{m.MessageID, m.Subject, m.Text, m.HTML}
	for _, l := range [][]Address{m.From, m.To, m.Cc, m.ReplyTo} {
		if l == nil {
			t.Errorf("got nil address list, want non-nil")
		}
		for _, a := range l {
			strs = append(strs, a.Name, a.Address)
		}
	}
	if m.Attachments == nil {
		t.Errorf("got nil attachments, want non-nil")
	}
	for _, a := range m.Attachments {
		strs = append(strs, a.Filename, a.ContentType, a.ContentID)
		sum := sha256.Sum256(a.Content)
		if a.SHA256 != hex.EncodeToString(sum[:]) || a.Size != int64(len(a.Content)) {
			t.Errorf("attachment %q: got sha256 %s size %d, want those of its content", a.Filename, a.SHA256, a.Size)
		}
	}
	strs = append(strs, m.ParseErrors...)
	for _, s := range strs {
		if !utf8.ValidString(s) || strings.Contains(s, "\x00") {
			t.Errorf("got string %q, want valid UTF-8 without NUL", s)
		}
	}
	for _, p := range m.ParseErrors {
		if strings.Contains(p, "internal error") {
			t.Errorf("got parse error %q, want no internal error", p)
		}
	}
}

func TestParseSubject(t *testing.T) {
	tests := []struct {
		name        string
		header      string
		want        string
		wantProblem bool
	}{
		{"utf-8 B", "Subject: =?UTF-8?B?R3LDvMOfZSBhdXMgS8O2bG4g4oCTIPCfmIA=?=", "Grüße aus Köln – 😀", false},
		{"utf-8 Q", "Subject: =?utf-8?Q?Rechnung_Nr=2E_42?=", "Rechnung Nr. 42", false},
		{"iso-8859-1", "Subject: =?ISO-8859-1?Q?Caf=E9?=", "Café", false},
		{"iso-2022-jp", "Subject: =?ISO-2022-JP?B?GyRCJUYlOSVIGyhCIBskQiVhITwlaxsoQg==?=", "テスト メール", false},
		{"koi8-r", "Subject: =?KOI8-R?B?8NLJ18XULCDNydI=?=", "Привет, мир", false},
		{"gb2312", "Subject: =?GB2312?B?xOO6w8rAvec=?=", "你好世界", false},
		{"adjacent encoded words", "Subject: =?utf-8?q?Invoice?= =?utf-8?q?_42?=", "Invoice 42", false},
		{"folded over several lines", "Subject: =?utf-8?q?Order?=\r\n =?utf-8?q?_confirmation?=\r\n\tfor you", "Order confirmation\tfor you", false},
		{"folded plain", "Subject: This is a long\r\n subject line", "This is a long subject line", false},
		{"raw latin-1", "Subject: Gr\xfc\xdfe aus K\xf6ln", "Grüße aus Köln", false},
		{"raw utf-8", "Subject: Grüße aus Köln", "Grüße aus Köln", false},
		{"empty", "Subject:", "", false},
		{"missing", "X-Other: 1", "", false},
		{"unknown charset", "Subject: =?x-klingon?q?Qapla?=", "=?x-klingon?q?Qapla?=", true},
		{"malformed word", "Subject: =?utf-8?b?####?= x", "=?utf-8?b?####?= x", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := Parse(msg("From: a@example.org", tt.header, "", "body"))
			checkInvariants(t, m)
			if m.Subject != tt.want {
				t.Errorf("got %q, want %q", m.Subject, tt.want)
			}
			if (len(m.ParseErrors) > 0) != tt.wantProblem {
				t.Errorf("got parse errors %q, want errors %v", m.ParseErrors, tt.wantProblem)
			}
		})
	}
}

func TestParseAddresses(t *testing.T) {
	tests := []struct {
		name        string
		headers     []string
		wantFrom    []Address
		wantTo      []Address
		wantCc      []Address
		wantReplyTo []Address
		wantProblem bool
	}{
		{
			name:     "rfc 2047 examples",
			headers:  []string{"From: =?US-ASCII?Q?Keith_Moore?= <moore@cs.utk.edu>", "To: =?ISO-8859-1?Q?Keld_J=F8rn_Simonsen?= <keld@dkuug.dk>", "CC: =?ISO-8859-1?Q?Andr=E9?= Pirard <PIRARD@vm1.ulg.ac.be>"},
			wantFrom: []Address{{"Keith Moore", "moore@cs.utk.edu"}},
			wantTo:   []Address{{"Keld Jørn Simonsen", "keld@dkuug.dk"}},
			wantCc:   []Address{{"André Pirard", "PIRARD@vm1.ulg.ac.be"}},
		},
		{
			name:     "encoded word inside quotes",
			headers:  []string{`From: "=?utf-8?q?J=C3=B6rg_M=C3=BCller?=" <joerg@example.de>`},
			wantFrom: []Address{{"Jörg Müller", "joerg@example.de"}},
		},
		{
			name:     "encoded name in koi8-r",
			headers:  []string{"From: =?KOI8-R?B?8NLJ18XULCDNydI=?= <ivan@example.ru>"},
			wantFrom: []Address{{"Привет, мир", "ivan@example.ru"}},
		},
		{
			name:     "raw latin-1 name",
			headers:  []string{"From: J\xf6rg <joerg@example.de>"},
			wantFrom: []Address{{"Jörg", "joerg@example.de"}},
		},
		{
			name:     "comment as name",
			headers:  []string{"From: moore@cs.utk.edu (Keith Moore)"},
			wantFrom: []Address{{"Keith Moore", "moore@cs.utk.edu"}},
		},
		{
			name:     "group",
			headers:  []string{"From: a@example.org", `To: Team: one@example.org, "Two, Esq." <two@example.org>;, three@example.org`},
			wantFrom: []Address{{"", "a@example.org"}},
			wantTo:   []Address{{"", "one@example.org"}, {"Two, Esq.", "two@example.org"}, {"", "three@example.org"}},
		},
		{
			name:     "empty group",
			headers:  []string{"From: a@example.org", "To: undisclosed-recipients:;"},
			wantFrom: []Address{{"", "a@example.org"}},
		},
		{
			name:        "several To and Cc fields",
			headers:     []string{"From: a@example.org", "To: b@example.org", "To: c@example.org", "Cc: d@example.org, E <e@example.org>", "Reply-To: Help Desk <help@example.org>"},
			wantFrom:    []Address{{"", "a@example.org"}},
			wantTo:      []Address{{"", "b@example.org"}, {"", "c@example.org"}},
			wantCc:      []Address{{"", "d@example.org"}, {"E", "e@example.org"}},
			wantReplyTo: []Address{{"Help Desk", "help@example.org"}},
		},
		{
			name:    "missing from",
			headers: []string{"To: b@example.org"},
			wantTo:  []Address{{"", "b@example.org"}},
		},
		{
			name:        "from without angle brackets",
			headers:     []string{"From: John Smith john@example.com"},
			wantFrom:    []Address{{"John Smith", "john@example.com"}},
			wantProblem: true,
		},
		{
			name:        "from with only a name",
			headers:     []string{"From: Mailer Daemon"},
			wantFrom:    []Address{{"Mailer Daemon", ""}},
			wantProblem: true,
		},
		{
			name:        "null sender",
			headers:     []string{"From: <>"},
			wantProblem: true,
		},
		{
			name:        "unknown charset in name",
			headers:     []string{"From: =?x-klingon?q?Worf?= <worf@example.org>, Data <data@example.org>"},
			wantFrom:    []Address{{"=?x-klingon?q?Worf?=", "worf@example.org"}, {"Data", "data@example.org"}},
			wantProblem: true,
		},
		{
			name:        "garbled list keeps the good ones",
			headers:     []string{`To: "Unclosed <a@example.org>, b@example.org`},
			wantTo:      []Address{{"Unclosed", "a@example.org"}, {"", "b@example.org"}},
			wantProblem: true,
		},
		{
			name:        "unquoted dots and comma in name",
			headers:     []string{"From: Smith, J. <j.smith@example.org>"},
			wantFrom:    []Address{{"Smith", ""}, {"J.", "j.smith@example.org"}},
			wantProblem: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := Parse(msg(append(tt.headers, "Subject: x", "", "body")...))
			checkInvariants(t, m)
			for _, c := range []struct {
				field     string
				got, want []Address
			}{{"from", m.From, tt.wantFrom}, {"to", m.To, tt.wantTo}, {"cc", m.Cc, tt.wantCc}, {"reply-to", m.ReplyTo, tt.wantReplyTo}} {
				if c.want == nil {
					c.want = []Address{}
				}
				if !reflect.DeepEqual(c.got, c.want) {
					t.Errorf("%s: got %+v, want %+v", c.field, c.got, c.want)
				}
			}
			if (len(m.ParseErrors) > 0) != tt.wantProblem {
				t.Errorf("got parse errors %q, want errors %v", m.ParseErrors, tt.wantProblem)
			}
		})
	}
}

func TestParseDate(t *testing.T) {
	cet := time.FixedZone("", 3600)
	tests := []struct {
		name        string
		raw         string
		want        time.Time
		wantProblem bool
	}{
		{"rfc 5322", "Tue, 1 Jul 2003 10:52:37 +0200", time.Date(2003, 7, 1, 8, 52, 37, 0, time.UTC), false},
		{"with comment", "Mon, 2 Jan 2006 15:04:05 +0100 (CET)", time.Date(2006, 1, 2, 15, 4, 5, 0, cet), false},
		{"without weekday", "2 Jan 2006 15:04:05 +0100", time.Date(2006, 1, 2, 15, 4, 5, 0, cet), false},
		{"two-digit year", "Mon, 2 Jan 06 15:04:05 +0100", time.Date(2006, 1, 2, 15, 4, 5, 0, cet), false},
		{"obsolete zone", "Mon, 2 Jan 2006 14:04:05 GMT", time.Date(2006, 1, 2, 14, 4, 5, 0, time.UTC), false},
		{"no space after comma", "Mon,2 Jan 2006 15:04:05 +0100", time.Date(2006, 1, 2, 15, 4, 5, 0, cet), false},
		{"asctime", "Mon Jan  2 14:04:05 2006", time.Date(2006, 1, 2, 14, 4, 5, 0, time.UTC), false},
		{"iso 8601", "2006-01-02T15:04:05+01:00", time.Date(2006, 1, 2, 15, 4, 5, 0, cet), false},
		{"no zone", "Mon, 2 Jan 2006 14:04:05", time.Date(2006, 1, 2, 14, 4, 5, 0, time.UTC), false},
		{"folded", "Mon, 2 Jan 2006\r\n 15:04:05 +0100", time.Date(2006, 1, 2, 15, 4, 5, 0, cet), false},
		{"missing", "", time.Time{}, false},
		{"garbage", "yesterday, around noon", time.Time{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, problem := parseDate(tt.raw)
			if !got.Equal(tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
			if (problem != "") != tt.wantProblem {
				t.Errorf("got problem %q, want problem %v", problem, tt.wantProblem)
			}
		})
	}
}

func TestParseMessageID(t *testing.T) {
	tests := []struct{ name, raw, want string }{
		{"bracketed", "<abc.123@example.org>", "abc.123@example.org"},
		{"spaces around", "  <abc@example.org>  ", "abc@example.org"},
		{"with comment", "<abc@example.org> (added by relay)", "abc@example.org"},
		{"no brackets", "abc@example.org", "abc@example.org"},
		{"folded", "\r\n <abc@example.org>", "abc@example.org"},
		{"unclosed", "<abc@example.org", "abc@example.org"},
		{"missing", "", ""},
		{"too long", "<" + strings.Repeat("x", 2000) + ">", strings.Repeat("x", maxMessageIDLen) + "…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := parseMessageID(tt.raw); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// att summarises an attachment for comparison.
type att struct {
	Filename, ContentType string
	Inline                bool
	ContentID             string
	Content               string
}

func summarise(as []Attachment) []att {
	out := []att{}
	for _, a := range as {
		out = append(out, att{a.Filename, a.ContentType, a.Inline, a.ContentID, string(a.Content)})
	}
	return out
}

type bodiesCase struct {
	name      string
	raw       []byte
	wantText  string
	wantHTML  string
	wantAtt   []att
	wantClean bool // no parse errors expected
}

// bodiesCases returns TestParseBodies's cases (also parsed by TestFastPathAgrees).
func bodiesCases() []bodiesCase {
	return []bodiesCase{
		{
			name:      "no mime headers",
			raw:       msg("From: a@example.org", "Subject: hi", "", "Hello,", "world.", ""),
			wantText:  "Hello,\nworld.\n",
			wantClean: true,
		},
		{
			name: "text/plain quoted-printable latin-1",
			raw: msg("From: a@example.org", "MIME-Version: 1.0", "Content-Type: text/plain; charset=iso-8859-1",
				"Content-Transfer-Encoding: quoted-printable", "", "Gr=FC=DFe, soft=", "break=3D ok   ", "=E4=", ""),
			wantText:  "Grüße, softbreak= ok\nä",
			wantClean: true,
		},
		{
			name: "text/html only base64",
			raw: msg("From: a@example.org", "Content-Type: text/html; charset=UTF-8", "Content-Transfer-Encoding: base64", "",
				"PHA+R3LDvMOfZTwvcD4=", ""),
			wantHTML:  "<p>Grüße</p>",
			wantClean: true,
		},
		{
			name:      "html charset from meta tag",
			raw:       msg("From: a@example.org", "Content-Type: text/html", "", "<html><head><meta charset=\"windows-1252\"></head><body>\x80 5</body></html>"),
			wantHTML:  "<html><head><meta charset=\"windows-1252\"></head><body>€ 5</body></html>",
			wantClean: true,
		},
		{
			name:      "body charset koi8-r 8bit",
			raw:       msg("From: a@example.org", "Content-Type: text/plain; charset=\"KOI8-R\"", "Content-Transfer-Encoding: 8bit", "", "\xf0\xd2\xc9\xd7\xc5\xd4"),
			wantText:  "Привет",
			wantClean: true,
		},
		{
			name:      "body charset iso-2022-jp 7bit",
			raw:       msg("From: a@example.org", "Content-Type: text/plain; charset=ISO-2022-JP", "", "\x1b$B%F%9%H\x1b(B"),
			wantText:  "テスト",
			wantClean: true,
		},
		{
			name:      "undeclared 8-bit body read as windows-1252",
			raw:       msg("From: a@example.org", "", "caf\xe9 \x80"),
			wantText:  "café €",
			wantClean: true,
		},
		{
			name:      "undeclared utf-8 body kept",
			raw:       msg("From: a@example.org", "Content-Type: text/plain; charset=us-ascii", "", "café €"),
			wantText:  "café €",
			wantClean: true,
		},
		{
			name:     "unknown body charset",
			raw:      msg("From: a@example.org", "Content-Type: text/plain; charset=x-klingon", "", "caf\xe9"),
			wantText: "café",
		},
		{
			name: "multipart/alternative",
			raw: msg("From: a@example.org", "MIME-Version: 1.0", `Content-Type: multipart/alternative; boundary="b1"`, "",
				"preamble", "--b1", "Content-Type: text/plain; charset=utf-8", "", "Hello *you*", "--b1",
				"Content-Type: text/html; charset=utf-8", "Content-Transfer-Encoding: quoted-printable", "",
				"<p>Hello <b>you</b> =E2=82=AC</p>", "--b1--", "epilogue", ""),
			wantText:  "Hello *you*",
			wantHTML:  "<p>Hello <b>you</b> €</p>",
			wantClean: true,
		},
		{
			name: "multipart/mixed with attachments",
			raw: msg("From: a@example.org", "MIME-Version: 1.0", "Content-Type: multipart/mixed; boundary=outer", "",
				"--outer", "Content-Type: text/plain; charset=utf-8", "Content-Disposition: inline", "", "See attached.",
				"--outer", "Content-Type: application/pdf", `Content-Disposition: attachment; filename="report.pdf"`,
				"Content-Transfer-Encoding: base64", "", "JVBERi0xLjQK", "",
				"--outer", "Content-Type: application/octet-stream",
				"Content-Disposition: attachment; filename*=utf-8''%E2%82%AC%20rates.txt", "", "1 EUR",
				"--outer", "Content-Type: text/plain", "Content-Disposition: attachment;",
				" filename*0*=iso-8859-1''caf%E9; filename*1*=%20menu; filename*2=\".txt\"", "", "soup",
				"--outer", "Content-Type: text/csv; charset=windows-1252; name=\"prices.csv\"", "", "caf\xe9;1",
				"--outer", "Content-Type: application/octet-stream; name=\"=?UTF-8?B?w6ljaG8uYmlu?=\"", "", "\x00\x01",
				"--outer", "Content-Type: application/zip", `Content-Disposition: attachment; filename="C:\Users\me\..\stuff.zip"`, "", "PK",
				"--outer--", ""),
			wantText: "See attached.",
			wantAtt: []att{
				{"report.pdf", "application/pdf", false, "", "%PDF-1.4\n"},
				{"€ rates.txt", "application/octet-stream", false, "", "1 EUR"},
				{"café menu.txt", "text/plain", false, "", "soup"},
				{"prices.csv", "text/csv", false, "", "caf\xe9;1"},
				{"écho.bin", "application/octet-stream", false, "", "\x00\x01"},
				{"stuff.zip", "application/zip", false, "", "PK"},
			},
			wantClean: true,
		},
		{
			name: "rfc 2231 examples",
			raw: msg("From: a@example.org", "Content-Type: multipart/mixed; boundary=b", "",
				"--b", "Content-Type: application/x-stuff;", " name*=us-ascii'en-us'This%20is%20%2A%2A%2Afun%2A%2A%2A", "", "1",
				"--b", "Content-Type: application/x-stuff", "Content-Disposition: attachment;",
				" filename*0*=us-ascii'en'This%20is%20even%20more%20;", " filename*1*=%2A%2A%2Afun%2A%2A%2A%20;", ` filename*2="isn't it!"`, "", "2",
				"--b", "Content-Type: application/x-stuff;", ` name*0="ftp://";`, ` name*1="cs.utk.edu/pub/moore/bulk-mailer/bulk-mailer.tar"`, "", "3",
				"--b--"),
			wantAtt: []att{
				{"This is ***fun***", "application/x-stuff", false, "", "1"},
				{"This is even more ***fun*** isn't it!", "application/x-stuff", false, "", "2"},
				{"bulk-mailer.tar", "application/x-stuff", false, "", "3"},
			},
			wantClean: true,
		},
		{
			name: "inline image in multipart/related",
			raw: msg("From: a@example.org", "Content-Type: multipart/alternative; boundary=alt", "",
				"--alt", "Content-Type: text/plain", "", "logo below",
				"--alt", "Content-Type: multipart/related; boundary=rel", "",
				"--rel", "Content-Type: text/html", "", `<img src="cid:logo@x">`,
				"--rel", "Content-Type: image/png", "Content-ID: <logo@x>", "Content-Transfer-Encoding: base64", "", "iVBORw==",
				"--rel", "Content-Type: image/gif; name=dot.gif", "Content-Disposition: inline; filename=dot.gif", "", "GIF89a",
				"--rel--", "--alt--"),
			wantText: "logo below",
			wantHTML: `<img src="cid:logo@x">`,
			wantAtt: []att{
				{"", "image/png", true, "logo@x", "\x89PNG"},
				{"dot.gif", "image/gif", true, "", "GIF89a"},
			},
			wantClean: true,
		},
		{
			name: "nested message/rfc822",
			raw: msg("From: a@example.org", "Content-Type: multipart/mixed; boundary=o", "",
				"--o", "Content-Type: text/plain", "", "Forwarding this.",
				"--o", "Content-Type: message/rfc822", "",
				"From: b@example.org", "Subject: =?utf-8?q?Inner/=C3=BCber?=", "Content-Type: multipart/alternative; boundary=i", "",
				"--i", "Content-Type: text/plain", "", "inner text", "--i--",
				"--o--"),
			wantText: "Forwarding this.",
			wantAtt: []att{{"Inner_über.eml", "message/rfc822", false, "",
				"From: b@example.org\r\nSubject: =?utf-8?q?Inner/=C3=BCber?=\r\nContent-Type: multipart/alternative; boundary=i\r\n\r\n--i\r\nContent-Type: text/plain\r\n\r\ninner text\r\n--i--"}},
			wantClean: true,
		},
		{
			name: "multipart/digest default type",
			raw: msg("From: a@example.org", "Content-Type: multipart/digest; boundary=d", "",
				"--d", "", "Subject: one", "", "first", "--d--"),
			wantAtt:   []att{{"one.eml", "message/rfc822", false, "", "Subject: one\r\n\r\nfirst"}},
			wantClean: true,
		},
		{
			name: "text parts in mixed are concatenated",
			raw: msg("From: a@example.org", "Content-Type: multipart/mixed; boundary=m", "",
				"--m", "", "part one", "--m", "Content-Type: image/jpeg; name=a.jpg", "", "JPG", "--m", "Content-Type: text/plain", "", "part two", "--m--"),
			wantText:  "part one\npart two",
			wantAtt:   []att{{"a.jpg", "image/jpeg", false, "", "JPG"}},
			wantClean: true,
		},
		{
			name: "calendar and signature are attachments",
			raw: msg("From: a@example.org", "Content-Type: multipart/alternative; boundary=c", "",
				"--c", "Content-Type: text/plain", "", "Invitation", "--c", "Content-Type: text/calendar; method=REQUEST", "", "BEGIN:VCALENDAR", "--c--"),
			wantText:  "Invitation",
			wantAtt:   []att{{"", "text/calendar", false, "", "BEGIN:VCALENDAR"}},
			wantClean: true,
		},
		{
			name:      "bare LF line endings",
			raw:       []byte("From: a@example.org\nSubject: lf\nContent-Type: multipart/alternative; boundary=x\n\n--x\nContent-Type: text/plain\n\nline 1\nline 2\n--x\nContent-Type: text/html\n\n<b>hi</b>\n--x--\n"),
			wantText:  "line 1\nline 2",
			wantHTML:  "<b>hi</b>",
			wantClean: true,
		},
	}
}

func TestParseBodies(t *testing.T) {
	tests := bodiesCases()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := Parse(tt.raw)
			checkInvariants(t, m)
			if m.Text != tt.wantText {
				t.Errorf("text: got %q, want %q", m.Text, tt.wantText)
			}
			if m.HTML != tt.wantHTML {
				t.Errorf("html: got %q, want %q", m.HTML, tt.wantHTML)
			}
			want := tt.wantAtt
			if want == nil {
				want = []att{}
			}
			if got := summarise(m.Attachments); !reflect.DeepEqual(got, want) {
				t.Errorf("attachments: got %+v, want %+v", got, want)
			}
			if tt.wantClean && len(m.ParseErrors) > 0 {
				t.Errorf("got parse errors %q, want none", m.ParseErrors)
			}
			if !tt.wantClean && len(m.ParseErrors) == 0 {
				t.Errorf("got no parse errors, want some")
			}
		})
	}
}

type malformedCase struct {
	name        string
	raw         []byte
	wantSubject string
	wantText    string // checked if not empty
	wantHTML    string // checked if not empty
	wantAtts    int
	wantProblem string // a substring of some parse error; "" for none
}

// malformedCases returns TestParseMalformed's cases (also parsed by TestFastPathAgrees).
func malformedCases() []malformedCase {
	garbage := make([]byte, 4096)
	for i := range garbage {
		garbage[i] = byte(i*7 + i/13)
	}
	return []malformedCase{
		{
			name:        "empty input",
			raw:         nil,
			wantProblem: "empty message",
		},
		{
			name:        "headers only",
			raw:         []byte("From: a@example.org\r\nSubject: only headers"),
			wantSubject: "only headers",
		},
		{
			name:        "binary garbage",
			raw:         garbage,
			wantProblem: "no header section",
		},
		{
			name:        "missing boundary parameter",
			raw:         msg("Subject: mb", "Content-Type: multipart/mixed", "", "--xyz", "Content-Type: text/plain", "", "hello", "--xyz--"),
			wantSubject: "mb",
			wantText:    "--xyz\nContent-Type: text/plain\n\nhello\n--xyz--",
			wantProblem: "multipart/mixed without boundary",
		},
		{
			name:        "boundary never occurs",
			raw:         msg("Subject: bn", "Content-Type: multipart/mixed; boundary=nope", "", "just text"),
			wantText:    "just text",
			wantSubject: "bn",
			wantProblem: "no parts could be read",
		},
		{
			name:        "unclosed boundary",
			raw:         msg("Subject: ub", "Content-Type: multipart/mixed; boundary=b", "", "--b", "Content-Type: text/plain", "", "first", "--b", "Content-Type: text/html", "", "<i>second</i>"),
			wantSubject: "ub",
			wantText:    "first",
			wantHTML:    "<i>second</i>",
			wantProblem: "not closed",
		},
		{
			name:        "broken base64 text",
			wantSubject: "b64",
			raw:         msg("Subject: b64", "Content-Type: text/plain", "Content-Transfer-Encoding: base64", "", "SGVsbG8g!!d29ybGQ=X"),
			wantText:    "Hello world",
			wantProblem: "malformed base64",
		},
		{
			name:        "broken base64 attachment",
			raw:         msg("Content-Type: multipart/mixed; boundary=b", "", "--b", "Content-Type: application/pdf; name=a.pdf", "Content-Transfer-Encoding: base64", "", "JVBER~i0xLjQK", "--b--"),
			wantAtts:    1,
			wantProblem: "part 1: malformed base64",
		},
		{
			name:        "header line without colon",
			raw:         msg("From: a@example.org", "this is not a header", "Subject: after", "", "body"),
			wantSubject: "after",
			wantText:    "body",
			wantProblem: "not indented",
		},
		{
			name:        "header section starts with continuation",
			raw:         msg(" folded: nothing", "Subject: s", "", "body"),
			wantSubject: "s",
			wantText:    "body",
			wantProblem: "starts with a continuation",
		},
		{
			name:        "no empty line before body",
			raw:         msg("Subject: s", "Hello there,", "how are you?"),
			wantSubject: "s",
			wantText:    "Hello there,\nhow are you?",
			wantProblem: "not ended by an empty line",
		},
		{
			name:        "invalid header name",
			raw:         msg("Subject: s", "Bad Name: x", "From: a@example.org", "", "body"),
			wantSubject: "s",
			wantText:    "body",
			wantProblem: "skipped malformed header line",
		},
		{
			name:        "unparsable content type",
			raw:         msg("Subject: ct", `Content-Type: text/plain; charset="utf-8; format=flowed`, "", "body"),
			wantSubject: "ct",
			wantText:    "body",
		},
		{
			name:        "content type garbage",
			raw:         msg("Subject: ct", "Content-Type: ;;;===", "", "body"),
			wantSubject: "ct",
			wantText:    "body",
		},
		{
			name:        "unknown transfer encoding",
			raw:         msg("Content-Type: text/plain", "Content-Transfer-Encoding: x-uuencode", "", "begin 644 a"),
			wantText:    "begin 644 a",
			wantProblem: "unknown content-transfer-encoding",
		},
		{
			name:        "bad date",
			raw:         msg("Date: the day before yesterday", "Subject: d", "", "x"),
			wantSubject: "d",
			wantProblem: "unparsable date",
		},
		{
			name:        "part header garbage",
			raw:         msg("Content-Type: multipart/mixed; boundary=b", "", "--b", " \t: ::", "Content-Type: text/plain", "", "ok", "--b--"),
			wantText:    "--b\n \t: ::\nContent-Type: text/plain\n\nok\n--b--",
			wantProblem: "no parts could be read",
		},
		{
			name:        "nesting within limits",
			raw:         deepNesting(maxDepth),
			wantSubject: "deep",
			wantText:    "deep",
		},
		{
			name:        "NUL bytes in body",
			raw:         msg("Subject: n\x00ul", "", "a\x00b"),
			wantSubject: "n\uFFFDul",
			wantText:    "a\uFFFDb",
		},
	}
}

func TestParseMalformed(t *testing.T) {
	tests := malformedCases()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := Parse(tt.raw)
			checkInvariants(t, m)
			if m.Subject != tt.wantSubject {
				t.Errorf("subject: got %q, want %q", m.Subject, tt.wantSubject)
			}
			if tt.wantText != "" && m.Text != tt.wantText {
				t.Errorf("text: got %q, want %q", m.Text, tt.wantText)
			}
			if tt.wantHTML != "" && m.HTML != tt.wantHTML {
				t.Errorf("html: got %q, want %q", m.HTML, tt.wantHTML)
			}
			if len(m.Attachments) != tt.wantAtts {
				t.Errorf("attachments: got %d, want %d", len(m.Attachments), tt.wantAtts)
			}
			if tt.wantProblem != "" && !strings.Contains(m.ParseError(), tt.wantProblem) {
				t.Errorf("parse errors: got %q, want one containing %q", m.ParseErrors, tt.wantProblem)
			}
		})
	}
}

// deepNesting builds a message with n nested multiparts around one text part.
func deepNesting(n int) []byte {
	b := bytes.NewBuffer(openNesting(n))
	for i := n - 1; i >= 0; i-- {
		fmt.Fprintf(b, "--b%d--\r\n", i)
	}
	return b.Bytes()
}

// openNesting is deepNesting without the closing boundaries.
func openNesting(n int) []byte {
	var b bytes.Buffer
	b.WriteString("Subject: deep\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n")
	for i := 1; i < n; i++ {
		fmt.Fprintf(&b, "--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n", i-1, i)
	}
	fmt.Fprintf(&b, "--b%d\r\nContent-Type: text/plain\r\n\r\ndeep\r\n", n-1)
	return b.Bytes()
}

// A truncated message's few open levels are parsed as before.
func TestParseFewLevelsLeftOpen(t *testing.T) {
	m := Parse(openNesting(3))
	if strings.Contains(m.ParseError(), "never closed") || !strings.Contains(m.Text, "deep") {
		t.Errorf("got text %q, parse errors %q; want the innermost part's text and enmime's own complaint", m.Text, m.ParseErrors)
	}
}

func TestParseStructureLimits(t *testing.T) {
	var many bytes.Buffer
	many.WriteString("Subject: many\r\nContent-Type: multipart/mixed; boundary=m\r\n\r\n")
	for range 100000 {
		many.WriteString("--m\r\n\r\nx\r\n")
	}
	many.WriteString("--m--\r\n")
	tests := []struct {
		name        string
		raw         []byte
		wantProblem string
	}{
		{"too deep", deepNesting(20000), "nested deeper than 25 levels"},
		{"too many parts", many.Bytes(), "more than 1000 mime parts"},
		{"left open", openNesting(maxDepth - 1), "24 nested mime parts never closed (more than 10)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			m := Parse(tt.raw)
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("took %v, want well under 5s", took)
			}
			checkInvariants(t, m)
			if !strings.Contains(m.ParseError(), tt.wantProblem) {
				t.Errorf("got parse errors %q, want one containing %q", m.ParseErrors, tt.wantProblem)
			}
			if !strings.Contains(m.Text, "x") && !strings.Contains(m.Text, "deep") {
				t.Errorf("got text of %d bytes, want the body kept as text", len(m.Text))
			}
		})
	}
}

// adversarialInputs returns TestParseAdversarialInputs's cases (also parsed
// by TestFastPathAgrees).
func adversarialInputs() map[string]string {
	var params strings.Builder
	for i := range 100000 {
		fmt.Fprintf(&params, "; p%d=v", i)
	}
	var addrs strings.Builder
	for i := range 100000 {
		fmt.Fprintf(&addrs, "u%d@example.org, ", i)
	}
	var garbled strings.Builder
	for i := range 100000 {
		fmt.Fprintf(&garbled, "\"u%d <u%d@example.org>, ", i, i)
	}
	return map[string]string{
		"subject =? space":   "Subject: " + strings.Repeat("=? ", 1<<20) + "\r\n\r\nx",
		"subject =?a?q?":     "Subject: " + strings.Repeat("=?a?q?", 1<<19) + "\r\n\r\nx",
		"subject words":      "Subject: " + strings.Repeat("=?utf-8?q?a?= ", 1<<18) + "\r\n\r\nx",
		"continuations":      "Subject: x" + strings.Repeat("\r\n y", 1<<19) + "\r\n\r\nx",
		"to many":            "To: " + addrs.String() + "\r\n\r\nx",
		"to garbled":         "To: " + garbled.String() + "\r\n\r\nx",
		"root ct params":     "Content-Type: text/plain" + params.String() + "\r\n\r\nx",
		"part cd params":     "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Disposition: attachment" + params.String() + "\r\n\r\nx\r\n--b--",
		"date":               "Date: " + strings.Repeat("(a", 1<<19) + "\r\n\r\nx",
		"message-id":         "Message-ID: " + strings.Repeat("<", 1<<20) + "\r\n\r\nx",
		"from comments":      "From: " + strings.Repeat("(", 1<<19) + "\r\n\r\nx",
		"from quotes":        "From: " + strings.Repeat("\"a\\", 1<<18) + "\r\n\r\nx",
		"part continuations": "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nX-A: x" + strings.Repeat("\r\n y", 1<<19) + "\r\n\r\nx\r\n--b--",
		"part nonindented":   "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nX-A: x" + strings.Repeat("\r\nyy", 1<<19) + "\r\n\r\nx\r\n--b--",
		"part many fields":   "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n" + strings.Repeat("X-A: y\r\n", 1<<18) + "\r\nx\r\n--b--",
		"part ct 16k":        "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain" + strings.Repeat(";a=b", 4000) + "\r\n\r\nx\r\n--b--",
		"many fields":        strings.Repeat("X-A: y\r\n", 1<<18) + "\r\nx",
		"qp equals":          "Content-Transfer-Encoding: quoted-printable\r\n\r\n" + strings.Repeat("=", 1<<21),
		"b64 junk":           "Content-Transfer-Encoding: base64\r\n\r\n" + strings.Repeat("!=A", 1<<20),
		"html metas":         "Content-Type: text/html\r\n\r\n" + strings.Repeat("<meta ", 1<<19),
		"dash lines":         "Content-Type: multipart/mixed; boundary=bbbbbbbbbb\r\n\r\n" + strings.Repeat("--bbbbbbbbb\r\n", 1<<18),
		"rfc822 header":      "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: x" + strings.Repeat("\r\n y", 1<<19) + "\r\n--b--",
		"2231 sections": "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Disposition: attachment" + strings.Repeat("; filename*0*=a", 1) + func() string {
			var b strings.Builder
			for i := 1; i < 100000; i++ {
				fmt.Fprintf(&b, "; filename*%d*=%%41", i)
			}
			return b.String()
		}() + "\r\n\r\nx\r\n--b--",
	}
}

// TestParseAdversarialInputs guards against inputs that once took time
// quadratic in their size (minutes for a few MB); each takes well under a
// second now.
func TestParseAdversarialInputs(t *testing.T) {
	cases := adversarialInputs()
	for name, raw := range cases {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			m := Parse([]byte(raw))
			if took := time.Since(start); took > 10*time.Second {
				t.Errorf("took %v for %d KiB, want well under 10s", took, len(raw)>>10)
			}
			checkInvariants(t, m)
		})
	}
}

func TestParseProblemsBounded(t *testing.T) {
	var b bytes.Buffer
	b.WriteString("Subject: many\r\n")
	for i := range 200 {
		fmt.Fprintf(&b, "Bad Header %d: x\r\nX-Ok: 1\r\n", i)
	}
	b.WriteString("\r\nbody")
	m := Parse(b.Bytes())
	checkInvariants(t, m)
	if got := len(m.ParseErrors); got != maxProblems+1 {
		t.Errorf("got %d parse errors, want %d", got, maxProblems+1)
	}
	if last := m.ParseErrors[len(m.ParseErrors)-1]; !strings.HasPrefix(last, "and ") {
		t.Errorf("got last parse error %q, want a count of the rest", last)
	}
}

func TestMessageJSON(t *testing.T) {
	m := Parse(msg("From: A <a@example.org>", "Subject: j", "", "body"))
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatalf("marshal: got %v, want nil", err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("unmarshal: got %v, want nil", err)
	}
	for _, k := range []string{"to", "cc", "replyTo", "attachments"} {
		if l, ok := got[k].([]any); !ok || len(l) != 0 {
			t.Errorf("%s: got %v, want []", k, got[k])
		}
	}
	if _, ok := got["date"]; ok {
		t.Errorf("date: got %v, want omitted when unknown", got["date"])
	}
	if _, ok := got["parseErrors"]; ok {
		t.Errorf("parseErrors: got %v, want omitted when clean", got["parseErrors"])
	}
}

func TestDedupeKey(t *testing.T) {
	base := msg("From: Alice <Alice@Example.org>", "Date: Tue, 1 Jul 2003 10:52:37 +0200", "Subject: Invoice", "", "body")
	withID := msg("Message-ID: <id-1@example.org>", "From: a@example.org", "Subject: x", "", "body")

	t.Run("message-id", func(t *testing.T) {
		if got, want := Parse(withID).DedupeKey(), "message-id:id-1@example.org"; got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	})
	t.Run("hash is stable", func(t *testing.T) {
		a, b := Parse(base).DedupeKey(), Parse(base).DedupeKey()
		if a != b || !strings.HasPrefix(a, "sha256:") || len(a) != len("sha256:")+64 {
			t.Errorf("got %q and %q, want the same sha256 key", a, b)
		}
	})
	t.Run("same for ParseHeader", func(t *testing.T) {
		h, err := ParseHeader(bytes.NewReader(base), int64(len(base)))
		if err != nil {
			t.Fatalf("got %v, want nil", err)
		}
		if got, want := h.DedupeKey(), Parse(base).DedupeKey(); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	})
	t.Run("sender case does not matter", func(t *testing.T) {
		other := bytes.Replace(base, []byte("Alice@Example.org"), []byte("alice@example.org"), 1)
		if got, want := Parse(other).DedupeKey(), Parse(base).DedupeKey(); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	})
	for name, change := range map[string][2]string{
		"subject": {"Subject: Invoice", "Subject: Invoicf"},
		"date":    {"10:52:37", "10:52:38"},
		"sender":  {"Alice@", "Alicf@"},
		"size":    {"body", "body!"},
	} {
		t.Run(name+" changes it", func(t *testing.T) {
			other := bytes.Replace(base, []byte(change[0]), []byte(change[1]), 1)
			if a, b := Parse(other).DedupeKey(), Parse(base).DedupeKey(); a == b {
				t.Errorf("got the same key %q, want different", a)
			}
		})
	}
}

// genReader yields a header followed by size bytes of body, without holding
// the body in memory, and counts what was read.
type genReader struct {
	header []byte
	body   int64
	read   int64
}

func (g *genReader) Read(p []byte) (int, error) {
	if len(g.header) > 0 {
		n := copy(p, g.header)
		g.header = g.header[n:]
		g.read += int64(n)
		return n, nil
	}
	if g.body <= 0 {
		return 0, io.EOF
	}
	n := len(p)
	if int64(n) > g.body {
		n = int(g.body)
	}
	line := "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ab\r\n"
	for i := 0; i < n; i++ {
		p[i] = line[(g.read+int64(i))%int64(len(line))]
	}
	g.body -= int64(n)
	g.read += int64(n)
	return n, nil
}

func TestParseHeaderLargeMessage(t *testing.T) {
	header := msg("From: =?utf-8?q?J=C3=B6rg?= <joerg@example.de>", "To: ops@example.org", "Subject: =?utf-8?q?Big_attachment_=E2=82=AC?=",
		"Date: Tue, 1 Jul 2003 10:52:37 +0200", "Message-ID: <big@example.de>", "Content-Type: multipart/mixed; boundary=b", "", "")
	const bodySize = 60 << 20
	g := &genReader{header: header, body: bodySize}

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	m, err := ParseHeader(g, int64(len(header))+bodySize)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatalf("got %v, want nil", err)
	}
	checkInvariants(t, m)

	if limit := int64(len(header)) + 4096; g.read > limit {
		t.Errorf("read %d bytes, want at most %d (header plus one buffer)", g.read, limit)
	}
	if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 20<<20 {
		t.Errorf("heap grew by %d bytes, want less than 20 MiB", grown)
	}
	if !m.TooLarge || m.Size != int64(len(header))+bodySize {
		t.Errorf("got tooLarge %v size %d, want true %d", m.TooLarge, m.Size, int64(len(header))+bodySize)
	}
	if m.Subject != "Big attachment €" || m.MessageID != "big@example.de" || m.Date.IsZero() {
		t.Errorf("got subject %q, id %q, date %v, want the header's", m.Subject, m.MessageID, m.Date)
	}
	if want := []Address{{"Jörg", "joerg@example.de"}}; !reflect.DeepEqual(m.From, want) {
		t.Errorf("from: got %+v, want %+v", m.From, want)
	}
	if m.Text != "" || m.HTML != "" || len(m.Attachments) != 0 || len(m.ParseErrors) != 0 {
		t.Errorf("got text %q, html %q, %d attachments, errors %q, want none", m.Text, m.HTML, len(m.Attachments), m.ParseErrors)
	}
}

func TestParseHeaderLongHeaderBounded(t *testing.T) {
	// A header line that never ends must not be read without bound.
	g := &genReader{header: []byte("Subject: x\r\nX-Long: "), body: 64 << 20}
	m, err := ParseHeader(g, 64<<20)
	if err != nil {
		t.Fatalf("got %v, want nil", err)
	}
	checkInvariants(t, m)
	if limit := int64(maxHeaderSize + 8192); g.read > limit {
		t.Errorf("read %d bytes, want at most %d", g.read, limit)
	}
	if m.Subject != "x" || !strings.Contains(m.ParseError(), "header section longer than") {
		t.Errorf("got subject %q, errors %q, want %q and a header size error", m.Subject, m.ParseErrors, "x")
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

func TestParseHeaderReadError(t *testing.T) {
	_, err := ParseHeader(io.MultiReader(strings.NewReader("Subject: x\r\n"), failingReader{}), 100)
	if err == nil || !strings.Contains(err.Error(), "connection reset") {
		t.Errorf("got %v, want the read error", err)
	}
}

func TestParseHeaderAgreesWithParse(t *testing.T) {
	messages := map[string][]byte{
		"plain": msg("From: A <a@example.org>", "To: b@example.org, C <c@example.org>", "Cc: d@example.org", "Reply-To: e@example.org",
			"Subject: =?ISO-8859-1?Q?Caf=E9?=", "Date: Mon, 2 Jan 2006 15:04:05 +0100", "Message-ID: <x@y>", "", "body"),
		"broken":       msg("From: John Smith john@example.com", "not a header", "Subject: Gr\xfc\xdfe", "Date: soon", "", "body"),
		"headers only": []byte("Subject: only\r\nFrom: a@example.org"),
		"lf":           []byte("Subject: lf\nFrom: a@example.org\n\nbody\n"),
		"empty":        nil,
	}
	for name, raw := range messages {
		t.Run(name, func(t *testing.T) {
			p := Parse(raw)
			h, err := ParseHeader(bytes.NewReader(raw), int64(len(raw)))
			if err != nil {
				t.Fatalf("got %v, want nil", err)
			}
			checkInvariants(t, h)
			got := []any{h.Subject, h.From, h.To, h.Cc, h.ReplyTo, h.Date, h.MessageID, h.DedupeKey()}
			want := []any{p.Subject, p.From, p.To, p.Cc, p.ReplyTo, p.Date, p.MessageID, p.DedupeKey()}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %+v, want %+v", got, want)
			}
		})
	}
}

// The same message gives the same problems in the same order: enmime
// reports a header's malformed parameters in map order.
func TestParseProblemsInOneOrder(t *testing.T) {
	raw := []byte("Subject: p\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-TYpe:0;0;1;2;3;4\r\n\r\nbody\r\n--x--\r\n")
	first := Parse(raw).ParseErrors
	if len(first) < 2 {
		t.Fatalf("got problems %q, want several malformed parameters", first)
	}
	for range 50 {
		if got := Parse(raw).ParseErrors; !slices.Equal(got, first) {
			t.Fatalf("got problems %q, then %q", first, got)
		}
	}
}
