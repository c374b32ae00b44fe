package config

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
)

// DefaultMemoryFraction is the share of a cgroup (container) memory limit
// that becomes the soft memory limit when MAILTRIGGER_MEMORY_LIMIT and
// GOMEMLIMIT are unset: the rest is headroom for what the Go runtime does
// not count (SQLite's own allocations, the kernel's socket buffers).
const DefaultMemoryFraction = 0.9

// MemoryLimit is a parsed MAILTRIGGER_MEMORY_LIMIT.
type MemoryLimit struct {
	// Off turns the soft limit off ("off"), GOMEMLIMIT included.
	Off bool
	// Bytes is an absolute limit (> 0), or 0.
	Bytes int64
	// Percent is a share of the cgroup memory limit (or, with none, of the
	// machine's memory), in (0, 100], or 0.
	Percent float64
}

// Set reports whether the setting was given at all.
func (m MemoryLimit) Set() bool { return m.Off || m.Bytes > 0 || m.Percent > 0 }

// ParseMemoryLimit parses MAILTRIGGER_MEMORY_LIMIT: "" (unset), "off", a
// size in bytes with an optional unit (B, KB, MB, GB, TB powers of 1000;
// KiB, MiB, GiB, TiB powers of 1024; as GOMEMLIMIT also takes them), or a
// percentage such as "80%".
func ParseMemoryLimit(s string) (MemoryLimit, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return MemoryLimit{}, nil
	case strings.EqualFold(s, "off"):
		return MemoryLimit{Off: true}, nil
	case strings.HasSuffix(s, "%"):
		p, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(s, "%")), 64)
		if err != nil || !(p > 0 && p <= 100) {
			return MemoryLimit{}, fmt.Errorf("MAILTRIGGER_MEMORY_LIMIT: %q is not a percentage above 0 and at most 100", s)
		}
		return MemoryLimit{Percent: p}, nil
	}
	n, err := parseBytes(s)
	if err != nil {
		return MemoryLimit{}, fmt.Errorf("MAILTRIGGER_MEMORY_LIMIT: %w", err)
	}
	return MemoryLimit{Bytes: n}, nil
}

// minMemoryLimit refuses limits so low that the collector would run
// without pause: the service's heap at rest is a few tens of MB.
const minMemoryLimit = 32 << 20

var units = []struct {
	suffix string
	mult   float64
}{ // longest first: "MiB" before "B"
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1},
}

func parseBytes(s string) (int64, error) {
	num, mult := s, 1.0
	for _, u := range units {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			num, mult = strings.TrimSpace(v), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || math.IsNaN(f) || f <= 0 {
		return 0, fmt.Errorf("%q is not off, a percentage like 80%%, or a size like 768MiB or 1GB", s)
	}
	b := f * mult
	if b < minMemoryLimit {
		return 0, fmt.Errorf("%q is below the least useful limit, 32MiB", s)
	}
	if b >= math.MaxInt64 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return int64(b), nil
}

// SoftMemoryLimit decides the soft memory limit to apply with
// debug.SetMemoryLimit at start, and says where it comes from:
//
//   - MAILTRIGGER_MEMORY_LIMIT when set: its size; its percentage of the
//     cgroup limit (cgroupLimit, 0 for none), or of the machine's memory
//     (machine) without one; or "off", which also overrides GOMEMLIMIT
//     (limit math.MaxInt64, the runtime's "no limit");
//   - else GOMEMLIMIT, which the Go runtime applied already (limit 0:
//     leave it as it is);
//   - else DefaultMemoryFraction of the cgroup limit when there is one;
//   - else none (limit 0): on a machine of its own the service leaves the
//     collector at its default pace.
//
// It fails only for a percentage when neither cgroupLimit nor machine is
// known.
func (c Config) SoftMemoryLimit(gomemlimit string, cgroupLimit, machine int64) (limit int64, from string, err error) {
	m, err := ParseMemoryLimit(c.MemoryLimit)
	if err != nil {
		return 0, "", err
	}
	switch {
	case m.Off:
		return math.MaxInt64, "MAILTRIGGER_MEMORY_LIMIT=off", nil
	case m.Bytes > 0:
		return m.Bytes, "MAILTRIGGER_MEMORY_LIMIT", nil
	case m.Percent > 0 && cgroupLimit > 0:
		return int64(float64(cgroupLimit) * m.Percent / 100), fmt.Sprintf("MAILTRIGGER_MEMORY_LIMIT, %g%% of the cgroup limit", m.Percent), nil
	case m.Percent > 0 && machine > 0:
		return int64(float64(machine) * m.Percent / 100), fmt.Sprintf("MAILTRIGGER_MEMORY_LIMIT, %g%% of the machine's memory", m.Percent), nil
	case m.Percent > 0:
		return 0, "", errors.New("MAILTRIGGER_MEMORY_LIMIT: a percentage needs a cgroup memory limit or the machine's memory size, neither was found")
	case strings.TrimSpace(gomemlimit) != "":
		return 0, "GOMEMLIMIT", nil
	case cgroupLimit > 0:
		return int64(float64(cgroupLimit) * DefaultMemoryFraction), fmt.Sprintf("%g%% of the cgroup limit", DefaultMemoryFraction*100), nil
	}
	return 0, "", nil
}

// noCgroupLimit: cgroup v1 reports "no limit" as a huge number (a page
// count's worth of the largest int64).
const noCgroupLimit = 1 << 60

// CgroupMemoryLimit returns the memory limit of the process's cgroup in
// bytes, 0 when there is none or it cannot be read. root is the file
// system root (os.DirFS("/")); it reads /proc/self/cgroup and then
// cgroup v2's memory.max, or cgroup v1's memory.limit_in_bytes.
func CgroupMemoryLimit(root fs.FS) int64 {
	b, err := fs.ReadFile(root, "proc/self/cgroup")
	if err != nil {
		return 0
	}
	var v2, v1 string
	for line := range strings.Lines(string(b)) {
		// hierarchy-ID:controller-list:path
		parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			v2 = parts[2]
		case hasController(parts[1], "memory"):
			v1 = parts[2]
		}
	}
	var candidates []string
	if v1 != "" {
		candidates = append(candidates, cgroupPath("sys/fs/cgroup/memory", v1, "memory.limit_in_bytes"),
			"sys/fs/cgroup/memory/memory.limit_in_bytes")
	}
	if v2 != "" {
		candidates = append(candidates, cgroupPath("sys/fs/cgroup", v2, "memory.max"), "sys/fs/cgroup/memory.max")
	}
	for _, p := range candidates {
		b, err := fs.ReadFile(root, p)
		if err != nil {
			continue
		}
		v := strings.TrimSpace(string(b))
		if v == "max" {
			return 0
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 || n >= noCgroupLimit {
			return 0
		}
		return n
	}
	return 0
}

func hasController(list, name string) bool {
	for c := range strings.SplitSeq(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

// cgroupPath joins the mount, the cgroup's path and file as an fs.FS path.
func cgroupPath(mount, cgroup, file string) string {
	cgroup = strings.Trim(cgroup, "/")
	if cgroup == "" {
		return mount + "/" + file
	}
	return mount + "/" + cgroup + "/" + file
}

// MachineMemory returns MemTotal of /proc/meminfo in bytes, 0 when it
// cannot be read. root is as for CgroupMemoryLimit.
func MachineMemory(root fs.FS) int64 {
	b, err := fs.ReadFile(root, "proc/meminfo")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		rest, ok := strings.CutPrefix(line, "MemTotal:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return 0
		}
		return kb << 10
	}
	return 0
}

// ApplyMemoryLimit sets the soft memory limit SoftMemoryLimit decides, with
// debug.SetMemoryLimit, reading GOMEMLIMIT through getenv and the cgroup
// limit and machine memory under root (os.DirFS("/")). It returns the
// limit now in force (0: none) and where it came from.
func (c Config) ApplyMemoryLimit(getenv func(string) string, root fs.FS) (limit int64, from string, err error) {
	limit, from, err = c.SoftMemoryLimit(getenv("GOMEMLIMIT"), CgroupMemoryLimit(root), MachineMemory(root))
	if err != nil {
		return 0, "", err
	}
	if limit > 0 {
		debug.SetMemoryLimit(limit)
	}
	if current := debug.SetMemoryLimit(-1); current != math.MaxInt64 {
		return current, from, nil
	}
	return 0, from, nil
}

// The collector's headroom: how far the heap may grow past what is live
// before the next collection. Go's default (GOGC=100) is as much again as
// is live, which a service with many mailboxes pays for mostly idle
// connections: at 10,000 mailboxes in IDLE, some 300 MB of connection
// state and stacks come with up to 300 MB of headroom. The headroom is for
// garbage, and the service's garbage comes from ingest batches and API
// requests, whose size does not grow with the number of mailboxes. So the
// headroom is GCHeadroomShare of what is live but at least GCHeadroomMin,
// and at most Go's default: GOGC 100 while less than 256 MiB is live,
// down to 25 above that (GCPercent), retuned after every collection
// (TuneGC). A GOGC in the environment turns this off.
const (
	GCHeadroomMin   = 64 << 20
	GCHeadroomShare = 0.25
)

// GCPercent returns the GOGC that gives live bytes (the heap, stacks and
// globals the last collection scanned, which GOGC is a percentage of)
// share of them as headroom, at least floor bytes, and at most GOGC=100.
func GCPercent(live, floor int64, share float64) int {
	if live <= 0 {
		return 100
	}
	room := max(float64(floor), share*float64(live))
	return int(math.Ceil(max(min(100*room/float64(live), 100), 100*share)))
}

// TuneGC keeps GOGC at GCPercent(live, GCHeadroomMin, GCHeadroomShare),
// retuned when each collection ends, unless getenv("GOGC") is set (the
// operator's GOGC then stands, and on is false). stop ends the tuning and
// puts GOGC back to 100. It costs no goroutine of its own: a cleanup of
// an object each collection frees runs it.
func TuneGC(getenv func(string) string) (on bool, stop func()) {
	if strings.TrimSpace(getenv("GOGC")) != "" {
		return false, func() {}
	}
	t := startGCTuner(GCHeadroomMin, GCHeadroomShare)
	return true, t.stop
}

type gcTuner struct {
	floor   int64
	share   float64
	samples []metrics.Sample

	mu      sync.Mutex
	stopped bool
	percent int
}

// gcSentinel is freed by the first collection after it was made; its
// cleanup retunes and makes the next one. It holds a pointer so that it
// is not batched with other tiny objects, which would keep it alive.
type gcSentinel struct{ _ *int }

func startGCTuner(floor int64, share float64) *gcTuner {
	t := &gcTuner{floor: floor, share: share, percent: 100, samples: []metrics.Sample{
		{Name: "/gc/heap/live:bytes"}, {Name: "/gc/scan/stack:bytes"}, {Name: "/gc/scan/globals:bytes"},
	}}
	t.arm()
	return t
}

func (t *gcTuner) arm() {
	runtime.AddCleanup(&gcSentinel{}, (*gcTuner).tune, t)
}

// tune runs on the runtime's cleanup goroutine after a collection.
func (t *gcTuner) tune() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return
	}
	metrics.Read(t.samples)
	var live int64
	for _, s := range t.samples {
		if s.Value.Kind() == metrics.KindUint64 {
			live += int64(s.Value.Uint64())
		}
	}
	if p := GCPercent(live, t.floor, t.share); p != t.percent {
		debug.SetGCPercent(p)
		t.percent = p
	}
	t.arm()
}

func (t *gcTuner) stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.stopped {
		t.stopped = true
		debug.SetGCPercent(100)
	}
}
