package bench

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"
)

// Table prints the results as a table.
func (r *Report) Table(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tDB\tMETRIC\tVALUE\tFLOOR\tGOAL\tMET")
	for _, res := range r.Results {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", res.Scenario, orDash(res.Database), res.Metric, res.Value,
			orDash(res.Floor), orDash(res.Goal), verdict(res.Met))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, e := range r.Errors {
		fmt.Fprintf(w, "FAILED: %s\n", e)
	}
	return nil
}

func verdict(m *bool) string {
	switch {
	case m == nil:
		return "-"
	case *m:
		return "yes"
	}
	return "NO"
}

// Doc markers: WriteDoc replaces what is between them and leaves the rest
// of the file (profiles, micro-benchmarks: written by hand) alone.
const (
	docBegin = "<!-- bench:begin (written by mailtrigger bench; edits between these markers are overwritten) -->"
	docEnd   = "<!-- bench:end -->"
)

// Markdown returns the generated section of docs/benchmarks.md.
func (r *Report) Markdown(command string) string {
	var b strings.Builder
	m := r.Machine
	b.WriteString(docBegin + "\n")
	fmt.Fprintf(&b, "## End-to-end bench (issue 7)\n\n")
	fmt.Fprintf(&b, "Run %s UTC, %v in all.\n\n", r.Started.UTC().Format("2006-01-02 15:04"), r.Duration.Round(time.Second))
	fmt.Fprintf(&b, "- **Machine:** %s, %d cores, %d MB RAM, Linux %s; open files %d; fs.inotify.max_user_instances %s.\n",
		m.CPU, m.Cores, m.MemoryMB, m.Kernel, m.FileLimit, m.InotifyMax)
	fmt.Fprintf(&b, "- **Versions:** %s (%s", m.Mailtrig, m.Go)
	if m.Commit != "" {
		fmt.Fprintf(&b, ", commit %s", m.Commit)
	}
	fmt.Fprintf(&b, "); Dovecot %s; %s.\n", m.Dovecot, m.Postgres)
	fmt.Fprintf(&b, "- **Command:**\n\n  ```sh\n  %s\n  ```\n\n", command)
	o := r.Options
	fmt.Fprintf(&b, "Sizes: latency %d messages (gaps %v–%v); backlog %d messages; %d idle mailboxes (rest %v, %d probes); "+
		"%d runs; big message %s.\n\n", o.LatencyMessages, o.GapMin, o.GapMax, o.BacklogMessages, o.Mailboxes, o.Rest, o.Probes,
		o.Runs, mib(o.BigSize))
	if len(o.Delays) > 0 {
		fmt.Fprintf(&b, "Delivery to endpoints: delays %v, %v runs; Retry-After %d runs; fairness %d runs each, slow endpoint %v.\n\n",
			o.Delays, o.RemoteRuns, o.RetryRuns, o.FairRuns, o.SlowDelay)
	}
	b.WriteString("| scenario | db | metric | mailtrigger | floor (same run) | goal | met |\n|---|---|---|---|---|---|---|\n")
	for _, res := range r.Results {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", res.Scenario, orDash(res.Database), res.Metric,
			res.Value, orDash(res.Floor), orDash(res.Goal), verdict(res.Met))
	}
	notes := false
	for _, res := range r.Results {
		if res.Note == "" {
			continue
		}
		if !notes {
			b.WriteString("\n")
			notes = true
		}
		fmt.Fprintf(&b, "- %s, %s%s: %s.\n", res.Scenario, res.Metric, dbSuffix(res.Database), res.Note)
	}
	for _, e := range r.Errors {
		fmt.Fprintf(&b, "\n**Failed:** %s\n", e)
	}
	b.WriteString("\n" + docEnd + "\n")
	return b.String()
}

func dbSuffix(db string) string {
	if db == "" {
		return ""
	}
	return " (" + db + ")"
}

// WriteDoc puts section into the file at path between the markers,
// replacing an earlier section, or after the first heading when there is
// none yet.
func WriteDoc(path, section string) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	var out []byte
	i, j := bytes.Index(old, []byte(docBegin)), bytes.Index(old, []byte(docEnd))
	switch {
	case i >= 0 && j > i:
		out = append(append(append(out, old[:i]...), section...), bytes.TrimPrefix(old[j+len(docEnd):], []byte("\n"))...)
	case len(old) == 0:
		out = []byte("# Benchmarks\n\n" + section)
	default:
		// After the title line.
		k := bytes.IndexByte(old, '\n') + 1
		out = append(append(append(out, old[:k]...), "\n"+section+"\n"...), old[k:]...)
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
