package run

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"mailtrigger/internal/mail"
)

// jsonReference is what encoding/json writes for v with HTML escaping off.
func jsonReference(t *testing.T, v any) []byte {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// FuzzJSONStringAgrees: appendJSONString writes what encoding/json writes.
func FuzzJSONStringAgrees(f *testing.F) {
	for _, s := range []string{"", "plain", "quote \" backslash \\ slash /", "\b\f\n\r\t\x00\x01\x1f\x7f",
		"für Größe naïve", "\u2028\u2029\u2027\u202a", "\xe2\x80", "\xe2", "bad \xff\xfe utf-8", "<p>&amp;</p>",
		"\xed\xa0\x80 surrogate", "€ \xe2\x82\xac", "emoji 😀", "a\xc3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want := jsonReference(t, s)
		if got := appendJSONString(nil, s); !bytes.Equal(got, want) {
			t.Fatalf("appendJSONString(%q) = %s, encoding/json gives %s", s, got, want)
		}
	})
}

// TestEncodeAgrees: encode gives encoding/json's bytes for whole payloads,
// whatever their text, HTML, subject and attachments hold.
func TestEncodeAgrees(t *testing.T) {
	date := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	for _, p := range []Payload{
		{},
		{Version: 1, Type: EventType, Run: PayloadRun{ID: "run_1", Flow: "f", Attempt: 2, TriggeredAt: date}, IMAP: "inbox",
			Message: PayloadMessage{ID: 7, MessageID: "<a@b>", Subject: `"text":"","html":"" in a subject`,
				From: []mail.Address{{Name: `"text":""`, Address: "a@example.org"}}, To: []mail.Address{}, Date: &date,
				Text: "für\nGröße \u2028 \xff", HTML: "<p>\"quoted\" &amp; \t</p>",
				Attachments: []PayloadAttachment{{Filename: `"html":""`, Size: 3, Content: []byte("abc")}}}},
		{Message: PayloadMessage{Text: "", HTML: "only html"}},
	} {
		want := jsonReference(t, p)
		got, err := encode(p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("encode gives\n%s\nencoding/json gives\n%s", got, want)
		}
	}
}

// BenchmarkEncode encodes the payload of a message shaped like the bench's
// backlog message (9 KB of text with umlauts, its HTML), against
// encoding/json alone.
func BenchmarkEncode(b *testing.B) {
	var text bytes.Buffer
	words := []string{"invoice", "payment", "für", "Größe", "naïve", "total", "due", "date"}
	for i := 0; text.Len() < 9000; i++ {
		text.WriteString(words[i%len(words)])
		if i%12 == 11 {
			text.WriteString(".\n")
		} else {
			text.WriteByte(' ')
		}
	}
	p := Payload{Version: 1, Type: EventType, Message: PayloadMessage{Subject: "Invoice", Text: text.String(),
		HTML: "<html><body><p>" + bytes.NewBuffer(bytes.ReplaceAll(text.Bytes(), []byte(".\n"), []byte(".</p>\n<p>"))).String() + "</p></body></html>"}}
	b.Run("encode", func(b *testing.B) {
		b.SetBytes(int64(len(p.Message.Text) + len(p.Message.HTML)))
		for b.Loop() {
			if _, err := encode(p); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding_json", func(b *testing.B) {
		b.SetBytes(int64(len(p.Message.Text) + len(p.Message.HTML)))
		for b.Loop() {
			var out bytes.Buffer
			enc := json.NewEncoder(&out)
			enc.SetEscapeHTML(false)
			if err := enc.Encode(p); err != nil {
				b.Fatal(err)
			}
		}
	})
}
