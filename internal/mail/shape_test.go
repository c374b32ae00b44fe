package mail

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// checkShapeRef is checkShape as it was before shapeScan: it scans the body's multipart structure in one pass, the way enmime
// will see it, and says what is wrong if it is nested deeper than maxDepth,
// has more than maxParts parts or leaves more than maxOpen levels unclosed;
// "" if it is fine.
func checkShapeRef(contentType string, body []byte) string {
	var ignored []string
	mt, params, _, _ := lenientMediaType(contentType, &ignored)
	if !strings.HasPrefix(mt, "multipart/") || params["boundary"] == "" {
		return ""
	}
	stack := [][]byte{[]byte("--" + params["boundary"])}
	parts := 0
	for pos := 0; pos < len(body) && len(stack) > 0; {
		line, next := nextLine(body, pos)
		pos = next
		if len(line) < 2 || line[0] != '-' || line[1] != '-' {
			continue
		}
		level, final := -1, false
		for i := len(stack) - 1; i >= 0; i-- {
			if rest, ok := bytes.CutPrefix(line, stack[i]); ok {
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
			continue
		}
		if final {
			stack = stack[:level]
			continue
		}
		stack = stack[:level+1]
		if parts++; parts > maxParts {
			return fmt.Sprintf("more than %d mime parts", maxParts)
		}
		ct, n := partContentTypeRef(body[pos:])
		pos += n
		mt, params, _, _ := lenientMediaType(ct, &ignored)
		if params["boundary"] != "" && mt != "text/plain" && mt != "text/html" {
			if stack = append(stack, []byte("--"+params["boundary"])); len(stack) > maxDepth {
				return fmt.Sprintf("mime parts nested deeper than %d levels", maxDepth)
			}
		}
	}
	if len(stack) > maxOpen {
		return fmt.Sprintf("%d nested mime parts never closed (more than %d)", len(stack), maxOpen)
	}
	return ""
}

// partContentType reads a part header at the start of b, at most 64 KiB of
// it, and returns its Content-Type and the bytes the header took.
func partContentTypeRef(b []byte) (string, int) {
	var ct strings.Builder
	inCT, seen := false, false
	pos := 0
	for pos < len(b) && pos < 64<<10 {
		line, next := nextLine(b, pos)
		if len(line) == 0 {
			return ct.String(), next
		}
		if line[0] == ' ' || line[0] == '\t' {
			if inCT {
				ct.Write(line)
			}
			pos = next
			continue
		}
		key, value, ok := splitField(line)
		if !ok {
			return ct.String(), pos
		}
		inCT = key == "Content-Type" && !seen
		if inCT {
			seen = true
			ct.WriteString(value)
		}
		pos = next
	}
	return ct.String(), pos
}

// TestShapeScanAgrees compares checkShape with the in-memory scan it
// replaced, over the test corpus.
func TestShapeScanAgrees(t *testing.T) {
	for name, raw := range layoutCorpus() {
		h, body, _ := readHeader(raw)
		if got, want := checkShape(h.get("Content-Type"), body), checkShapeRef(h.get("Content-Type"), body); got != want {
			t.Errorf("%s: got %q, want %q", name, got, want)
		}
	}
}

func FuzzShapeScanAgrees(f *testing.F) {
	for _, raw := range fuzzSeedMessages() {
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		h, body, _ := readHeader(raw)
		if got, want := checkShape(h.get("Content-Type"), body), checkShapeRef(h.get("Content-Type"), body); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	})
}
