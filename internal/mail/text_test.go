package mail

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzPlainTextAgrees: textWriter.plain, the fast path for valid UTF-8
// without NUL, writes what textWriter.write writes, after text or not.
func FuzzPlainTextAgrees(f *testing.F) {
	for _, s := range []string{"", "a", "\r\n", "a\r\nb\r\n", "\uFEFFBOM\r\n", "\uFEFF", "lone\rcr\r", "\r\r\n\n",
		"für Größe\r\nnaïve\r\n", "tab\there\x01\x7f", "\r\n\uFEFF"} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, data []byte, sep bool) {
		if !utf8.Valid(data) || bytes.IndexByte(data, 0) >= 0 {
			return
		}
		var want, got strings.Builder
		ref := textWriter{sb: &want, sep: sep, start: true}
		ref.write(data)
		ref.end()
		fast := textWriter{sb: &got, sep: sep, start: true}
		fast.plain(data)
		fast.end()
		if got.String() != want.String() {
			t.Fatalf("plain(%q, sep %v) = %q, write gives %q", data, sep, got.String(), want.String())
		}
	})
}
