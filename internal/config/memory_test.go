package config_test

import (
	"math"
	"runtime/debug"
	"strings"
	"testing"
	"testing/fstest"

	"mailtrigger/internal/config"
)

func TestParseMemoryLimit(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want config.MemoryLimit
		err  string
	}{
		{in: "", want: config.MemoryLimit{}},
		{in: "off", want: config.MemoryLimit{Off: true}},
		{in: "OFF", want: config.MemoryLimit{Off: true}},
		{in: "768MiB", want: config.MemoryLimit{Bytes: 768 << 20}},
		{in: "1GB", want: config.MemoryLimit{Bytes: 1e9}},
		{in: "1.5GiB", want: config.MemoryLimit{Bytes: 3 << 29}},
		{in: "536870912", want: config.MemoryLimit{Bytes: 1 << 29}},
		{in: "536870912B", want: config.MemoryLimit{Bytes: 1 << 29}},
		{in: " 80% ", want: config.MemoryLimit{Percent: 80}},
		{in: "100%", want: config.MemoryLimit{Percent: 100}},
		{in: "0%", err: "not a percentage"},
		{in: "120%", err: "not a percentage"},
		{in: "lots", err: "not off, a percentage"},
		{in: "-1GB", err: "not off, a percentage"},
		{in: "1 gigabyte", err: "not off, a percentage"},
		{in: "NaNMB", err: "not off, a percentage"},
		{in: "16MiB", err: "below the least useful limit"},
		{in: "9999999TB", err: "too large"},
	} {
		got, err := config.ParseMemoryLimit(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.HasPrefix(err.Error(), "MAILTRIGGER_MEMORY_LIMIT") {
				t.Errorf("%q: got %+v, %v; want an error with %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%q: got %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
	// Validate refuses what ParseMemoryLimit refuses.
	c := config.FromEnv(func(k string) string {
		if k == "MAILTRIGGER_MEMORY_LIMIT" {
			return "half"
		}
		return ""
	})
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "MAILTRIGGER_MEMORY_LIMIT") {
		t.Errorf("Validate with MAILTRIGGER_MEMORY_LIMIT=half: %v", err)
	}
	c.MemoryLimit = "1GiB"
	if err := c.Validate(); err != nil {
		t.Errorf("Validate with 1GiB: %v", err)
	}
}

func TestSoftMemoryLimit(t *testing.T) {
	const cg, machine = 1 << 30, 8 << 30
	for _, tt := range []struct {
		setting, gomemlimit string
		cgroup, machine     int64
		want                int64
		from, err           string
	}{
		// Unset: GOMEMLIMIT stands, else 90 % of a cgroup limit, else none.
		{machine: machine, want: 0, from: ""},
		{cgroup: cg, machine: machine, want: cg * 9 / 10, from: "90% of the cgroup limit"},
		{gomemlimit: "500MiB", cgroup: cg, machine: machine, want: 0, from: "GOMEMLIMIT"},
		// Set: it wins over GOMEMLIMIT and the cgroup.
		{setting: "600MiB", gomemlimit: "500MiB", cgroup: cg, want: 600 << 20, from: "MAILTRIGGER_MEMORY_LIMIT"},
		{setting: "off", gomemlimit: "500MiB", cgroup: cg, want: math.MaxInt64, from: "MAILTRIGGER_MEMORY_LIMIT=off"},
		{setting: "50%", cgroup: cg, machine: machine, want: cg / 2, from: "50% of the cgroup limit"},
		{setting: "50%", machine: machine, want: machine / 2, from: "50% of the machine's memory"},
		{setting: "50%", err: "needs a cgroup memory limit"},
		{setting: "tiny", err: "MAILTRIGGER_MEMORY_LIMIT"},
	} {
		c := config.Config{MemoryLimit: tt.setting}
		got, from, err := c.SoftMemoryLimit(tt.gomemlimit, tt.cgroup, tt.machine)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%+v: got %d (%s), %v; want an error with %q", tt, got, from, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want || !strings.Contains(from, tt.from) || (tt.from == "") != (from == "") {
			t.Errorf("%+v: got %d (%q), %v; want %d (%q)", tt, got, from, err, tt.want, tt.from)
		}
	}
}

func TestCgroupMemoryLimit(t *testing.T) {
	meminfo := &fstest.MapFile{Data: []byte("MemTotal:       24599896 kB\nMemFree:        1 kB\n")}
	for _, tt := range []struct {
		name string
		fs   fstest.MapFS
		want int64
	}{
		{"v2 container", fstest.MapFS{
			"proc/self/cgroup":         {Data: []byte("0::/\n")},
			"sys/fs/cgroup/memory.max": {Data: []byte("1073741824\n")},
		}, 1 << 30},
		{"v2 systemd unit", fstest.MapFS{
			"proc/self/cgroup": {Data: []byte("0::/system.slice/mailtrigger.service\n")},
			"sys/fs/cgroup/system.slice/mailtrigger.service/memory.max": {Data: []byte("536870912\n")},
		}, 1 << 29},
		{"v2 unlimited", fstest.MapFS{
			"proc/self/cgroup":         {Data: []byte("0::/\n")},
			"sys/fs/cgroup/memory.max": {Data: []byte("max\n")},
		}, 0},
		{"v1 hybrid", fstest.MapFS{
			"proc/self/cgroup": {Data: []byte("5:devices:/\n4:memory:/docker/abc\n0::/\n")},
			"sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes": {Data: []byte("268435456\n")},
		}, 1 << 28},
		{"v1 namespaced", fstest.MapFS{
			"proc/self/cgroup":                           {Data: []byte("4:memory,foo:/docker/abc\n")},
			"sys/fs/cgroup/memory/memory.limit_in_bytes": {Data: []byte("268435456\n")},
		}, 1 << 28},
		{"v1 unlimited", fstest.MapFS{
			"proc/self/cgroup":                           {Data: []byte("4:memory:/\n")},
			"sys/fs/cgroup/memory/memory.limit_in_bytes": {Data: []byte("9223372036854771712\n")},
		}, 0},
		{"no cgroup", fstest.MapFS{}, 0},
	} {
		tt.fs["proc/meminfo"] = meminfo
		if got := config.CgroupMemoryLimit(tt.fs); got != tt.want {
			t.Errorf("%s: got %d, want %d", tt.name, got, tt.want)
		}
		if got := config.MachineMemory(tt.fs); got != 24599896<<10 {
			t.Errorf("%s: machine memory %d", tt.name, got)
		}
	}
}

func TestApplyMemoryLimit(t *testing.T) {
	old := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(old) })
	root := fstest.MapFS{
		"proc/self/cgroup":         {Data: []byte("0::/\n")},
		"sys/fs/cgroup/memory.max": {Data: []byte("1073741824\n")},
	}
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

	debug.SetMemoryLimit(math.MaxInt64)
	limit, from, err := config.Config{}.ApplyMemoryLimit(env(nil), root)
	if want := int64(1<<30) * 9 / 10; err != nil || limit != want || debug.SetMemoryLimit(-1) != want {
		t.Errorf("default in a 1 GiB cgroup: got %d (%s), %v, runtime %d; want %d", limit, from, err, debug.SetMemoryLimit(-1), want)
	}
	limit, _, err = config.Config{MemoryLimit: "off"}.ApplyMemoryLimit(env(nil), root)
	if err != nil || limit != 0 || debug.SetMemoryLimit(-1) != math.MaxInt64 {
		t.Errorf("off: got %d, %v, runtime %d; want none", limit, err, debug.SetMemoryLimit(-1))
	}
	// GOMEMLIMIT as the runtime applied it stays.
	debug.SetMemoryLimit(300 << 20)
	limit, from, err = config.Config{}.ApplyMemoryLimit(env(map[string]string{"GOMEMLIMIT": "300MiB"}), root)
	if err != nil || limit != 300<<20 || from != "GOMEMLIMIT" {
		t.Errorf("GOMEMLIMIT: got %d (%s), %v; want 300MiB from GOMEMLIMIT", limit, from, err)
	}
	if _, _, err := (config.Config{MemoryLimit: "x"}).ApplyMemoryLimit(env(nil), root); err == nil {
		t.Error("a bad setting was applied")
	}
}
