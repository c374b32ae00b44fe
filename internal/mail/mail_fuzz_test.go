package mail

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// rfc2047Examples are the examples of RFC 2047 §8 and some oddities.
var rfc2047Examples = []string{
	"=?US-ASCII?Q?Keith_Moore?= <moore@cs.utk.edu>",
	"=?ISO-8859-1?Q?Keld_J=F8rn_Simonsen?= <keld@dkuug.dk>",
	"=?ISO-8859-1?Q?Andr=E9?= Pirard <PIRARD@vm1.ulg.ac.be>",
	"=?ISO-8859-1?B?SWYgeW91IGNhbiByZWFkIHRoaXMgeW8=?=\r\n    =?ISO-8859-2?B?dSB1bmRlcnN0YW5kIHRoZSBleGFtcGxlLg==?=",
	"=?ISO-8859-1?Q?Olle_J=E4rlefors?= <ojarnef@admin.kth.se>",
	"=?ISO-8859-1?Q?Patrik_F=E4ltstr=F6m?= <paf@nada.kth.se>",
	"Nathaniel Borenstein <nsb@thumper.bellcore.com>\r\n      (=?iso-8859-8?b?7eXs+SDv4SDp7Oj08A==?=)",
	"(=?ISO-8859-1?Q?a?=)",
	"(=?ISO-8859-1?Q?a?= b)",
	"(=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=)",
	"(=?ISO-8859-1?Q?a?=  =?ISO-8859-1?Q?b?=)",
	"(=?ISO-8859-1?Q?a?=\r\n    =?ISO-8859-1?Q?b?=)",
	"(=?ISO-8859-1?Q?a_b?=)",
	"(=?ISO-8859-1?Q?a?= =?ISO-8859-2?Q?_b?=)",
	"=?US-ASCII*EN?Q?Keith_Moore?=",
	"=?ISO-2022-JP?B?GyRCJUYlOSVIGyhCIBskQiVhITwlaxsoQg==?=",
	"=?KOI8-R?B?8NLJ18XULCDNydI=?=",
	"=?GB2312?B?xOO6w8rAvec=?=",
	"=?UTF-8?Q?caf=C3?= =?UTF-8?Q?=A9?=",
	"=?utf-8?q?Really??=",
	"=?x-klingon?q?Qapla?=",
	"=?utf-8?B?w?=",
	"=??q?abc?=",
	"=?utf-8?q?abc",
	"Gr\xfc\xdfe \x80",
	"=?utf-8?q?a=00b=0D=0A?=",
	"=?hz-gb-2312?q?~{abc~}?=",
	"=?utf-16?b?AGEAYgBj?=",
}

// rfc2231Examples are the parameter examples of RFC 2231 and variants.
var rfc2231Examples = []string{
	"message/external-body; access-type=URL;\r\n URL*0=\"ftp://\";\r\n URL*1=\"cs.utk.edu/pub/moore/bulk-mailer/bulk-mailer.tar\"",
	"application/x-stuff;\r\n title*=us-ascii'en-us'This%20is%20%2A%2A%2Afun%2A%2A%2A",
	"application/x-stuff;\r\n title*0*=us-ascii'en'This%20is%20even%20more%20;\r\n title*1*=%2A%2A%2Afun%2A%2A%2A%20;\r\n title*2=\"isn't it!\"",
	"attachment; filename*=utf-8''%E2%82%AC%20rates.pdf",
	"attachment; filename*0*=iso-8859-1''caf%E9; filename*1*=%20menu.txt",
	"attachment; filename*0*=utf-8''%E2; filename*1*=%82%AC",
	"attachment; filename=\"=?UTF-8?B?w6ljaG8uYmlu?=\"",
	"attachment; filename=\"C:\\Users\\me\\report.pdf\"",
	"attachment; filename*=''%ZZ%",
	"inline; filename*1=\"only second\"",
}

func fuzzSeedMessages() [][]byte {
	seeds := [][]byte{
		nil,
		[]byte("\r\n"),
		[]byte("From: a@example.org\nSubject: lf\n\nbody\n"),
		msg("From: a@example.org", "Subject: =?utf-8?q?Invoice?=", "Content-Type: multipart/alternative; boundary=b", "",
			"--b", "Content-Type: text/plain; charset=iso-8859-1", "Content-Transfer-Encoding: quoted-printable", "", "caf=E9=", "",
			"--b", "Content-Type: text/html; charset=utf-8", "Content-Transfer-Encoding: base64", "", "PHA+aGk8L3A+", "--b--"),
		msg("Content-Type: multipart/mixed; boundary=o", "", "--o", "Content-Type: message/rfc822", "",
			"Subject: inner", "Content-Type: multipart/mixed; boundary=i", "", "--i", "", "x", "--i--", "--o--"),
		msg("Content-Type: multipart/mixed", "", "--x", "", "no boundary", "--x--"),
		msg("Content-Type: multipart/digest; boundary=d", "", "--d", "", "Subject: one", "", "first", "--d--"),
		msg(" starts folded", "bad line", "Bad Key: x", "Subject: s"),
		deepNesting(5),
	}
	for _, v := range rfc2231Examples {
		seeds = append(seeds, msg("Content-Type: multipart/mixed; boundary=p", "", "--p",
			"Content-Type: "+v, "Content-Disposition: "+v, "Content-Transfer-Encoding: base64", "", "aGVsbG8=", "--p--"))
	}
	for _, v := range rfc2047Examples {
		seeds = append(seeds, msg("From: "+v, "To: "+v, "Subject: "+v, "", "body"))
	}
	// The hostile shapes of issue 12, small.
	for _, tc := range hostileCorpus {
		seeds = append(seeds, tc.gen(2<<10))
	}
	return seeds
}

func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeedMessages() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		m := Parse(raw)
		checkInvariants(t, m)
		if m.Size != int64(len(raw)) {
			t.Errorf("size: got %d, want %d", m.Size, len(raw))
		}
		h, err := ParseHeader(bytes.NewReader(raw), int64(len(raw)))
		if err != nil {
			t.Fatalf("ParseHeader: got %v, want nil", err)
		}
		checkInvariants(t, h)
		got := []any{h.Subject, h.From, h.To, h.Cc, h.ReplyTo, h.Date, h.MessageID, h.DedupeKey()}
		want := []any{m.Subject, m.From, m.To, m.Cc, m.ReplyTo, m.Date, m.MessageID, m.DedupeKey()}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("ParseHeader got %+v, want what Parse got: %+v", got, want)
		}
	})
}

func FuzzDecodeHeader(f *testing.F) {
	for _, s := range rfc2047Examples {
		f.Add(s)
	}
	for _, s := range rfc2231Examples {
		f.Add(s)
	}
	// Hostile header values of issue 12, small.
	for _, unit := range []string{"=?utf-8?q?a?= ", "=?utf-8?q?a?==?iso-8859-1?q?=E9?=", "=?utf-8?b?w6k=?=\r\n ",
		"=?ISO-2022-JP?B?GyRCJEokTBsoQg==?= ", "; p=v", ";\r\n filename*1*=%41", `"a <b@c, `} {
		f.Add(strings.Repeat(unit, 200))
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got := DecodeHeader(raw)
		if !utf8.ValidString(got) || strings.ContainsAny(got, "\x00\r\n") {
			t.Errorf("got %q, want valid UTF-8 without NUL or line breaks", got)
		}
		if got != strings.Trim(got, " \t") {
			t.Errorf("got %q, want it trimmed", got)
		}
		if !strings.Contains(raw, "=?") && utf8.ValidString(raw) && !strings.ContainsAny(raw, "\x00\r\n") {
			if want := strings.Trim(raw, " \t"); got != want {
				t.Errorf("got %q, want plain text %q unchanged", got, want)
			}
		}
		// Parameters go through the same decoders.
		params := parseParams(raw)
		for _, name := range []string{"filename", "name", "title", "url"} {
			if v, _ := paramValue(params, name); !utf8.ValidString(v) {
				t.Errorf("param %s: got %q, want valid UTF-8", name, v)
			}
		}
	})
}
