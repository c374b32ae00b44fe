package mail

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestDecodeHeader(t *testing.T) {
	tests := []struct {
		name        string
		raw         string
		want        string
		wantProblem bool
	}{
		{"plain ascii", "Invoice 42", "Invoice 42", false},
		{"empty", "", "", false},
		{"only spaces", "  \t ", "", false},
		{"utf-8 B", "=?UTF-8?B?R3LDvMOfZSBhdXMgS8O2bG4g4oCTIPCfmIA=?=", "Grüße aus Köln – 😀", false},
		{"utf-8 Q", "=?utf-8?Q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?=", "Grüße aus Köln", false},
		{"lower-case q and hex", "=?utf-8?q?gr=c3=bc=c3=9fe?=", "grüße", false},
		{"iso-8859-1 Q", "=?ISO-8859-1?Q?Andr=E9?= Pirard", "André Pirard", false},
		{"iso-8859-1 read as windows-1252", "=?iso-8859-1?q?=80_5?=", "€ 5", false},
		{"iso-8859-15", "=?ISO-8859-15?Q?=A4uro?=", "€uro", false},
		{"windows-1251", "=?windows-1251?B?z/Do4uXy?=", "Привет", false},
		{"iso-2022-jp", "=?ISO-2022-JP?B?GyRCJUYlOSVIGyhCIBskQiVhITwlaxsoQg==?=", "テスト メール", false},
		{"koi8-r", "=?KOI8-R?B?8NLJ18XULCDNydI=?=", "Привет, мир", false},
		{"gb2312", "=?GB2312?B?xOO6w8rAvec=?=", "你好世界", false},
		{"gbk", "=?gbk?Q?=C4=E3=BA=C3?=", "你好", false},
		{"shift_jis", "=?Shift_JIS?Q?=93=FA=96=7B=8C=EA?=", "日本語", false},
		{"rfc 2231 language suffix", "=?US-ASCII*EN?Q?Keith_Moore?=", "Keith Moore", false},
		{"text before and after", "Re: =?utf-8?q?caf=C3=A9?= order", "Re: café order", false},
		{"adjacent words joined", "=?utf-8?q?a?= =?utf-8?q?b?=", "ab", false},
		{"adjacent words, several spaces", "=?ISO-8859-1?Q?a?=  \t =?ISO-8859-1?Q?b?=", "ab", false},
		{"adjacent words, different charsets", "=?ISO-8859-1?Q?a?= =?ISO-8859-2?Q?_b?=", "a b", false},
		{"word then text keeps space", "=?ISO-8859-1?Q?a?= b", "a b", false},
		{"word without separating space", "Re:=?utf-8?q?x?=", "Re:x", false},
		{"folded between words", "=?ISO-8859-1?Q?a?=\r\n    =?ISO-8859-1?Q?b?=", "ab", false},
		{"folded plain text", "A long\r\n subject\n\tover lines", "A long subject\tover lines", false},
		{"character split across words", "=?UTF-8?B?w6k=?= =?UTF-8?B?w6k=?=", "éé", false},
		{"utf-8 split mid character", "=?UTF-8?Q?caf=C3?= =?UTF-8?Q?=A9?=", "café", false},
		{"iso-2022-jp split across words", "=?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?= =?ISO-2022-JP?B?GyRCJWEhPCVrGyhC?=", "テストメール", false},
		{"rfc 2047 example 1", "(=?ISO-8859-1?Q?a?=)", "(a)", false},
		{"rfc 2047 example 2", "(=?ISO-8859-1?Q?a?= b)", "(a b)", false},
		{"rfc 2047 example 3", "(=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=)", "(ab)", false},
		{"rfc 2047 example 6", "(=?ISO-8859-1?Q?a_b?=)", "(a b)", false},
		{"rfc 2047 subject example", "=?ISO-8859-1?B?SWYgeW91IGNhbiByZWFkIHRoaXMgeW8=?=\r\n    =?ISO-8859-2?B?dSB1bmRlcnN0YW5kIHRoZSBleGFtcGxlLg==?=", "If you can read this you understand the example.", false},
		{"rfc 2047 hebrew", "(=?iso-8859-8?b?7eXs+SDv4SDp7Oj08A==?=)", "(םולש ןב ילטפנ)", false},
		{"b without padding", "=?utf-8?b?w6k?=", "é", false},
		{"q with question mark", "=?utf-8?q?Really??=", "Really?", false},
		{"raw utf-8 kept", "Grüße – 日本", "Grüße – 日本", false},
		{"raw latin-1 as windows-1252", "Gr\xfc\xdfe \x80 5", "Grüße € 5", false},
		{"raw 8-bit and encoded word", "caf\xe9 =?utf-8?q?=E2=82=AC?=", "café €", false},
		{"unknown charset left as is", "=?x-klingon?q?Qapla=21?= now", "=?x-klingon?q?Qapla=21?= now", true},
		{"unknown charset next to known", "=?x-klingon?q?a?= =?utf-8?q?b?=", "=?x-klingon?q?a?= b", true},
		{"malformed base64 left literal", "=?utf-8?B?w?=", "=?utf-8?B?w?=", true},
		{"unknown encoding left literal", "=?utf-8?X?abc?=", "=?utf-8?X?abc?=", false},
		{"unterminated word", "=?utf-8?q?abc", "=?utf-8?q?abc", false},
		{"lone marker", "what =? is this", "what =? is this", false},
		{"empty charset", "=??q?abc?=", "=??q?abc?=", false},
		{"empty payload", "x=?utf-8?q??=y", "xy", false},
		{"decoded line breaks become spaces", "=?utf-8?q?a=0D=0Ab?=", "a  b", false},
		{"decoded NUL replaced", "=?utf-8?q?a=00b?=", "a\uFFFDb", false},
		{"invalid utf-8 in word", "=?utf-8?q?a=FFb?=", "a\uFFFDb", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, problems := decodeHeader(tt.raw)
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if (len(problems) > 0) != tt.wantProblem {
				t.Errorf("got problems %q, want problems %v", problems, tt.wantProblem)
			}
			if DecodeHeader(tt.raw) != got {
				t.Errorf("DecodeHeader got %q, want %q", DecodeHeader(tt.raw), got)
			}
		})
	}
}

func TestLookupCharset(t *testing.T) {
	tests := []struct {
		name string
		want charsetKind
	}{
		{"UTF-8", charsetUTF8},
		{"utf8", charsetUTF8},
		{`"utf-8"`, charsetUTF8},
		{"us-ascii", charsetRaw},
		{"", charsetRaw},
		{"unknown-8bit", charsetRaw},
		{"ISO-8859-1", charsetDecoder},
		{"iso_8859-1", charsetDecoder},
		{"latin1", charsetDecoder},
		{"windows-1252", charsetDecoder},
		{"cp1252", charsetDecoder},
		{"ISO-2022-JP", charsetDecoder},
		{"iso-2022-jp-2", charsetDecoder},
		{"KOI8-R", charsetDecoder},
		{"koi8-u", charsetDecoder},
		{"GB2312", charsetDecoder},
		{"cp936", charsetDecoder},
		{"gb18030", charsetDecoder},
		{"hz-gb-2312", charsetDecoder},
		{"big5", charsetDecoder},
		{"ks_c_5601-1987", charsetDecoder},
		{"cp949", charsetDecoder},
		{"euc-jp", charsetDecoder},
		{"cp932", charsetDecoder},
		{"cp850", charsetDecoder},
		{"ibm437", charsetDecoder},
		{"UTF-8*en", charsetUTF8},
		{"iso-2022-kr", charsetUnknown},
		{"x-klingon", charsetUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, got := lookupCharset(tt.name); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCleanHeaderTextAlwaysValid(t *testing.T) {
	for _, s := range []string{"\xff\xfe", "a\x00b", "=?utf-8?b?/w==?="} {
		got := DecodeHeader(s)
		if !utf8.ValidString(got) || strings.Contains(got, "\x00") {
			t.Errorf("DecodeHeader(%q) got %q, want valid UTF-8 without NUL", s, got)
		}
	}
}
