// Package clientip finds the address of the client that sent a request: the
// connection's peer or, when that peer is a trusted reverse proxy, the
// right-most address in X-Forwarded-For that is not a trusted proxy.
// X-Forwarded-For from any other peer is ignored: anyone can write it.
package clientip

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Resolver knows which peers are trusted proxies. The zero value trusts none.
type Resolver struct {
	trusted []netip.Prefix
}

// Parse reads a comma-separated list of IP addresses and CIDR prefixes
// (MAILTRIGGER_TRUSTED_PROXIES). An empty list trusts no proxy.
func Parse(s string) (Resolver, error) {
	var r Resolver
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if strings.Contains(f, "/") {
			p, err := netip.ParsePrefix(f)
			if err != nil {
				return Resolver{}, fmt.Errorf("%q is not an IP address or a CIDR prefix such as 10.0.0.0/8", f)
			}
			r.trusted = append(r.trusted, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil || a.Zone() != "" {
			return Resolver{}, fmt.Errorf("%q is not an IP address or a CIDR prefix such as 10.0.0.0/8", f)
		}
		a = a.Unmap()
		r.trusted = append(r.trusted, netip.PrefixFrom(a, a.BitLen()))
	}
	return r, nil
}

// Trusts reports whether a is a trusted proxy.
func (r Resolver) Trusts(a netip.Addr) bool {
	a = a.Unmap().WithZone("")
	for _, p := range r.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Addr returns the client's address. Behind trusted proxies it walks
// X-Forwarded-For from the right (the entry the nearest proxy added) and
// returns the first address that is not a trusted proxy; an entry that is
// not an address ends the walk at the last trusted hop, so that a client
// cannot choose its own key by writing garbage. ok is false when the peer
// address itself cannot be parsed.
func (r Resolver) Addr(req *http.Request) (a netip.Addr, ok bool) {
	host, _, err := net.SplitHostPort(req.RemoteAddr)
	if err != nil {
		host = req.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	peer = peer.Unmap().WithZone("")
	if len(r.trusted) == 0 || !r.Trusts(peer) {
		return peer, true
	}
	hops := []string{}
	for _, h := range req.Header.Values("X-Forwarded-For") {
		for f := range strings.SplitSeq(h, ",") {
			hops = append(hops, strings.TrimSpace(f))
		}
	}
	client := peer
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(hops[i])
		if err != nil {
			break
		}
		client = a.Unmap().WithZone("")
		if !r.Trusts(client) {
			break
		}
	}
	return client, true
}

// String returns the client's address as text, for logs and keys.
func (r Resolver) String(req *http.Request) string {
	a, ok := r.Addr(req)
	if !ok {
		return req.RemoteAddr
	}
	return a.String()
}
