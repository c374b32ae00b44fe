package mail

import (
	"reflect"
	"testing"
)

func mediaTypeSeeds() []string {
	seeds := []string{
		"text/plain", "text/plain; charset=utf-8", "TEXT/Plain; Charset=\"UTF-8\"", "multipart/mixed; boundary=\"----=_Part_1_2.3\"",
		"multipart/alternative;\tboundary=000000000000a1b2c3", "attachment; filename=\"report.pdf\"", "inline", "attachment",
		"text/plain; charset=utf-8; format=flowed; delsp=yes", "application/pdf; name=\"Rechnung M=?iso-8859-1?Q?=E4rz?=.pdf\"",
		"text/plain;", "text/plain; charset", "text/plain; charset=", "text/plain; a=1; a=2", "text/plain; A=1; a=2", "text/plain; name*=utf-8''x",
		"text/plain; name=\"a;b\"", "text/plain; name=\"a\\\"b\"", "text/plain ; charset=utf-8", "text/plain; charset = utf-8", "text/",
		"/plain", "text/plain/x", "text/plain; name=\"<b>\"", "text/plain; name=\"a b\"", "text/plain; name=\"\"", "multipart/mixed; boundary=b; ",
		"text/plain; charset=\"utf-8", "\"text/plain\"", "text/plain (comment)", "text/plain; charset=utf-8 (c)", "  text/plain  ", "text/plain; x=y z",
		"application/x-stuff; title=\"isn't it!\"", "text/html; charset=windows-1252; name=\"x.html\"; x-mac-type=\"54455854\"",
	}
	return append(seeds, rfc2231Examples...)
}

func checkSimpleMediaType(t *testing.T, ct string) {
	mt, params, ok := simpleMediaType(ct)
	if !ok {
		return
	}
	var problems []string
	wmt, wparams, winvalid, err := parseMediaType(ct, &problems)
	if err != nil || len(problems) > 0 || len(winvalid) > 0 || mt != wmt || !reflect.DeepEqual(params, wparams) {
		t.Errorf("%q: got %q %q, want %q %q (invalid %q, problems %q, err %v)", ct, mt, params, wmt, wparams, winvalid, problems, err)
	}
}

func TestSimpleMediaType(t *testing.T) {
	taken := 0
	for _, ct := range mediaTypeSeeds() {
		checkSimpleMediaType(t, ct)
		if _, _, ok := simpleMediaType(ct); ok {
			taken++
		}
	}
	if taken < 12 {
		t.Errorf("the shortcut took %d values, want the plain ones", taken)
	}
}

func FuzzSimpleMediaType(f *testing.F) {
	for _, ct := range mediaTypeSeeds() {
		f.Add(ct)
	}
	f.Fuzz(checkSimpleMediaType)
}
