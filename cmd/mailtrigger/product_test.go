package main

import (
	"bufio"
	"bytes"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// testOnly reports why a package (an import path) is test code that the
// product binary must not link, or "" if it may.
func testOnly(pkg string) string {
	switch {
	case pkg == "testing" || strings.HasPrefix(pkg, "testing/"):
		return "the standard library's test support"
	case pkg == "mailtrigger/internal/testenv" || strings.HasPrefix(pkg, "mailtrigger/internal/testenv/"):
		return "the private Dovecot and PostgreSQL starters"
	case pkg == "mailtrigger/internal/bench" || strings.HasPrefix(pkg, "mailtrigger/internal/bench/"):
		return "the bench (cmd/mailtrigger-bench)"
	case pkg == "mailtrigger/internal/storetest", pkg == "mailtrigger/internal/testwait":
		return "a test helper"
	case strings.HasPrefix(pkg, "mailtrigger/") && strings.HasSuffix(pkg, "fake"):
		return "a fake server for tests"
	}
	return ""
}

// TestProductLinksNoTestCode checks that the mailtrigger binary carries no
// test code: none of its dependencies (go list -deps) is a test package,
// and the built binary has no symbol of package testing (go tool nm).
func TestProductLinksNoTestCode(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "mailtrigger/cmd/mailtrigger").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, stderrOf(err))
	}
	deps := strings.Fields(string(out))
	if len(deps) < 50 {
		t.Fatalf("go list -deps listed %d packages, too few to be the product's: %q", len(deps), deps)
	}
	for _, pkg := range deps {
		if why := testOnly(pkg); why != "" {
			t.Errorf("mailtrigger links %s: %s", pkg, why)
		}
	}

	bin := filepath.Join(t.TempDir(), "mailtrigger")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err = exec.Command("go", "tool", "nm", bin).Output()
	if err != nil {
		t.Fatalf("go tool nm: %v\n%s", err, stderrOf(err))
	}
	symbols, bad := 0, 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		// address, type, name (the name may hold spaces).
		f := strings.Fields(sc.Text())
		if len(f) < 3 {
			continue
		}
		symbols++
		name := strings.Join(f[2:], " ")
		if strings.HasPrefix(name, "testing.") || strings.HasPrefix(name, "testing/") || strings.HasPrefix(name, "mailtrigger/internal/testenv") ||
			strings.HasPrefix(name, "mailtrigger/internal/bench.") {
			if bad++; bad <= 10 {
				t.Errorf("the mailtrigger binary has the symbol %s", name)
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if bad > 10 {
		t.Errorf("and %d more such symbols", bad-10)
	}
	if symbols < 1000 {
		t.Fatalf("go tool nm listed %d symbols, too few to be the product's", symbols)
	}
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}
