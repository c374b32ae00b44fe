//go:build !unix

package main

// smallStacks does nothing where a process cannot start again in place
// (syscall.Exec is Unix's): goroutines there start on the runtime's
// adaptive stack size.
func smallStacks() {}
