package web

import (
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"mailtrigger/internal/flow"
	"mailtrigger/internal/store"
	"mailtrigger/internal/valid"
)

// flowForm is what the flow editor shows. Webhook secrets are never part
// of it: only whether one is stored.
type flowForm struct {
	Name, Description       string
	Enabled                 bool
	IMAP, Subject, Match    string
	IgnoreReplyPrefixes     bool
	From                    string
	Acts                    []actForm
	CreatedAt, UpdatedAt    *time.Time
	TestSubject, TestSender string
}

type actForm struct {
	I                  int // position in the form
	Orig               int // position in the stored flow; -1 for a new one
	URL, Headers       string
	Timeout            string
	IncludeAttachments bool
	// MaxConcurrency and RatePerSecond as typed; "" when unset.
	MaxConcurrency, RatePerSecond string
	HasSecret                     bool
	SecretTyped                   bool
	HeadersTyped                  bool // header values were typed: they must be typed again
	Blank                         bool // the empty slot for adding one
}

type shownSecret struct {
	Webhook int
	URL     string
	Secret  string
}

type flowPage struct {
	Create  bool
	Orig    string
	Form    flowForm
	Errors  valid.Errors
	IMAPs   []string
	Secrets []shownSecret
	Max     int
}

func formFromFlow(fr store.FlowRecord, f flow.Flow) flowForm {
	t := f.Start.EmailTrigger
	ff := flowForm{Name: fr.Name, Description: f.Description, Enabled: fr.Enabled, IMAP: fr.IMAPName, Subject: t.Subject,
		Match: t.Match, IgnoreReplyPrefixes: t.IgnoreReplyPrefixes, From: t.From, CreatedAt: &fr.CreatedAt, UpdatedAt: &fr.UpdatedAt}
	for i, a := range f.Activities {
		ff.Acts = append(ff.Acts, actForm{I: i, Orig: i, URL: a.URL, Headers: formatHeaders(a.Headers), Timeout: a.Timeout,
			IncludeAttachments: a.IncludeAttachments, HasSecret: a.Secret != ""})
		if a.MaxConcurrency > 0 {
			ff.Acts[i].MaxConcurrency = strconv.Itoa(a.MaxConcurrency)
		}
		if a.RatePerSecond > 0 {
			ff.Acts[i].RatePerSecond = strconv.FormatFloat(a.RatePerSecond, 'f', -1, 64)
		}
	}
	return ff
}

// storedValue stands for a stored header value in the editor: header values
// are write-only, so the editor shows each stored header's name with this
// instead of its value, and a line left with it keeps the stored value.
const storedValue = "•••• (stored)"

func formatHeaders(h map[string]string) string {
	var lines []string
	for k := range h {
		lines = append(lines, k+": "+storedValue)
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// hideHeaderValues returns the submitted header lines for showing again:
// a value typed is never sent back to the browser, so its line keeps only
// the name; typed reports whether there was one.
func hideHeaderValues(text string) (out string, typed bool) {
	var lines []string
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		m := headerLine.FindStringSubmatch(line)
		switch {
		case m == nil:
			lines = append(lines, "(a line that is not Name: value)")
			typed = true
		case m[2] == storedValue || m[2] == "":
			lines = append(lines, line)
		default:
			lines = append(lines, m[1]+": ")
			typed = true
		}
	}
	return strings.Join(lines, "\n"), typed
}

// withBlank adds the empty webhook slot the editor offers for adding one.
func withBlank(f flowForm) flowForm {
	if len(f.Acts) < flow.MaxActivities {
		f.Acts = append(f.Acts, actForm{I: len(f.Acts), Orig: -1, Blank: len(f.Acts) > 0})
	}
	return f
}

// flowErrorKey turns a key of flow.Build's errors into the editor's: the
// trigger's fields by their short names, an activity's by its place in the
// form (act-N-field).
func flowErrorKey(k string, formIndex []int) string {
	if rest, ok := strings.CutPrefix(k, "start.emailTrigger."); ok {
		return rest
	}
	if k == "start.emailTrigger" {
		return "subject"
	}
	if rest, ok := strings.CutPrefix(k, "activities["); ok {
		n, field, _ := strings.Cut(rest, "]")
		i, err := strconv.Atoi(n)
		if err == nil && i < len(formIndex) {
			field = strings.TrimPrefix(field, ".")
			field, _, _ = strings.Cut(field, ".")
			return fmt.Sprintf("act-%d-%s", formIndex[i], field)
		}
	}
	return k
}

var headerLine = regexp.MustCompile(`^([^:\s]+)\s*:\s*(.*)$`)

// flowInputFromValues reads the editor's form into the input the API decodes
// from JSON. It also returns the stored flow's activities aligned to the
// submitted ones (so that a webhook keeps its own secret when another is
// removed before it) and, per activity built, its place in the form.
func flowInputFromValues(v url.Values, prev *flow.Flow) (flow.Input, *flow.Flow, []int, flowForm, valid.Errors) {
	e := valid.Errors{}
	str := func(k string) *string { s := v.Get(k); return &s }
	trimmed := func(k string) *string { s := strings.TrimSpace(v.Get(k)); return &s }
	enabled := v.Has("enabled")
	ignore := v.Has("ignoreReplyPrefixes")
	match := v.Get("match")
	in := flow.Input{Name: trimmed("name"), Description: str("description"), Enabled: &enabled,
		Start: &flow.StartInput{EmailTrigger: &flow.TriggerInput{IMAP: trimmed("imap"), Subject: str("subject"),
			Match: &match, IgnoreReplyPrefixes: &ignore, From: trimmed("from")}}}
	ff := flowForm{Name: v.Get("name"), Description: v.Get("description"), Enabled: enabled, IMAP: v.Get("imap"),
		Subject: v.Get("subject"), Match: match, IgnoreReplyPrefixes: ignore, From: v.Get("from"),
		TestSubject: v.Get("testSubject"), TestSender: v.Get("testSender")}

	var aligned *flow.Flow
	if prev != nil {
		aligned = &flow.Flow{}
	}
	var formIndex []int
	n, _ := strconv.Atoi(v.Get("acts"))
	n = min(max(n, 0), flow.MaxActivities+1)
	for i := range n {
		p := fmt.Sprintf("act-%d-", i)
		orig, err := strconv.Atoi(v.Get(p + "orig"))
		if err != nil || prev == nil || orig < 0 || orig >= len(prev.Activities) {
			orig = -1
		}
		a := actForm{I: len(ff.Acts), Orig: orig, URL: strings.TrimSpace(v.Get(p + "url")), Headers: v.Get(p + "headers"),
			Timeout: strings.TrimSpace(v.Get(p + "timeout")), IncludeAttachments: v.Has(p + "attach"),
			SecretTyped: v.Get(p+"secret") != "", HasSecret: orig >= 0 && prev.Activities[orig].Secret != "",
			MaxConcurrency: strings.TrimSpace(v.Get(p + "maxConcurrency")), RatePerSecond: strings.TrimSpace(v.Get(p + "ratePerSecond"))}
		if v.Has(p + "remove") {
			continue
		}
		if orig < 0 && a.URL == "" && !a.SecretTyped && strings.TrimSpace(a.Headers) == "" && a.Timeout == "" &&
			a.MaxConcurrency == "" && a.RatePerSecond == "" {
			continue // the empty slot, left empty
		}
		ai := flow.ActivityInput{Type: new("webhook"), URL: &a.URL, IncludeAttachments: &a.IncludeAttachments}
		if a.Timeout != "" {
			ai.Timeout = &a.Timeout
		}
		if s := v.Get(p + "secret"); s != "" {
			ai.Secret = &s
		}
		if a.MaxConcurrency != "" {
			if n, err := strconv.Atoi(a.MaxConcurrency); err != nil {
				e.Add(fmt.Sprintf("act-%d-maxConcurrency", a.I), fmt.Sprintf("must be a whole number from 1 to %d, or empty for the adaptive limit", flow.MaxConcurrency))
			} else {
				ai.MaxConcurrency = &n
			}
		}
		if a.RatePerSecond != "" {
			if r, err := strconv.ParseFloat(a.RatePerSecond, 64); err != nil {
				e.Add(fmt.Sprintf("act-%d-ratePerSecond", a.I), fmt.Sprintf("must be a number from 0.01 to %d, or empty for no rate limit", flow.MaxRatePerSecond))
			} else {
				ai.RatePerSecond = &r
			}
		}
		for _, line := range strings.Split(a.Headers, "\n") {
			line = strings.TrimSpace(line)
			if line == "" {
				continue
			}
			m := headerLine.FindStringSubmatch(line)
			if m == nil {
				e.Add(fmt.Sprintf("act-%d-headers", a.I), "one header per line, as Name: value")
				continue
			}
			if ai.Headers == nil {
				ai.Headers = map[string]string{}
			}
			value := m[2]
			if value == storedValue {
				value = "" // keeps the stored value
			}
			ai.Headers[m[1]] = value
		}
		a.Headers, a.HeadersTyped = hideHeaderValues(a.Headers)
		in.Activities = append(in.Activities, ai)
		formIndex = append(formIndex, a.I)
		if aligned != nil {
			var pa flow.Activity
			if orig >= 0 {
				pa = prev.Activities[orig]
			}
			aligned.Activities = append(aligned.Activities, pa)
		}
		ff.Acts = append(ff.Acts, a)
	}
	return in, aligned, formIndex, ff, e
}

// formErrors maps the field errors of a flow change to the editor's fields:
// flow.Build's, named as the API names them, and the form's own (already
// act-N-field). It goes in the order of the names, so that where several
// come to one field the same message always wins: the form's own (act-
// sorts before activities[), and a field's before one of its parts'.
func formErrors(ve valid.Errors, formIndex []int) valid.Errors {
	e := valid.Errors{}
	for _, k := range slices.Sorted(maps.Keys(ve)) {
		e.Add(flowErrorKey(k, formIndex), ve[k])
	}
	return e
}
