package bench

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Machine describes where a run happened.
type Machine struct {
	CPU        string
	Cores      int
	MemoryMB   int64
	Kernel     string
	Go         string
	Mailtrig   string // the binary's version line
	Commit     string
	Dovecot    string
	Postgres   string
	FileLimit  uint64
	InotifyMax string
}

func describeMachine(bin string) Machine {
	m := Machine{Cores: runtime.NumCPU(), Go: runtime.Version()}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	var si syscall.Sysinfo_t
	if syscall.Sysinfo(&si) == nil {
		m.MemoryMB = int64(si.Totalram) * int64(si.Unit) >> 20
	}
	var un syscall.Utsname
	if syscall.Uname(&un) == nil {
		m.Kernel = utsString(un.Release[:])
	}
	m.Mailtrig = output(bin, "version")
	m.Dovecot = output("/usr/sbin/dovecot", "--version")
	if bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres"); len(bins) > 0 {
		sort.Strings(bins)
		m.Postgres = output(bins[len(bins)-1], "--version")
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				m.Commit = s.Value[:12]
			}
		}
	}
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) == nil {
		m.FileLimit = rl.Cur
	}
	if b, err := os.ReadFile("/proc/sys/fs/inotify/max_user_instances"); err == nil {
		m.InotifyMax = strings.TrimSpace(string(b))
	}
	return m
}

func utsString(b []int8) string {
	var s []byte
	for _, c := range b {
		if c == 0 {
			break
		}
		s = append(s, byte(c))
	}
	return string(s)
}

// output runs a program and returns the first line of its output.
func output(prog string, args ...string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, prog, args...).CombinedOutput()
	if err != nil {
		return "unknown"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

// raiseFileLimit raises the open-file limit of this process, and so of the
// service it starts, to what mailboxes IDLE connections need (the
// in-process server and the service each hold one per mailbox, and each
// has a limit of its own).
func raiseFileLimit(mailboxes int) error {
	need := uint64(mailboxes + 2048)
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return fmt.Errorf("reading the open-file limit: %w", err)
	}
	if rl.Cur >= need {
		return nil
	}
	if rl.Max < need {
		// Raising the hard limit needs CAP_SYS_RESOURCE.
		rl.Max = need
	}
	rl.Cur = need
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return fmt.Errorf("raising the open-file limit to %d for %d mailboxes (ulimit -n): %w", need, mailboxes, err)
	}
	return nil
}
