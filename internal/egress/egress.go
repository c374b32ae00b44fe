// Package egress fences the service's outgoing connections (mail servers,
// OAuth2 token and Graph endpoints, webhooks), all of which go to addresses
// users configure: with MAILTRIGGER_EGRESS=public, connections to loopback,
// private, link-local (cloud metadata), CGNAT, unspecified, multicast and
// reserved addresses are refused, and so are IPv6 addresses outside global
// unicast and those that carry an IPv4 address to a relay or translator
// (IPv4-compatible, SIIT, 6to4, Teredo; NAT64 is judged by its IPv4
// address), except those MAILTRIGGER_EGRESS_ALLOW lists.
//
// The check is made on the address actually connected to, after name
// resolution, by the dialer's Control function: a name that resolves to a
// private address, a DNS answer that changes between a check and the
// connection (rebinding), and an HTTP redirect to another host are all
// caught, since each ends in a dial.
package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"time"
)

// The modes of MAILTRIGGER_EGRESS.
const (
	// ModeAny allows every address (the default).
	ModeAny = "any"
	// ModePublic refuses the addresses that are not public.
	ModePublic = "public"
)

// EnvMode and EnvAllow are the settings' names, for error messages.
const (
	EnvMode  = "MAILTRIGGER_EGRESS"
	EnvAllow = "MAILTRIGGER_EGRESS_ALLOW"
)

// DeniedError is the error of a connection the policy refused. Retrying it
// cannot help until the settings change.
type DeniedError struct {
	Addr   netip.Addr
	Reason string // what kind of address it is: "a private address"
}

// Error returns "egress denied: 10.0.0.5 is a private address
// (MAILTRIGGER_EGRESS=public)".
func (e *DeniedError) Error() string {
	return fmt.Sprintf("egress denied: %s is %s (%s=%s)", e.Addr, e.Reason, EnvMode, ModePublic)
}

// IsDenied reports whether err is, or wraps, a *DeniedError.
func IsDenied(err error) bool {
	var de *DeniedError
	return errors.As(err, &de)
}

// Policy says which addresses may be connected to. A nil *Policy allows
// every address. It is immutable and safe for concurrent use.
type Policy struct {
	public bool
	nets   []netip.Prefix
	hosts  map[string]bool // allowed host names, lower case, no trailing dot
}

// Parse returns the policy of mode (ModeAny, ModePublic; "" is ModeAny) and
// allow, a comma-separated list of CIDR prefixes, IP addresses and host
// names connected to even when mode refuses their addresses. A nil policy
// (mode any) allows everything.
func Parse(mode, allow string) (*Policy, error) {
	p := &Policy{hosts: map[string]bool{}}
	switch strings.ToLower(strings.TrimSpace(mode)) {
	case "", ModeAny:
	case ModePublic:
		p.public = true
	default:
		return nil, fmt.Errorf("%s must be %s or %s, got %q", EnvMode, ModeAny, ModePublic, mode)
	}
	for _, item := range strings.Split(allow, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if pfx, err := netip.ParsePrefix(item); err == nil {
			p.nets = append(p.nets, pfx.Masked())
			continue
		}
		if ip, err := netip.ParseAddr(item); err == nil {
			ip = ip.Unmap().WithZone("")
			p.nets = append(p.nets, netip.PrefixFrom(ip, ip.BitLen()))
			continue
		}
		if strings.Contains(item, "/") || !validHost(item) {
			return nil, fmt.Errorf("%s: %q is not a CIDR prefix, an IP address or a host name", EnvAllow, item)
		}
		p.hosts[canonicalHost(item)] = true
	}
	if !p.public {
		return nil, nil
	}
	return p, nil
}

// validHost reports whether s looks like a DNS host name.
func validHost(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

func canonicalHost(s string) string { return strings.ToLower(strings.TrimSuffix(s, ".")) }

// Public reports whether the policy refuses non-public addresses.
func (p *Policy) Public() bool { return p != nil && p.public }

// Check returns a *DeniedError when the policy refuses ip, else nil.
func (p *Policy) Check(ip netip.Addr) error {
	if p == nil || !p.public {
		return nil
	}
	ip = ip.Unmap().WithZone("")
	for _, n := range p.nets {
		if n.Contains(ip) {
			return nil
		}
	}
	if reason := classify(ip); reason != "" {
		return &DeniedError{Addr: ip, Reason: reason}
	}
	return nil
}

var (
	cgnat     = netip.MustParsePrefix("100.64.0.0/10")
	thisNet   = netip.MustParsePrefix("0.0.0.0/8")
	reserved4 = netip.MustParsePrefix("240.0.0.0/4") // includes 255.255.255.255
	ietf4     = netip.MustParsePrefix("192.0.0.0/24")
	bench4    = netip.MustParsePrefix("198.18.0.0/15")
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	nat64Loc  = netip.MustParsePrefix("64:ff9b:1::/48")

	// IPv6 forms that carry an IPv4 address, or are not global. Where a
	// relay or translator exists on the path, an address of the first four
	// reaches an IPv4 address the IPv4 checks never see.
	//
	// IPv4-compatible ::a.b.c.d, deprecated by RFC 4291 section 2.5.5.1
	// (:: and ::1, in the same prefix, are named as such first).
	v4compat = netip.MustParsePrefix("::/96")
	// IPv4-translated ::ffff:0:a.b.c.d of SIIT, RFC 2765 section 2.1 (not
	// ::ffff:0:0/96, the IPv4-mapped prefix: Check unmaps those and checks
	// them as IPv4).
	siit = netip.MustParsePrefix("::ffff:0:0:0/96")
	// 6to4, RFC 3056: the whole prefix is refused rather than classified
	// by its embedded IPv4 address. Where such a packet goes is up to
	// whichever relay the network routes 2002::/16 to, which may hand it
	// to a private or loopback IPv4 address whatever the embedded one
	// says, and RFC 7526 deprecated the public relays, so a real server
	// reachable only over 6to4 is vanishingly rare; MAILTRIGGER_EGRESS_ALLOW
	// admits one.
	sixToFour = netip.MustParsePrefix("2002::/16")
	// Teredo, RFC 4380 section 2.6: its IPv4 addresses are obfuscated and
	// reached through a relay; refused whole for the same reasons.
	teredo = netip.MustParsePrefix("2001::/32")
	// Site-local, deprecated by RFC 3879: private addressing by another name.
	siteLocal = netip.MustParsePrefix("fec0::/10")
	// Discard-only, RFC 6666.
	discard6 = netip.MustParsePrefix("100::/64")
	// Benchmarking, RFC 5180 (as 198.18.0.0/15 for IPv4).
	bench6 = netip.MustParsePrefix("2001:2::/48")
	// Global unicast, RFC 4291 section 2.4 (IANA allocates from it alone):
	// any other IPv6 address not named above is refused as reserved.
	global6 = netip.MustParsePrefix("2000::/3")
)

// classify says why ip is not a public address, or "" when it is.
func classify(ip netip.Addr) string {
	if nat64.Contains(ip) {
		// The IPv4 address it is translated to decides.
		b := ip.As16()
		return classify(netip.AddrFrom4([4]byte(b[12:16])))
	}
	if reason := classify6(ip); reason != "" {
		return reason
	}
	switch {
	case !ip.IsValid():
		return "not an IP address"
	case ip.IsUnspecified() || thisNet.Contains(ip):
		return "an unspecified address"
	case ip.IsLoopback():
		return "a loopback address"
	case ip.IsPrivate():
		return "a private address"
	case ip.IsLinkLocalUnicast():
		return "a link-local address"
	case ip.IsMulticast() || ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast():
		return "a multicast address"
	case cgnat.Contains(ip):
		return "a shared (CGNAT) address"
	case reserved4.Contains(ip) || ietf4.Contains(ip) || bench4.Contains(ip) || nat64Loc.Contains(ip):
		return "a reserved address"
	}
	return ""
}

// classify6 says why ip, an IPv6 address that is not loopback, private,
// link-local or multicast, is not public: it embeds an IPv4 address, is
// site-local or discard-only, or lies outside global unicast. "" for an
// IPv4 address and for the others (classify checks those).
func classify6(ip netip.Addr) string {
	switch {
	case !ip.Is6() || ip.IsUnspecified() || ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsMulticast():
		return ""
	case v4compat.Contains(ip):
		return "an IPv4-compatible address"
	case siit.Contains(ip):
		return "an IPv4-translated (SIIT) address"
	case sixToFour.Contains(ip):
		return "a 6to4 address"
	case teredo.Contains(ip):
		return "a Teredo address"
	case siteLocal.Contains(ip):
		return "a site-local address"
	case discard6.Contains(ip):
		return "a discard-only address"
	case bench6.Contains(ip) || !global6.Contains(ip):
		return "a reserved address"
	}
	return ""
}

// control is the dialer's Control function: address is the resolved
// "ip:port" about to be connected to.
func (p *Policy) control(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("egress check: %w", err)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("egress check: %q is not an IP address: %w", host, err)
	}
	return p.Check(ip)
}

// DialFunc is the signature of net.Dialer.DialContext.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Dialer returns a dialer with the settings of http.DefaultTransport's
// that checks every address it connects to; nil when the policy allows
// every address (callers then keep their own default).
func (p *Policy) Dialer() DialFunc {
	if p == nil || !p.public {
		return nil
	}
	checked := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Control: p.control}
	plain := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if len(p.hosts) > 0 {
			if host, _, err := net.SplitHostPort(addr); err == nil && p.hosts[canonicalHost(host)] {
				return plain.DialContext(ctx, network, addr)
			}
		}
		return checked.DialContext(ctx, network, addr)
	}
}

// Fence makes the HTTP transport t connect only through dial, the dialer
// of a policy that checks addresses (Dialer), when there is one: dial, and
// no proxy. Through a proxy (HTTP_PROXY, HTTPS_PROXY) the dialer would see
// only the proxy's address, and the proxy would connect wherever the
// request asked, a private address the policy refuses included. With dial
// nil (every address allowed) t is left as it is, proxies included.
func Fence(t *http.Transport, dial DialFunc) {
	if dial == nil {
		return
	}
	t.DialContext = dial
	t.Proxy = nil
}

// ProxyVars are the environment variables an HTTP proxy is set by, which
// Fence leaves unused.
var ProxyVars = []string{"HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"}
