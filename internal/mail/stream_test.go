package mail

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// streamDecode decodes raw[off:off+n] with a transferReader reading chunk
// bytes at a time and keeping at most maxWS bytes of white space.
func streamDecode(t *testing.T, raw []byte, off, n int64, cte string, chunk, maxWS int) []byte {
	t.Helper()
	defer func(old int) { qpMaxWS = old }(qpMaxWS)
	qpMaxWS = maxWS
	tr := newTransferReader(bytes.NewReader(raw), off, n, cte)
	tr.chunk = chunk
	got, err := io.ReadAll(tr)
	if err != nil {
		t.Fatalf("reading: %v", err)
	}
	return got
}

// checkStreamDecoders decodes in as base64 and quoted-printable, whole and
// streamed, and fails if they differ.
func checkStreamDecoders(t *testing.T, in []byte, chunk, maxWS int) {
	t.Helper()
	// The content sits inside a bigger source, at an offset.
	raw := append(append([]byte("junk before \t \r\n"), in...), " \t after"...)
	off, n := int64(len("junk before \t \r\n")), int64(len(in))
	want, junk, truncated := decodeBase64(in)
	d := &base64Decoder{}
	got := streamDecode(t, raw, off, n, "Base64", chunk, maxWS)
	if !bytes.Equal(got, want) {
		t.Errorf("base64 of %q: streamed %q, want %q", truncate(string(in), 200), truncate(string(got), 200), truncate(string(want), 200))
	}
	out, _ := d.write(in, nil)
	out = d.close(out)
	if !bytes.Equal(out, want) || d.junk != junk || d.truncated != truncated {
		t.Errorf("base64 of %q: got %q junk %d truncated %v, want %q junk %d truncated %v",
			truncate(string(in), 200), truncate(string(out), 200), d.junk, d.truncated, truncate(string(want), 200), junk, truncated)
	}
	want = decodeQuotedPrintable(in)
	got = streamDecode(t, raw, off, n, " Quoted-Printable", chunk, maxWS)
	if !bytes.Equal(got, want) {
		t.Errorf("quoted-printable of %q (chunk %d, white space kept %d): streamed\n%q, want\n%q", truncate(string(in), 200), chunk, maxWS, truncate(string(got), 200), truncate(string(want), 200))
	}
	got = streamDecode(t, raw, off, n, "8bit", chunk, maxWS)
	if !bytes.Equal(got, in) {
		t.Errorf("8bit of %q: streamed %q, want it unchanged", truncate(string(in), 200), truncate(string(got), 200))
	}
}

func streamDecoderSeeds() []string {
	return []string{
		"", "QQ==", "QUJD", "QUJ", "Q", "QQ=\r\n=", "QQ==QUJD", "QR==", "aGVsbG8=\r\nd29ybGQ=", "JVB~ERi0xLjQK=", "PHA+R3LD~vMOfZTw!vcD4=\r\nPHA+\r\nx",
		"Gr=FC=DFe, soft=\r\nbreak=3D ok   \r\n=E4=\r\n", "=4", "=", "=\r", "= \r\n", "=4 5", "=4\r5", "==41", "=4=\r\nx", "\r\r\n", " \r \n", "abc\r ",
		"trail=20  \r\nx \t \n", "=\r=41\n", "a=\r\n  b", "=ZZ=zz=0d=0A", strings.Repeat(" \t", 100) + "x" + strings.Repeat(" ", 50) + "\r\n",
		strings.Repeat("=", 30) + "41", "x" + strings.Repeat(" ", 70) + "=\r\ny" + strings.Repeat("\t", 9) + "\r",
	}
}

func TestStreamDecoders(t *testing.T) {
	for _, in := range streamDecoderSeeds() {
		for _, chunk := range []int{1, 2, 3, 7, 64, 32 << 10} {
			for _, maxWS := range []int{0, 1, 3, 4 << 10} {
				checkStreamDecoders(t, []byte(in), chunk, maxWS)
			}
		}
	}
	// A long attachment, well-formed, as mailers write it.
	raw := benchMessage(true)
	i := bytes.Index(raw, []byte("base64\r\n\r\n")) + len("base64\r\n\r\n")
	checkStreamDecoders(t, raw[i:len(raw)-len("--outer--\r\n")], 32<<10, 4<<10)
	// White space runs longer than a chunk, kept or dropped.
	long := strings.Repeat(" \t", 100<<10)
	checkStreamDecoders(t, []byte("a"+long+"b"+long+"\r\nc"+long+"=\r\n"+long), 1000, 100)
}

func TestTransferReaderReadError(t *testing.T) {
	raw := []byte("aGVsbG8=")
	tr := newTransferReader(bytes.NewReader(raw), 0, int64(len(raw))+10, "base64")
	if _, err := io.ReadAll(tr); err == nil {
		t.Error("reading past the end of the source: got nil error, want one")
	}
}

func FuzzStreamDecoders(f *testing.F) {
	for _, s := range streamDecoderSeeds() {
		f.Add([]byte(s), uint16(3), uint8(2))
	}
	f.Fuzz(func(t *testing.T, in []byte, chunk uint16, maxWS uint8) {
		checkStreamDecoders(t, in, int(chunk%512)+1, int(maxWS))
	})
}
