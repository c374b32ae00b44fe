package mail

import (
	"net/mail"
	"testing"
)

func dateSeeds() []string {
	return []string{
		"Wed, 25 Nov 2026 10:00:00 +0000", "25 Nov 2026 10:00:00 +0100", "Wed, 5 Nov 2026 10:00:00 -0800 (PST)",
		"Tue, 1 Jul 2025 10:00:00 +0000 (UTC)", "  Tue, 01 Jul 2025 10:00:00 +0200 (CEST) (x)", "Tue, 1 Jul 2025 10:00 +0000",
		"Tue, 1 Jul 25 10:00:00 +0000", "Tue, 1 Jul 2025 10:00:00 GMT", "Tue, 1 Jul 2025 10:00:00 UT", "Thu, 20 Nov 1997 09:55:06 MDT (MDT)",
		"Tue, 1 Jul 2025 10:00:00 +0000 (unclosed", "Tue, 1 Jul 2025 10:00:00 +0000 junk", "Tue,1 Jul 2025 10:00:00 +0000",
		"Tue, 1 Jul 2025 10:00:00 +00", "Tue, 31 Feb 2025 10:00:00 +0000", "Xyz, 1 Jul 2025 10:00:00 +0000", "tue, 1 jul 2025 10:00:00 +0000",
		"1 Jul 2025  10:00:00  +0000", "Tue, 1 Jul 2025 10:00:00 +0000\r\n (c)", "Tue, 1 Jul 2025 10:00:00 +2500", "-0000", "",
		"Tue, 1 Jul 2025 25:00:00 +0000", "Tue, 1 Jul 2025 10:00:00 +0000 (a \\) b) (c(d)e)", "2025-07-01T10:00:00+00:00",
		"Mon, 1 Jul 2025 10:00:00 +0000", "Tue, 1 Jul 2025 10:00:00 -0700", "\tTue, 1 Jul 2025 10:00:00 +0530 ",
	}
}

func checkMailDate(t *testing.T, s string) {
	got, gotErr := parseMailDate(s)
	want, wantErr := mail.ParseDate(s)
	if (gotErr == nil) != (wantErr == nil) || gotErr != nil && gotErr.Error() != wantErr.Error() {
		t.Fatalf("%q: got error %v, want %v", s, gotErr, wantErr)
	}
	gn, go_ := got.Zone()
	wn, wo := want.Zone()
	if !got.Equal(want) || got.String() != want.String() || gn != wn || go_ != wo || got.Location().String() != want.Location().String() {
		t.Errorf("%q: got %v (%s %d), want %v (%s %d)", s, got, gn, go_, want, wn, wo)
	}
}

func TestParseMailDate(t *testing.T) {
	for _, s := range dateSeeds() {
		checkMailDate(t, s)
	}
	if n := testing.AllocsPerRun(100, func() { parseMailDate("Wed, 25 Nov 2026 10:00:00 +0000 (UTC)") }); n > 3 {
		t.Errorf("parsing the usual form: %v allocations, want at most 3", n)
	}
}

func FuzzParseMailDate(f *testing.F) {
	for _, s := range dateSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkMailDate(t, s)
	})
}
