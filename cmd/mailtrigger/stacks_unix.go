//go:build unix

package main

import (
	"os"
	"slices"
	"strings"
	"syscall"
)

// smallStacks re-executes the service with GODEBUG adaptivestackstart=0,
// so that its goroutines start on the smallest stack (2 KB). By default
// (since Go 1.19) a goroutine starts on a stack of the average size in
// use at the last collection, rounded up to a power of two: 4 KB in a
// service busy connecting mailboxes. A goroutine that needs less keeps
// those 4 KB for its life, as stacks shrink only while less than a quarter
// of them is in use: go-imap's IDLE goroutine, one per mailbox, needs 2 KB.
// Measured at 10,000 mailboxes in IDLE: 20 MB of stacks (docs/memory.md).
// A //go:debug line cannot set it (the go command refuses settings it does
// not list), so the process sets it and starts again, in place (same
// process id); a GODEBUG that names adaptivestackstart is left as it is,
// and a failed exec serves as is.
func smallStacks() {
	godebug := os.Getenv("GODEBUG")
	if strings.Contains(godebug, "adaptivestackstart=") {
		return
	}
	exe, err := os.Executable()
	if err != nil {
		return
	}
	if godebug != "" {
		godebug += ","
	}
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "GODEBUG=") })
	env = append(env, "GODEBUG="+godebug+"adaptivestackstart=0")
	_ = syscall.Exec(exe, os.Args, env)
}
