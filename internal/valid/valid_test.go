package valid

import (
	"net/url"
	"testing"
)

func TestStrings(t *testing.T) {
	type inner struct {
		Subject *string `json:"subject"`
	}
	type input struct {
		Name    *string           `json:"name"`
		Text    *string           `json:"text" valid:"multiline"`
		Inner   *inner            `json:"inner"`
		List    []inner           `json:"list"`
		Headers map[string]string `json:"headers"`
		Skipped *string           `json:"skipped" valid:"-"`
		Raw     []byte            `json:"raw"`
		Count   int               `json:"count"`
	}
	s := func(v string) *string { return &v }
	ok := input{Name: s("plain"), Text: s("line one\r\nline two\tend"), Inner: &inner{Subject: s("Invoice")},
		List: []inner{{Subject: s("x")}}, Headers: map[string]string{"X-A": "b"}, Skipped: s("a\x00"), Raw: []byte{0}}
	if e := Strings(ok); len(e) != 0 {
		t.Errorf("got %v, want no errors", e)
	}
	bad := input{Name: s("a\x00b"), Text: s("a\x07b"), Inner: &inner{Subject: s("a\tb")}, List: []inner{{}, {Subject: s("\xff")}},
		Headers: map[string]string{"X-A": "b\nc", "X\x00B": "v"}}
	want := map[string]string{
		"name":            "must not contain NUL characters",
		"text":            "must not contain control characters other than tab and line breaks",
		"inner.subject":   "must not contain control characters (such as NUL, tab or line breaks)",
		"list[1].subject": "must be valid UTF-8",
		"headers.X-A":     "must not contain control characters (such as NUL, tab or line breaks)",
		"headers.X\x00B":  "the name must not contain NUL characters",
	}
	e := Strings(&bad)
	for k, m := range want {
		if e[k] != m {
			t.Errorf("%q: got %q, want %q", k, e[k], m)
		}
	}
	if len(e) != len(want) {
		t.Errorf("got %v, want %d fields", e, len(want))
	}
}

func TestQuery(t *testing.T) {
	q, _ := url.ParseQuery("imap=a%00b&flow=ok&x%01=1&cursor=%ff")
	e := Query(q)
	if e["imap"] == "" || e["query"] == "" || e["cursor"] != "must be valid UTF-8" || e["flow"] != "" || len(e) != 3 {
		t.Errorf("got %v", e)
	}
}
