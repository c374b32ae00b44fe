package web

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"mailtrigger/internal/imapconf"
)

// statusView is a watcher's status as the page shows it.
type statusView struct {
	State  string `json:"state"`
	Label  string `json:"label"`
	Class  string `json:"class"` // ok, busy, warn, bad, off
	Detail string `json:"detail"`
	Done   int    `json:"done,omitempty"`
	Total  int    `json:"total,omitempty"`
	// Reason is the last error, in the UI's words, while it matters: not
	// once the watcher is connected again.
	Reason string `json:"reason,omitempty"`
	// SinceAt is since when the watcher has been in its state (RFC 3339);
	// "" when unknown. The page shows it as "since 10:02".
	SinceAt string `json:"since,omitempty"`

	Since         *time.Time `json:"-"`
	LastError     string     `json:"-"`
	LastErrorAt   *time.Time `json:"-"`
	LastMessageAt *time.Time `json:"-"`
	LastSuccessAt *time.Time `json:"-"`
	Ingested      int64      `json:"-"`
	Reconnects    int64      `json:"-"`
}

func (u *UI) statusOf(c imapconf.Config) statusView {
	st := u.rt.Status(c)
	if st == nil {
		if !c.Enabled {
			return statusView{State: imapconf.StateDisabled, Label: "Disabled", Class: "off", Detail: "Not read: enable it to start reading mail."}
		}
		return statusView{State: "unknown", Label: "Unknown", Class: "off", Detail: "No watcher runs in this process."}
	}
	v := statusView{State: st.State, LastError: st.LastError, LastErrorAt: st.LastErrorAt, LastMessageAt: st.LastMessageAt,
		LastSuccessAt: st.LastSuccessAt, Ingested: st.MessagesIngested, Reconnects: st.Reconnects}
	if !st.Since.IsZero() {
		v.Since = &st.Since
		v.SinceAt = iso(st.Since)
	}
	switch st.State {
	case imapconf.StateDisabled:
		v.Label, v.Class, v.Detail = "Disabled", "off", "Not read: enable it to start reading mail."
	case imapconf.StateConnecting:
		v.Label, v.Class, v.Detail = "Connecting", "busy", "Connecting to the server."
	case imapconf.StateSyncing:
		v.Label, v.Class, v.Detail = "Syncing", "busy", "Reading the mail that arrived since the last check."
		if st.BacklogTotal > 0 {
			v.Done, v.Total = st.BacklogDone, st.BacklogTotal
			v.Label = fmt.Sprintf("Syncing %d / %d", st.BacklogDone, st.BacklogTotal)
		}
	case imapconf.StateIdle:
		v.Label, v.Class, v.Detail = "Connected", "ok", "Connected; new mail arrives at once (IMAP IDLE)."
	case imapconf.StatePolling:
		v.Label, v.Class, v.Detail = "Connected", "ok", fmt.Sprintf("Connected; checks for new mail every %d s (the server has no IDLE).", c.PollInterval)
	case imapconf.StateStale:
		v.Label, v.Class, v.Detail = "Stale", "warn", "The server went silent; reconnecting."
	case imapconf.StateError:
		v.Label, v.Class, v.Detail = "Error", "bad", "Failing."+retryText(st.RetryAt)
	case imapconf.StateAuthFailed:
		what := "user name and password"
		if c.Type == imapconf.TypeMSGraph || c.Auth == imapconf.AuthOAuth2 {
			what = "Client Id and Client Secret"
		}
		v.Label, v.Class, v.Detail = "Auth failed", "bad", "The server refused the login; check the "+what+"."+retryText(st.RetryAt)
	case imapconf.StateUnsupported:
		v.Label, v.Class, v.Detail = "Not read yet", "warn", "This kind of mailbox is not read by this release."
	default:
		v.Label, v.Class = st.State, "off"
	}
	if st.LastError != "" && v.Class != "ok" {
		v.Reason = uiError(st.LastError)
	} else {
		v.LastError = ""
	}
	if st.Replica != "" {
		v.Detail += " Read by replica " + st.Replica + "."
	}
	return v
}

// retryText says when a failing watcher tries again, from the time its
// configured backoff gives.
func retryText(at *time.Time) string {
	if at == nil {
		return ""
	}
	if time.Until(*at) < 10*time.Second {
		return " Trying again now."
	}
	return " Next try " + ago(*at) + "."
}

// apiWords are the configuration's API names that errors from below use,
// with the labels the form shows.
var apiWords = strings.NewReplacer(
	"set caCert", "paste the CA's certificate into Trusted CA certificates (Advanced settings)",
	"caCert", "Trusted CA certificates", "tenantId", "Tenant Id", "clientId", "Client Id", "clientSecret", "Client Secret",
	"tokenUrl", "Token URL", "pollInterval", "Poll interval", "afterProcessing", "After processing", "moveTo", "Move to folder",
	"serverType", "Server Type", "graphUrl", "Graph URL", "authorityUrl", "Authority URL")

// uiError is an error text as the UI shows it: a prefix said twice in a
// row ("tls: tls: …") once, and the API's field names as the form's labels.
func uiError(s string) string {
	parts := strings.Split(s, ": ")
	var out []string
	for i, p := range parts {
		if i > 0 && p == parts[i-1] {
			continue
		}
		out = append(out, p)
	}
	return apiWords.Replace(strings.Join(out, ": "))
}

// imapStatus answers the cards page's polling: every configuration's status.
func (u *UI) imapStatus(w http.ResponseWriter, r *http.Request) {
	cs, err := u.allIMAP(r.Context())
	if err != nil {
		u.log.Error("listing imap configurations", "err", err)
		writeJSON(w, http.StatusInternalServerError, map[string]any{"error": map[string]string{"code": "internal"}})
		return
	}
	type item struct {
		Name string `json:"name"`
		statusView
	}
	out := struct {
		Items []item `json:"items"`
	}{Items: []item{}}
	for _, c := range cs {
		out.Items = append(out.Items, item{Name: c.Name, statusView: u.statusOf(c)})
	}
	writeJSON(w, http.StatusOK, out)
}
