package web

import (
	"fmt"
	"html/template"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"mailtrigger/internal/mail"
	"mailtrigger/internal/valid"
)

// fieldLabels name the fields of the forms in error summaries, in the
// order the forms show them.
var fieldLabels = []struct{ key, label string }{
	{"name", "Name"}, {"serverType", "Server Type"}, {"type", "Type"}, {"description", "Description"},
	{"host", "Host Name"}, {"port", "Port Number"}, {"username", "User Name"}, {"password", "Password"},
	{"tenantId", "Tenant Id"}, {"clientId", "Client Id"}, {"clientSecret", "Client Secret"},
	{"folder", "Folder"}, {"tls", "TLS"}, {"caCert", "Trusted CA certificates"}, {"afterProcessing", "After processing"},
	{"moveTo", "Move to folder"}, {"pollInterval", "Poll interval"}, {"backlog", "Mail already in the folder"},
	{"graphUrl", "Graph URL"}, {"authorityUrl", "Authority URL"}, {"auth", "Authentication"}, {"provider", "Provider"},
	{"authUrl", "Authorization URL"}, {"tokenUrl", "Token URL"}, {"scope", "Scope"},
	{"start.emailTrigger", "Email Trigger"}, {"start.emailTrigger.imap", "IMAP"}, {"start.emailTrigger.subject", "Subject"},
	{"start.emailTrigger.match", "Match"}, {"start.emailTrigger.from", "Sender"}, {"activities", "Webhooks"},
	// The flow editor's fields (flowErrorKey).
	{"imap", "IMAP"}, {"match", "Match"}, {"subject", "Subject"}, {"from", "Only from sender"},
	// The alert subscription form's fields.
	{"kind", "Send as"}, {"url", "URL"}, {"secret", "Signing secret"}, {"to", "Recipients"}, {"events", "Events"},
}

// actLabels name a webhook's fields in the flow editor (act-N-field).
var actLabels = map[string]string{"url": "URL", "secret": "Signing secret", "timeout": "Timeout",
	"maxConcurrency": "Most requests at once", "ratePerSecond": "Most requests per second", "headers": "Extra headers",
	"attach": "Include attachments", "type": "URL"}

func fieldLabel(key string) string {
	for _, f := range fieldLabels {
		if f.key == key {
			return f.label
		}
	}
	if rest, ok := strings.CutPrefix(key, "act-"); ok {
		n, field, _ := strings.Cut(rest, "-")
		var i int
		fmt.Sscan(n, &i)
		if l, ok := actLabels[field]; ok {
			field = l
		}
		return fmt.Sprintf("Webhook %d: %s", i+1, field)
	}
	if rest, ok := strings.CutPrefix(key, "activities["); ok {
		n, field, _ := strings.Cut(rest, "].")
		var i int
		fmt.Sscan(n, &i)
		return fmt.Sprintf("Webhook %d: %s", i+1, field)
	}
	return key
}

type fieldError struct {
	Key, Label, Message string
}

// sortedErrors lists e in the order of the form's fields.
func sortedErrors(e valid.Errors) []fieldError {
	var out []fieldError
	for k, m := range e {
		out = append(out, fieldError{Key: k, Label: fieldLabel(k), Message: m})
	}
	pos := func(k string) int {
		for i, f := range fieldLabels {
			if f.key == k {
				return i
			}
		}
		return len(fieldLabels)
	}
	slices.SortFunc(out, func(a, b fieldError) int {
		if d := pos(a.Key) - pos(b.Key); d != 0 {
			return d
		}
		return strings.Compare(a.Key, b.Key)
	})
	return out
}

func asTime(v any) (time.Time, bool) {
	switch t := v.(type) {
	case time.Time:
		return t, !t.IsZero()
	case *time.Time:
		if t == nil {
			return time.Time{}, false
		}
		return *t, !t.IsZero()
	}
	return time.Time{}, false
}

// when formats a time for people (UTC; the page's script shows it in the
// browser's time zone).
func when(v any) string {
	t, ok := asTime(v)
	if !ok {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05") + " UTC"
}

func iso(v any) string {
	t, ok := asTime(v)
	if !ok {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func ago(v any) string {
	t, ok := asTime(v)
	if !ok {
		return "never"
	}
	d := time.Since(t)
	switch {
	case d < 0:
		return "in " + roughly(-d)
	case d < 10*time.Second:
		return "just now"
	}
	return roughly(d) + " ago"
}

func roughly(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%d s", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%d min", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h", int(d.Hours()))
	}
	return fmt.Sprintf("%d days", int(d.Hours()/24))
}

// quoted is a Go-quoted string in a match reason (flow's %q).
var quoted = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)

// plainReason shows a match reason's quoted strings as people write them:
// in curly quotes, without Go's escapes (\" and \\).
func plainReason(s string) string {
	return quoted.ReplaceAllStringFunc(s, func(q string) string {
		u, err := strconv.Unquote(q)
		if err != nil {
			return q
		}
		return "“" + u + "”"
	})
}

func typeLabel(t string) string {
	switch t {
	case "generic":
		return "Generic"
	case "msgraph":
		return "MS Graph API"
	}
	return t
}

func serverLabel(s string) string {
	switch s {
	case "imaps":
		return "IMAPS"
	case "pop3s":
		return "POP3S"
	}
	return s
}

func addrs(as []mail.Address) string {
	var parts []string
	for _, a := range as {
		switch {
		case a.Name != "" && a.Address != "":
			parts = append(parts, a.Name+" <"+a.Address+">")
		case a.Address != "":
			parts = append(parts, a.Address)
		default:
			parts = append(parts, a.Name)
		}
	}
	return strings.Join(parts, ", ")
}

func sender(as []mail.Address) string {
	if len(as) == 0 {
		return "—"
	}
	if as[0].Name != "" {
		return as[0].Name
	}
	return as[0].Address
}

func size(n int64) string {
	switch {
	case n < 1024:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KB", float64(n)/1024)
	}
	return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
}

// dict builds a map for a sub-template from key, value pairs.
func dict(kv ...any) (map[string]any, error) {
	if len(kv)%2 != 0 {
		return nil, fmt.Errorf("dict: odd number of arguments")
	}
	m := map[string]any{}
	for i := 0; i < len(kv); i += 2 {
		k, ok := kv[i].(string)
		if !ok {
			return nil, fmt.Errorf("dict: key %v is not a string", kv[i])
		}
		m[k] = kv[i+1]
	}
	return m, nil
}

func (u *UI) funcs() template.FuncMap {
	return template.FuncMap{
		"static":          u.static.url,
		"errs":            sortedErrors,
		"when":            when,
		"clock":           clock,
		"alertTarget":     alertTarget,
		"iso":             iso,
		"ago":             ago,
		"typeLabel":       typeLabel,
		"reason":          plainReason,
		"sameMailboxText": sameMailboxText,
		"serverLabel":     serverLabel,
		"addrs":           addrs,
		"sender":          sender,
		"size":            size,
		"dict":            dict,
		"path":            pathEscape,
		"providerLabel":   providerLabel,
		"lower":           strings.ToLower,
		"join":            strings.Join,
		"plural":          plural,
		"add":             func(a, b int) int { return a + b },
		"runeCount":       func(s string) int { return len([]rune(s)) },
		"duration":        duration,
		"statusClass":     runStatusClass,
		"isSet":           func(e valid.Errors, k string) bool { _, ok := e[k]; return ok },
		"fieldMessage":    func(e valid.Errors, k string) string { return e[k] },
	}
}

func duration(d time.Duration) string {
	if d < 10*time.Second {
		return fmt.Sprintf("%d ms", d.Milliseconds())
	}
	return fmt.Sprintf("%.1f s", d.Seconds())
}

func runStatusClass(s string) string {
	switch s {
	case "delivered":
		return "ok"
	case "failed":
		return "bad"
	case "retrying":
		return "warn"
	case "pending", "delivering":
		return "busy"
	}
	return "off"
}
