package mail

import (
	"bytes"
	"fmt"
)

// shapeScan is checkShape's scan of a multipart body, fed one line at a
// time so that ParseFile can run it over a stream: it finds the delimiter
// lines of the open multiparts (the innermost first) and reads each part's
// Content-Type from its header (at most 64 KiB of it), pushing a multipart
// with a boundary. It also tells the caller what each line was, which is
// how ParseFile finds the parts.
type shapeScan struct {
	stack [][]byte // "--"+boundary of each open multipart
	parts int
	fail  string // what is wrong, once found
	// The part header being read.
	inHdr        bool
	hdrPos       int // bytes read of it
	ct           []byte
	inCT, seenCT bool
}

type lineKind int

const (
	lineContent lineKind = iota // content, preamble or epilogue
	lineHeader                  // a line of a part header
	lineDelim                   // a delimiter: a new part of multipart level
	lineFinal                   // the closing delimiter of multipart level
)

// shapeEvent is what a line was.
type shapeEvent struct {
	kind  lineKind
	level int // of the delimiter
	// hdrEnd says a part header ended: with this line if kind is
	// lineHeader (the empty line), else before it. container says the
	// part is a multipart (now at the top of the stack), mt is its media
	// type.
	hdrEnd    bool
	container bool
	mt        string
	// byLimit says the header ended because it was longer than
	// partHeaderLimit.
	byLimit bool
}

// partHeaderLimit bounds the part header shapeScan reads for a
// Content-Type: a line starting within it is read, the next is not.
const partHeaderLimit = 64 << 10

// newShapeScan returns the scan of a body with this Content-Type, or nil
// if it is not a multipart with a boundary.
func newShapeScan(contentType string) *shapeScan {
	var ignored []string
	mt, params, _, _ := lenientMediaType(contentType, &ignored)
	if len(mt) < 10 || mt[:10] != "multipart/" || params["boundary"] == "" {
		return nil
	}
	return &shapeScan{stack: [][]byte{[]byte("--" + params["boundary"])}}
}

// done says the top-level multipart is closed: the rest is not looked at.
func (s *shapeScan) done() bool { return len(s.stack) == 0 && !s.inHdr }

// line feeds the next line: l is the line without its line break, n the
// bytes it took with the line break.
func (s *shapeScan) line(l []byte, n int) shapeEvent {
	var ev shapeEvent
	if s.inHdr {
		if s.hdrPos < partHeaderLimit {
			ev.kind = lineHeader
			switch {
			case len(l) == 0:
				s.endHeader(&ev)
				return ev
			case l[0] == ' ' || l[0] == '\t':
				if s.inCT {
					s.ct = append(s.ct, l...)
				}
				s.hdrPos += n
				return ev
			}
			if key, value, ok := splitField(l); ok {
				s.inCT = key == "Content-Type" && !s.seenCT
				if s.inCT {
					s.seenCT = true
					s.ct = append(s.ct, value...)
				}
				s.hdrPos += n
				return ev
			}
			ev.kind = lineContent
		} else {
			ev.byLimit = true
		}
		// The header ends before this line, which is looked at as any.
		s.endHeader(&ev)
		if s.fail != "" {
			return ev
		}
	}
	if len(s.stack) == 0 || len(l) < 2 || l[0] != '-' || l[1] != '-' {
		return ev
	}
	level, final := -1, false
	for i := len(s.stack) - 1; i >= 0; i-- {
		if rest, ok := bytes.CutPrefix(l, s.stack[i]); ok {
			if bytes.HasPrefix(rest, []byte("--")) {
				level, final = i, true
				break
			}
			if len(rest) == 0 || rest[0] == ' ' || rest[0] == '\t' {
				level = i
				break
			}
		}
	}
	if level < 0 {
		return ev
	}
	ev.level = level
	if final {
		ev.kind = lineFinal
		s.stack = s.stack[:level]
		return ev
	}
	ev.kind = lineDelim
	s.stack = s.stack[:level+1]
	if s.parts++; s.parts > maxParts {
		s.fail = fmt.Sprintf("more than %d mime parts", maxParts)
		return ev
	}
	s.inHdr, s.hdrPos, s.ct, s.inCT, s.seenCT = true, 0, s.ct[:0], false, false
	return ev
}

// endHeader ends the part header being read.
func (s *shapeScan) endHeader(ev *shapeEvent) {
	s.inHdr = false
	ev.hdrEnd = true
	var ignored []string
	mt, params, _, _ := lenientMediaType(string(s.ct), &ignored)
	ev.mt = mt
	if params["boundary"] != "" && mt != "text/plain" && mt != "text/html" {
		ev.container = true
		if s.stack = append(s.stack, []byte("--"+params["boundary"])); len(s.stack) > maxDepth {
			s.fail = fmt.Sprintf("mime parts nested deeper than %d levels", maxDepth)
		}
	}
}

// end is the end of the body.
func (s *shapeScan) end() shapeEvent {
	var ev shapeEvent
	if s.inHdr {
		s.endHeader(&ev)
	}
	if s.fail == "" && len(s.stack) > maxOpen {
		s.fail = fmt.Sprintf("%d nested mime parts never closed (more than %d)", len(s.stack), maxOpen)
	}
	return ev
}
