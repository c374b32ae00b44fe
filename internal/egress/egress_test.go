package egress_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"mailtrigger/internal/egress"
)

func TestParse(t *testing.T) {
	for _, tt := range []struct {
		mode, allow string
		public      bool
		err         string
	}{
		{"", "", false, ""},
		{"any", "10.0.0.0/8", false, ""},
		{"public", "", true, ""},
		{"PUBLIC", " 10.0.0.0/8 , fd00::/8, 192.168.1.7, mail.internal.example, ", true, ""},
		{"private", "", false, `MAILTRIGGER_EGRESS must be any or public, got "private"`},
		{"public", "10.0.0.0/33", false, `MAILTRIGGER_EGRESS_ALLOW: "10.0.0.0/33" is not`},
		{"public", "http://x", false, `MAILTRIGGER_EGRESS_ALLOW: "http://x" is not`},
		{"public", "a b", false, `MAILTRIGGER_EGRESS_ALLOW: "a b" is not`},
	} {
		t.Run(tt.mode+"_"+tt.allow, func(t *testing.T) {
			p, err := egress.Parse(tt.mode, tt.allow)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("got error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Public() != tt.public {
				t.Errorf("got public %v, want %v", p.Public(), tt.public)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	p, err := egress.Parse("public", "192.168.7.0/24,fd12::1")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		ip, reason string // reason "" when allowed
	}{
		{"10.0.0.5", "a private address"},
		{"172.16.3.4", "a private address"},
		{"192.168.1.1", "a private address"},
		{"192.168.7.9", ""}, // allowed
		{"127.0.0.1", "a loopback address"},
		{"127.9.9.9", "a loopback address"},
		{"::1", "a loopback address"},
		{"::ffff:10.0.0.5", "a private address"}, // IPv4-mapped
		{"169.254.169.254", "a link-local address"},
		{"fe80::1", "a link-local address"},
		{"fc00::1", "a private address"},
		{"fd12::1", ""}, // allowed
		{"fd12::2", "a private address"},
		{"100.64.0.1", "a shared (CGNAT) address"},
		{"0.0.0.0", "an unspecified address"},
		{"::", "an unspecified address"},
		{"224.0.0.1", "a multicast address"},
		{"ff02::1", "a multicast address"},
		{"255.255.255.255", "a reserved address"},
		{"64:ff9b::a00:5", "a private address"}, // NAT64 of 10.0.0.5
		{"8.8.8.8", ""},
		{"2001:4860:4860::8888", ""},
		{"64:ff9b::808:808", ""},
		// IPv6 forms that carry an IPv4 address, and IPv6 that is not
		// global unicast.
		{"::127.0.0.1", "an IPv4-compatible address"},
		{"::10.0.0.5", "an IPv4-compatible address"},
		{"::8.8.8.8", "an IPv4-compatible address"},
		{"::ffff:0:127.0.0.1", "an IPv4-translated (SIIT) address"},
		{"::ffff:0:169.254.169.254", "an IPv4-translated (SIIT) address"},
		{"2002:7f00:1::1", "a 6to4 address"},    // 127.0.0.1
		{"2002:a9fe:a9fe::1", "a 6to4 address"}, // 169.254.169.254
		{"2002:808:808::1", "a 6to4 address"},   // 8.8.8.8: the whole prefix is refused
		{"2001:0:7f00:1::", "a Teredo address"}, // server 127.0.0.1
		{"2001:0:4136:e378:8000:63bf:3fff:fdd2", "a Teredo address"},
		{"fec0::1", "a site-local address"},
		{"feff:ffff::1", "a site-local address"},
		{"100::1", "a discard-only address"},
		{"100::ffff:ffff:ffff:ffff", "a discard-only address"},
		{"2001:2::1", "a reserved address"},        // benchmarking
		{"64:ff9b:1::a00:5", "a reserved address"}, // local-use NAT64
		{"4000::1", "a reserved address"},          // outside 2000::/3
		{"100:0:0:1::1", "a reserved address"},     // 100::/8 beyond the discard /64
		{"::1:0:0:1", "a reserved address"},        // ::/8 outside the forms above
		// Global unicast still passes, next to the prefixes refused.
		{"2606:4700:4700::1111", ""},
		{"2a00:1450:4001:830::200e", ""},
		{"2001:1::1", ""},   // just past Teredo's /32
		{"2001:200::1", ""}, // WIDE
		{"2003::1", ""},     // just past 6to4's /16
		{"3ffe:ffff::1", ""},
	} {
		err := p.Check(netip.MustParseAddr(tt.ip))
		switch {
		case tt.reason == "" && err != nil:
			t.Errorf("%s: got %v, want allowed", tt.ip, err)
		case tt.reason != "" && (err == nil || !strings.Contains(err.Error(), " is "+tt.reason+" (MAILTRIGGER_EGRESS=public)")):
			t.Errorf("%s: got %v, want %s", tt.ip, err, tt.reason)
		}
	}
	var any *egress.Policy
	if err := any.Check(netip.MustParseAddr("127.0.0.1")); err != nil {
		t.Errorf("the nil policy refused loopback: %v", err)
	}
	if d := any.Dialer(); d != nil {
		t.Error("the nil policy has a dialer; callers keep their own")
	}
	want := "egress denied: 10.0.0.5 is a private address (MAILTRIGGER_EGRESS=public)"
	if err := p.Check(netip.MustParseAddr("10.0.0.5")); err == nil || err.Error() != want {
		t.Errorf("got %v, want %q", err, want)
	}
}

// TestDialer: the check is made on the address connected to, after name
// resolution: "localhost" is refused because it resolves to loopback, and
// allowed by an allowed prefix or by its name.
func TestDialer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	port := l.Addr().(*net.TCPAddr).Port
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tt := range []struct {
		allow, host string
		denied      bool
	}{
		{"", "127.0.0.1", true},
		{"", "localhost", true},
		{"10.0.0.0/8", "localhost", true},
		{"127.0.0.0/8", "127.0.0.1", false},
		{"127.0.0.0/8", "localhost", false},
		{"127.0.0.1", "localhost", false},
		{"LocalHost.", "localhost", false}, // by name
		{"localhost", "127.0.0.1", true},   // a name allows that name only
	} {
		t.Run(tt.allow+"_"+tt.host, func(t *testing.T) {
			p, err := egress.Parse("public", tt.allow)
			if err != nil {
				t.Fatal(err)
			}
			c, err := p.Dialer()(ctx, "tcp4", net.JoinHostPort(tt.host, strconv.Itoa(port)))
			if c != nil {
				c.Close()
			}
			switch {
			case tt.denied && !egress.IsDenied(err):
				t.Fatalf("got %v, want denied", err)
			case tt.denied && !strings.Contains(err.Error(), "egress denied: 127.0.0.1 is a loopback address"):
				t.Errorf("got %v, want the resolved address and why", err)
			case !tt.denied && err != nil:
				t.Fatalf("got %v, want connected", err)
			}
		})
	}
}

// TestFenceKeepsRequestsOffAProxy: through an HTTP proxy the policy's
// dialer sees only the proxy's address, so a request for a private address
// would reach the proxy, which connects wherever it is asked; Fence sends
// requests directly, where the dialer refuses that address (before any
// packet: the control runs before connect), and leaves a transport without
// a policy its proxy.
func TestFenceKeepsRequestsOffAProxy(t *testing.T) {
	var asked atomic.Int32
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1) // a real proxy would connect to r.URL now
		w.WriteHeader(http.StatusBadGateway)
	}))
	defer proxy.Close()
	proxyURL, err := url.Parse(proxy.URL)
	if err != nil {
		t.Fatal(err)
	}
	p, err := egress.Parse(egress.ModePublic, "127.0.0.1") // the proxy's address is allowed
	if err != nil {
		t.Fatal(err)
	}
	get := func(tr *http.Transport) error {
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr}).Get("http://10.255.255.1/hook")
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	// The hole: the policy's dialer alone, beside the proxy.
	tr := &http.Transport{Proxy: http.ProxyURL(proxyURL), DialContext: p.Dialer()}
	if err := get(tr); err != nil || asked.Load() != 1 {
		t.Fatalf("without Fence: got %v and %d request(s) at the proxy, want the request through the proxy", err, asked.Load())
	}
	tr = &http.Transport{Proxy: http.ProxyURL(proxyURL)}
	egress.Fence(tr, p.Dialer())
	if err := get(tr); !egress.IsDenied(err) {
		t.Errorf("with Fence: got %v, want the private address denied", err)
	}
	if asked.Load() != 1 {
		t.Errorf("with Fence: %d request(s) at the proxy, want none more", asked.Load()-1)
	}
	// No policy (mode any): the proxy stays.
	tr = &http.Transport{Proxy: http.ProxyURL(proxyURL)}
	egress.Fence(tr, nil)
	if tr.Proxy == nil {
		t.Error("Fence without a policy dropped the transport's proxy")
	}
}
