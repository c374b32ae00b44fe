package clientip

import (
	"net/http"
	"testing"
)

func TestAddr(t *testing.T) {
	r, err := Parse(" 127.0.0.1, 10.0.0.0/8 ,::1")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, remote string
		xff          []string
		want         string
	}{
		{"no header", "192.0.2.1:5000", nil, "192.0.2.1"},
		{"untrusted peer: header ignored", "192.0.2.1:5000", []string{"198.51.100.7"}, "192.0.2.1"},
		{"trusted peer", "127.0.0.1:5000", []string{"198.51.100.7"}, "198.51.100.7"},
		{"right-most untrusted", "127.0.0.1:5000", []string{"203.0.113.9, 198.51.100.7"}, "198.51.100.7"},
		{"trusted hops skipped", "127.0.0.1:5000", []string{"198.51.100.7, 10.1.1.1", "10.2.2.2"}, "198.51.100.7"},
		{"all trusted: the left-most", "127.0.0.1:5000", []string{"10.1.1.1"}, "10.1.1.1"},
		{"garbage stops at the last trusted hop", "127.0.0.1:5000", []string{"198.51.100.7, junk, 10.1.1.1"}, "10.1.1.1"},
		{"garbage right of the peer", "127.0.0.1:5000", []string{"junk"}, "127.0.0.1"},
		{"IPv6 peer", "[::1]:5000", []string{"2001:db8::1"}, "2001:db8::1"},
		{"mapped IPv4", "[::ffff:127.0.0.1]:5000", []string{"::ffff:198.51.100.7"}, "198.51.100.7"},
		{"no header from a trusted proxy", "127.0.0.1:5000", nil, "127.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", "/", nil)
			req.RemoteAddr = tt.remote
			for _, v := range tt.xff {
				req.Header.Add("X-Forwarded-For", v)
			}
			if got := r.String(req); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
	var none Resolver
	req, _ := http.NewRequest("GET", "/", nil)
	req.RemoteAddr = "127.0.0.1:1"
	req.Header.Set("X-Forwarded-For", "198.51.100.7")
	if got := none.String(req); got != "127.0.0.1" {
		t.Errorf("no trusted proxies: got %s, want the peer", got)
	}
}

func TestParse(t *testing.T) {
	for _, bad := range []string{"localhost", "10.0.0.0/33", "1.2.3", "fe80::1%eth0"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("%q: got no error", bad)
		}
	}
	if _, err := Parse(""); err != nil {
		t.Errorf("empty: got %v", err)
	}
}
