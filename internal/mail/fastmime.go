package mail

import (
	"bytes"
	"strconv"
	"strings"
)

// The fast path takes apart well-formed multipart messages on the bytes
// already in memory: boundaries are found with bytes.Index, part headers are
// read in place, and a part's content is a slice of the message rather than
// a copy. It gives exactly what the enmime path gives (the same leaves, in
// the same order, with the same ids, header values and content), so it
// accepts only what it can be sure enmime reads the ordinary way: every
// occurrence of a boundary is a delimiter line or the closing one, every
// part header is plain "Name: value" lines ended by an empty line, no
// content type or disposition needs the lenient parser's repairs. Anything
// else, however harmless, goes to enmime (TestFastPathAgrees and
// FuzzFastPathAgrees compare the two).

// fastPathEnabled says whether Parse tries the fast path first.
var fastPathEnabled = true

// Bounds of the fast path; a message beyond them goes to enmime.
const (
	fastMaxDepth    = maxDepth // nested multiparts below the top-level one: checkShape has bounded them already
	fastMaxParts    = 200      // parts in all
	fastMaxBoundary = 70       // RFC 2046's limit on a boundary's length
	fastMaxHeader   = 64 << 10
)

// fastLeaf is a part with content found by the fast path.
type fastLeaf struct {
	lp         leafPart
	parentType string
}

// fastHeader holds the four fields leaf reads from a part header, as
// enmime's header reader gives them.
type fastHeader struct {
	ct, cd, cte, cid             string
	hasCT, hasCD, hasCTE, hasCID bool
}

func (fh *fastHeader) get(key string) string {
	switch {
	case strings.EqualFold(key, "Content-Type"):
		return fh.ct
	case strings.EqualFold(key, "Content-Disposition"):
		return fh.cd
	case strings.EqualFold(key, "Content-Transfer-Encoding"):
		return fh.cte
	case strings.EqualFold(key, "Content-Id"):
		return fh.cid
	}
	return ""
}

// fastParts returns the leaves of a multipart body in the order walk visits
// them, or false if the message is not clearly well-formed.
func fastParts(h header, body []byte, off int64) ([]fastLeaf, bool) {
	for _, k := range []string{"Content-Type", "Content-Transfer-Encoding", "Content-Disposition", "Content-Id"} {
		if v := h.get(k); len(v) > maxMIMEField || strings.ContainsAny(v, "\r\n") {
			return nil, false
		}
	}
	var problems []string
	mt, params, invalid, _ := lenientMediaType(h.get("Content-Type"), &problems)
	lenientMediaType(h.get("Content-Disposition"), &problems)
	if len(problems) > 0 || len(invalid) > 0 || !strings.HasPrefix(mt, "multipart/") || !fastBoundaryOK(params["boundary"]) {
		return nil, false
	}
	f := fastParser{}
	if !f.multipart(body, off, params["boundary"], mt, "", 0) {
		return nil, false
	}
	return f.leaves, true
}

type fastParser struct {
	leaves []fastLeaf
	parts  int
}

// fastBoundaryOK accepts boundaries of RFC 2046's characters without space.
func fastBoundaryOK(bd string) bool {
	if bd == "" || len(bd) > fastMaxBoundary {
		return false
	}
	for i := 0; i < len(bd); i++ {
		c := bd[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("'()+_,-./:=?", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// multipart reads the parts of region r, the content of a multipart with
// boundary bd and type mt, at offset off in the raw message; id is the
// part's id ("" for the top level).
//
// enmime's boundary reader ends a part where, at a CR or LF, the next few
// bytes hold the delimiter; the checks below make sure that happens only at
// the line break before each delimiter line found here.
func (f *fastParser) multipart(r []byte, off int64, bd, mt, id string, depth int) bool {
	delim := "--" + bd
	i := indexDelimiter(r, 0, delim)
	if i < 0 || i > 0 && r[i-1] != '\n' {
		return false
	}
	pos, final := afterDelimiter(r, i+len(delim))
	if pos < 0 || final {
		return false
	}
	for n := 1; ; n++ {
		if f.parts++; f.parts > fastMaxParts {
			return false
		}
		s := pos
		i := indexDelimiter(r, s, delim)
		if i < 0 {
			return false
		}
		if i-1 < s || r[i-1] != '\n' {
			return false
		}
		e := i - 1
		if e-1 >= s && r[e-1] == '\r' {
			e--
		}
		// A CR three bytes before the delimiter not followed by LF
		// ("\r\r\n--b", "\rx\n--b") ends the part early in enmime.
		if i-3 >= s && r[i-3] == '\r' && r[i-2] != '\n' {
			return false
		}
		// enmime looks ahead from the line break; running out of
		// bytes there marks the boundary as not closed.
		peek := len(delim) + 3
		if r[e] == '\r' {
			peek++
		}
		if e+peek > len(r) {
			return false
		}
		next, final := afterDelimiter(r, i+len(delim))
		if next < 0 {
			return false
		}
		part := r[s:e]
		fh, hdrEnd, ok := fastPartHeader(part)
		if !ok {
			return false
		}
		pid := strconv.Itoa(n)
		if id != "" {
			pid = id + "." + pid
		}
		coff := off + int64(s+hdrEnd)
		lp := leafPart{id: pid, header: fh.get, content: part[hdrEnd:], shared: true, located: true, off: coff}
		container := false
		// enmime reads a part's Content-Type (and then its
		// Content-Disposition) only if it has one.
		if fh.ct != "" {
			var problems []string
			pmt, params, invalid, _ := lenientMediaType(fh.ct, &problems)
			lenientMediaType(fh.cd, &problems)
			if len(problems) > 0 || len(invalid) > 0 {
				return false
			}
			if bd := params["boundary"]; bd != "" {
				if !strings.HasPrefix(pmt, "multipart/") || depth+1 > fastMaxDepth || !fastBoundaryOK(bd) {
					return false
				}
				if !f.multipart(part[hdrEnd:], coff, bd, pmt, pid, depth+1) {
					return false
				}
				container = true
			}
			lp.contentType = pmt
		}
		if !container {
			f.leaves = append(f.leaves, fastLeaf{lp: lp, parentType: mt})
		}
		if final {
			return true
		}
		pos = next
	}
}

// indexDelimiter returns the index of the first "--boundary" in r[from:]
// that may be a delimiter, -1 if there is none. An occurrence followed by a
// byte that enmime reads as neither a delimiter (white space) nor a close
// delimiter ("--") is content, as RFC 2046 has it: the nested boundary
// "--b-alt" when the boundary is "b", which some mailers generate. It is
// passed over; what is left is checked by the caller.
func indexDelimiter(r []byte, from int, delim string) int {
	for {
		j := bytes.Index(r[from:], []byte(delim))
		if j < 0 {
			return -1
		}
		i := from + j
		k := i + len(delim)
		if k >= len(r) {
			return i
		}
		c := r[k]
		if c == '-' && k+1 < len(r) && r[k+1] == '-' || c <= ' ' || c >= 0x80 {
			return i // a delimiter, or something the caller refuses
		}
		if c == '-' && k+1 >= len(r) {
			return i
		}
		from = i + 1
	}
}

// afterDelimiter looks at what follows "--boundary" at r[i:]: a line break
// (the start of the next part is returned) or "--" (final is set; whatever
// follows on its line is ignored, as enmime does). -1 if neither.
func afterDelimiter(r []byte, i int) (next int, final bool) {
	rest := r[i:]
	switch {
	case bytes.HasPrefix(rest, []byte("--")):
		return i + 2, true
	case bytes.HasPrefix(rest, []byte("\r\n")):
		return i + 2, false
	case bytes.HasPrefix(rest, []byte("\n")):
		return i + 1, false
	}
	return -1, false
}

// fastPartHeader reads the header at the start of p as enmime would, if it
// is plain: fields "Name: value" (name of printable ASCII without colon),
// continuation lines after a field, lines ended by LF or CRLF, no other CR,
// ended by an empty line within p. It returns the fields leaf needs and
// where the content starts.
func fastPartHeader(p []byte) (fh fastHeader, end int, ok bool) {
	var (
		cur   *string // the value being read, nil if not one wanted
		buf   []byte  // cur with its continuation lines, if it has any
		field bool    // a field has been read
		pos   int
	)
	for {
		k := bytes.IndexByte(p[pos:], '\n')
		if k < 0 {
			return fh, 0, false
		}
		line := p[pos : pos+k]
		pos += k + 1
		if pos > fastMaxHeader || len(buf) > maxMIMEField {
			return fh, 0, false // a hostile header: enmime's path bounds it
		}
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if bytes.IndexByte(line, '\r') >= 0 {
			return fh, 0, false
		}
		if len(line) == 0 {
			endValue(cur, buf)
			return fh, pos, true
		}
		if line[0] == ' ' || line[0] == '\t' {
			if !field {
				return fh, 0, false
			}
			if cur != nil {
				// Built up in buf: a value folded over many lines
				// (a hostile message's) must not cost its size per line.
				if buf == nil {
					buf = append(buf, *cur...)
				}
				buf = append(append(buf, ' '), trimASCIISpace(line)...)
			}
			continue
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return fh, 0, false
		}
		for _, c := range line[:colon] {
			if c <= ' ' || c >= 0x7f {
				return fh, 0, false
			}
		}
		endValue(cur, buf)
		field, cur, buf = true, nil, nil
		key := line[:colon]
		var seen *bool
		switch {
		case bytes.EqualFold(key, []byte("Content-Type")):
			cur, seen = &fh.ct, &fh.hasCT
		case bytes.EqualFold(key, []byte("Content-Disposition")):
			cur, seen = &fh.cd, &fh.hasCD
		case bytes.EqualFold(key, []byte("Content-Transfer-Encoding")):
			cur, seen = &fh.cte, &fh.hasCTE
		case bytes.EqualFold(key, []byte("Content-Id")):
			cur, seen = &fh.cid, &fh.hasCID
		}
		if seen != nil {
			if *seen {
				cur = nil // the first one counts
			} else {
				*seen = true
				*cur = string(bytes.TrimLeft(trimASCIISpace(line)[colon+1:], " \t"))
			}
		}
	}
}

// endValue finishes the value being read: its continuation lines (buf) are
// added and trailing space is trimmed, as enmime's header reader does.
func endValue(cur *string, buf []byte) {
	if cur == nil {
		return
	}
	if buf != nil {
		*cur = string(bytes.TrimRight(buf, " \t"))
		return
	}
	*cur = strings.TrimRight(*cur, " \t")
}

// trimASCIISpace trims space, tab, CR and LF, as enmime's header reader does.
func trimASCIISpace(b []byte) []byte {
	return bytes.Trim(b, " \t\r\n")
}
