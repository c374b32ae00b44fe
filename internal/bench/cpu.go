package bench

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// procStat is what /proc/PID/stat tells of one process.
type procStat struct {
	pid, ppid int
	comm      string
	own       time.Duration // user + system
	cpu       time.Duration // own, with that of the children it has waited for
}

// readProcStat reads /proc/PID/stat.
func readProcStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	// The command name, in parentheses, may hold spaces: fields count from
	// after its closing parenthesis (field 3, the state, is fields[0]).
	open, close := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || close < open {
		return procStat{}, fmt.Errorf("unexpected /proc stat %q", b)
	}
	f := strings.Fields(string(b[close+1:]))
	if len(f) < 15 {
		return procStat{}, fmt.Errorf("unexpected /proc stat %q", b)
	}
	var n [5]int64
	for i, idx := range []int{1, 11, 12, 13, 14} { // ppid, utime, stime, cutime, cstime
		if n[i], err = strconv.ParseInt(f[idx], 10, 64); err != nil {
			return procStat{}, fmt.Errorf("unexpected /proc stat %q: %w", b, err)
		}
	}
	return procStat{pid: pid, ppid: int(n[0]), comm: string(b[open+1 : close]),
		own: time.Duration(n[1]+n[2]) * clockTick, cpu: time.Duration(n[1]+n[2]+n[3]+n[4]) * clockTick}, nil
}

// serverCPU is the CPU time the bench's own servers have used so far, by
// server: the processes descending from this one, other than the service
// (measured on its own), named for what they are. A server's processes
// that ended count once their parent waited for them (PostgreSQL's
// backends, Dovecot's imap processes).
func serverCPU(service int) (map[string]time.Duration, error) {
	dirs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		return nil, err
	}
	procs := map[int]procStat{}
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		if st, err := readProcStat(pid); err == nil {
			procs[pid] = st
		}
	}
	self := os.Getpid()
	out := map[string]time.Duration{}
	for _, p := range procs {
		if p.pid == self || p.pid == service {
			continue
		}
		// A descendant of this process, not below the service.
		mine := false
		for q, hops := p, 0; hops < 64; hops++ {
			parent, ok := procs[q.ppid]
			if !ok || parent.pid == service {
				break
			}
			if parent.pid == self {
				mine = true
				break
			}
			q = parent
		}
		if mine {
			out[serverName(p.comm)] += p.cpu
		}
	}
	return out, nil
}

// serverName groups a process under the server it belongs to.
func serverName(comm string) string {
	switch {
	case strings.HasPrefix(comm, "postgres"):
		return "postgresql"
	case comm == "dovecot" || strings.HasPrefix(comm, "imap") || strings.HasPrefix(comm, "pop3") ||
		comm == "auth" || comm == "config" || comm == "stats" || comm == "log" || comm == "anvil":
		return "dovecot"
	}
	return comm
}

// cpuSpent is the CPU the bench's servers and the bench itself used between
// two readings, for a report: "PostgreSQL 12.3 s, Dovecot 4.5 s, bench 2.1 s".
func cpuSpent(before, after map[string]time.Duration, benchBefore, benchAfter time.Duration) string {
	var parts []string
	for _, name := range []string{"postgresql", "dovecot"} {
		if d := after[name] - before[name]; d > 0 {
			parts = append(parts, fmt.Sprintf("%s %.1f s", map[string]string{"postgresql": "PostgreSQL", "dovecot": "Dovecot"}[name], d.Seconds()))
		}
	}
	parts = append(parts, fmt.Sprintf("bench %.1f s", (benchAfter-benchBefore).Seconds()))
	return strings.Join(parts, ", ")
}

// selfCPU is this process's own CPU time (not its children's).
func selfCPU() time.Duration {
	st, err := readProcStat(os.Getpid())
	if err != nil {
		return 0
	}
	return st.own
}
