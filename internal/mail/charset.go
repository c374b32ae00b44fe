package mail

import (
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/htmlindex"
	"golang.org/x/text/encoding/ianaindex"
	"golang.org/x/text/encoding/japanese"
	"golang.org/x/text/encoding/korean"
	"golang.org/x/text/encoding/simplifiedchinese"
	"golang.org/x/text/encoding/traditionalchinese"
)

// charsetKind says how text declared in a charset is turned into UTF-8.
type charsetKind int

const (
	// charsetUnknown: no decoder for the name.
	charsetUnknown charsetKind = iota
	// charsetUTF8: the text is UTF-8; invalid bytes become U+FFFD.
	charsetUTF8
	// charsetRaw: no real charset (absent, US-ASCII, unknown-8bit): UTF-8 if
	// the bytes are valid UTF-8, else windows-1252.
	charsetRaw
	// charsetDecoder: decode with the returned encoding.
	charsetDecoder
)

// charsetAliases covers names seen in mail that neither the WHATWG nor the
// IANA index knows, or that they map to the "replacement" encoding.
var charsetAliases = map[string]encoding.Encoding{
	"cp949":          korean.EUCKR,
	"ms949":          korean.EUCKR,
	"uhc":            korean.EUCKR,
	"ks_c_5601":      korean.EUCKR,
	"cp932":          japanese.ShiftJIS,
	"ms932":          japanese.ShiftJIS,
	"ms_kanji":       japanese.ShiftJIS,
	"shift_jisx0213": japanese.ShiftJIS,
	"iso-2022-jp-1":  japanese.ISO2022JP,
	"iso-2022-jp-2":  japanese.ISO2022JP,
	"iso-2022-jp-3":  japanese.ISO2022JP,
	"csiso2022jp2":   japanese.ISO2022JP,
	"cp936":          simplifiedchinese.GBK,
	"ms936":          simplifiedchinese.GBK,
	"euc-cn":         simplifiedchinese.GBK,
	"x-euc-cn":       simplifiedchinese.GBK,
	"gb2312-80":      simplifiedchinese.GBK,
	"hz-gb-2312":     simplifiedchinese.HZGB2312,
	"hz":             simplifiedchinese.HZGB2312,
	"cp950":          traditionalchinese.Big5,
	"ms950":          traditionalchinese.Big5,
	"x-x-big5":       traditionalchinese.Big5,
	"tis620":         charmap.Windows874,
}

// lookupCharset finds the decoder for a charset name as found in MIME
// parameters and RFC 2047 encoded words (case-insensitive, quotes and an RFC
// 2231 "*language" suffix ignored).
func lookupCharset(name string) (encoding.Encoding, charsetKind) {
	n := strings.ToLower(strings.Trim(strings.TrimSpace(name), `"'`))
	if i := strings.IndexByte(n, '*'); i >= 0 {
		n = n[:i]
	}
	switch n {
	case "utf-8", "utf8", "unicode-1-1-utf-8", "utf8mb4", "x-unicode20utf8":
		return nil, charsetUTF8
	case "", "us-ascii", "ascii", "ansi_x3.4-1968", "iso646-us", "us", "unknown-8bit", "x-unknown", "unknown", "default":
		return nil, charsetRaw
	}
	if e, ok := charsetAliases[n]; ok {
		return e, charsetDecoder
	}
	for _, cand := range []string{n, strings.ReplaceAll(n, "_", "-")} {
		// The WHATWG index first: it reads ISO-8859-1 and US-ASCII as
		// windows-1252 and GB2312 as GBK, which is what mail means in practice.
		if e, err := htmlindex.Get(cand); err == nil && e != nil && e != encoding.Replacement {
			return e, charsetDecoder
		}
		if e, err := ianaindex.MIME.Encoding(cand); err == nil && e != nil && e != encoding.Replacement {
			return e, charsetDecoder
		}
		if e, err := ianaindex.IANA.Encoding(cand); err == nil && e != nil && e != encoding.Replacement {
			return e, charsetDecoder
		}
	}
	return nil, charsetUnknown
}

// rawToUTF8 returns s unchanged if it is valid UTF-8 and otherwise reads its
// bytes as windows-1252, the usual meaning of undeclared 8-bit text in mail.
func rawToUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	out, err := charmap.Windows1252.NewDecoder().String(s)
	if err != nil {
		return strings.ToValidUTF8(s, "\uFFFD")
	}
	return out
}

// decodeCharset converts b, declared to be in charset, to UTF-8. ok is false
// when the charset is unknown; the text is then read as raw 8-bit (see
// rawToUTF8). The result is always valid UTF-8.
func decodeCharset(charset string, b []byte) (s string, ok bool) {
	enc, kind := lookupCharset(charset)
	switch kind {
	case charsetUTF8:
		return strings.ToValidUTF8(string(b), "\uFFFD"), true
	case charsetRaw:
		return rawToUTF8(string(b)), true
	case charsetDecoder:
		out, err := enc.NewDecoder().Bytes(b)
		if err != nil {
			return rawToUTF8(string(b)), true
		}
		return strings.ToValidUTF8(string(out), "\uFFFD"), true
	default:
		return rawToUTF8(string(b)), false
	}
}
