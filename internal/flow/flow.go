// Package flow is the process flow entity: its Start activity's Email
// Trigger (which mailbox, which subject, how it matches), its activities
// (webhooks today), their rules, and the matching of a message against a
// trigger. It knows nothing of HTTP or SQL.
package flow

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"mailtrigger/internal/store"
	"mailtrigger/internal/valid"
)

// Match kinds.
const (
	MatchExact    = "exact"
	MatchContains = "contains"
	MatchPrefix   = "prefix"
	MatchRegex    = "regex"
)

// Limits.
const (
	MaxDescriptionLen = 1000
	MaxSubjectLen     = 1000
	MaxActivities     = 10
	MaxHeaders        = 20
	DefaultTimeout    = 30 * time.Second
	MaxTimeout        = 2 * time.Minute
	// MaxConcurrency and MaxRatePerSecond bound an activity's
	// maxConcurrency and ratePerSecond.
	MaxConcurrency   = 1000
	MaxRatePerSecond = 10000
)

// Flow is a process flow. Secrets of its activities are held apart (see
// Activity.Secret) and never part of the stored definition.
type Flow struct {
	Name        string     `json:"name"`
	Description string     `json:"description"`
	Enabled     bool       `json:"enabled"`
	Start       Start      `json:"start"`
	Activities  []Activity `json:"activities"`
}

// Start is the Start activity.
type Start struct {
	EmailTrigger Trigger `json:"emailTrigger"`
}

// Trigger is the Email Trigger: the flow starts when a message arriving in
// IMAP has a subject matching Subject.
type Trigger struct {
	IMAP                string `json:"imap"`
	Subject             string `json:"subject"`
	Match               string `json:"match"`
	IgnoreReplyPrefixes bool   `json:"ignoreReplyPrefixes"`
	From                string `json:"from,omitempty"`
}

// Activity is a step of the flow. Today there is one kind: a webhook.
type Activity struct {
	Type               string            `json:"type"`
	URL                string            `json:"url"`
	Headers            map[string]string `json:"headers,omitempty"`
	Timeout            string            `json:"timeout,omitempty"`
	IncludeAttachments bool              `json:"includeAttachments"`
	// MaxConcurrency, when set, is the most requests in flight to the
	// activity's endpoint (scheme://host:port) from one process, below the
	// adaptive limit's ceiling; RatePerSecond, when set, the most requests
	// per second to it. Package run reads them from the stored definition.
	MaxConcurrency int     `json:"maxConcurrency,omitempty"`
	RatePerSecond  float64 `json:"ratePerSecond,omitempty"`
	// Secret signs the deliveries (whsec_…). It is kept out of the stored
	// definition and out of every response but the one that generated it.
	Secret string `json:"-"`
}

// TimeoutDuration is the activity's timeout, DefaultTimeout when unset.
func (a Activity) TimeoutDuration() time.Duration {
	if d, err := time.ParseDuration(a.Timeout); err == nil && d > 0 {
		return d
	}
	return DefaultTimeout
}

// Definition is the stored JSON form of f (without secrets).
func (f Flow) Definition() string {
	data, _ := json.Marshal(f)
	return string(data)
}

// Parse reads a stored definition, checks it by the rules Build applies to
// what the definition drives (the trigger and the activities; the name and
// enabled are the record's columns, secrets and header values are held
// apart), and attaches the secrets. It is the one reader of definitions:
// ingest matches with it and the worker delivers with it, so that what one
// accepts the other does too.
//
// A definition that is not JSON of the right shape is an error. One that
// breaks a rule (a timeout outside 1 s – 2 min, a number of seconds for a
// timeout, an unknown activity type, …) is a *DefinitionError naming every
// wrong field, returned with the flow as read so that it can still be shown
// and edited. A header named like one mailtrigger sets (Webhook-*,
// Content-Type, …) is not an error here: the worker never sends it.
func Parse(definition string, secrets []string) (Flow, error) {
	f, _, err := parse(definition, secrets)
	return f, err
}

// parse is Parse, also returning the trigger's regular expression compiled
// when it is one, for Matchers (compiled once, not twice).
func parse(definition string, secrets []string) (Flow, *regexp.Regexp, error) {
	// The stored shape of Flow, but a timeout may be anything: an older
	// worker took a number as seconds, and it must be refused with a
	// message, not a JSON type error.
	var d struct {
		Flow
		Activities []struct {
			Activity
			Timeout json.RawMessage `json:"timeout"`
		} `json:"activities"`
	}
	if err := json.Unmarshal([]byte(definition), &d); err != nil {
		return Flow{}, nil, fmt.Errorf("reading flow definition: %w", err)
	}
	f, e := d.Flow, valid.Errors{}
	f.Activities = make([]Activity, len(d.Activities))
	for i, sa := range d.Activities {
		a := sa.Activity
		if len(sa.Timeout) > 0 && json.Unmarshal(sa.Timeout, &a.Timeout) != nil {
			a.Timeout = string(sa.Timeout)
			msg := timeoutMessage
			if _, err := strconv.ParseFloat(a.Timeout, 64); err == nil {
				msg += ", in quotes; a number (" + a.Timeout + ") is not one"
			}
			e.Add(fmt.Sprintf("activities[%d].timeout", i), msg)
		}
		if i < len(secrets) {
			a.Secret = secrets[i]
		}
		f.Activities[i] = a
	}
	if len(d.Activities) == 0 {
		f.Activities = nil
	}
	if f.Start.EmailTrigger.Match == "" {
		f.Start.EmailTrigger.Match = MatchExact
	}
	re := checkTrigger(f.Start.EmailTrigger, e)
	checkActivityCount(len(f.Activities), e)
	for i, a := range f.Activities {
		if i >= MaxActivities {
			break
		}
		p := fmt.Sprintf("activities[%d].", i)
		checkActivity(p, a, a.MaxConcurrency != 0, a.RatePerSecond != 0, e)
		for k := range a.Headers {
			if !tokenRE.MatchString(k) {
				e.Add(p+"headers."+k, "not a valid header name")
			}
		}
	}
	if len(e) > 0 {
		return f, re, &DefinitionError{Fields: e}
	}
	return f, re, nil
}

// DefinitionError is a stored definition that breaks a rule of Build's:
// Fields names every wrong field as Build would. It is not a valid.Errors:
// the definition was not input, and a caller must not answer it as one.
type DefinitionError struct {
	Fields valid.Errors
}

func (e *DefinitionError) Error() string {
	return "the flow definition breaks the flow rules (edit and save the flow to fix it): " +
		strings.TrimPrefix(e.Fields.Error(), "invalid input: ")
}

// Open returns the flow of a stored record with its activities' secrets and
// header values attached. Its error is Parse's: with a *DefinitionError, the
// flow as read, with its secrets and header values, comes too.
func Open(fr store.FlowRecord) (Flow, error) {
	f, err := Parse(fr.Definition, fr.Secrets)
	var de *DefinitionError
	if err != nil && !errors.As(err, &de) {
		return f, err
	}
	for i := range f.Activities {
		if i >= len(fr.Headers) {
			break
		}
		for k, v := range fr.Headers[i] {
			if _, ok := f.Activities[i].Headers[k]; ok {
				f.Activities[i].Headers[k] = v
			}
		}
	}
	return f, err
}

// Read is Open for listing, showing and editing: a definition that breaks a
// rule (one stored before the rule, say) comes back as read with no error,
// so that it can still be seen and fixed; the worker refuses to deliver it
// and says why. Only a definition that cannot be read at all is an error.
func Read(fr store.FlowRecord) (Flow, error) {
	f, err := Open(fr)
	if de := (*DefinitionError)(nil); errors.As(err, &de) {
		return f, nil
	}
	return f, err
}

// HeaderNames returns the names of a's headers with empty values: what may be
// shown of them. Header values are write-only, like secrets.
func (a Activity) HeaderNames() map[string]string {
	if len(a.Headers) == 0 {
		return nil
	}
	out := make(map[string]string, len(a.Headers))
	for k := range a.Headers {
		out[k] = ""
	}
	return out
}

// Secrets returns the activities' secrets, in order.
func (f Flow) Secrets() []string {
	out := make([]string, len(f.Activities))
	for i, a := range f.Activities {
		out[i] = a.Secret
	}
	return out
}

// Input is the JSON body of create and edit. Pointers tell absent from empty.
type Input struct {
	Name        *string         `json:"name"`
	Description *string         `json:"description" valid:"multiline"`
	Enabled     *bool           `json:"enabled"`
	Start       *StartInput     `json:"start"`
	Activities  []ActivityInput `json:"activities"`

	// Read-only, ignored.
	CreatedAt *time.Time `json:"createdAt,omitempty"`
	UpdatedAt *time.Time `json:"updatedAt,omitempty"`
}

// StartInput is the Start activity in an Input.
type StartInput struct {
	EmailTrigger *TriggerInput `json:"emailTrigger"`
}

// TriggerInput is the Email Trigger in an Input.
type TriggerInput struct {
	IMAP                *string `json:"imap"`
	Subject             *string `json:"subject"`
	Match               *string `json:"match"`
	IgnoreReplyPrefixes *bool   `json:"ignoreReplyPrefixes"`
	From                *string `json:"from"`
}

// ActivityInput is an activity in an Input.
type ActivityInput struct {
	Type               *string           `json:"type"`
	URL                *string           `json:"url"`
	Secret             *string           `json:"secret"`
	Headers            map[string]string `json:"headers"`
	Timeout            *string           `json:"timeout"`
	IncludeAttachments *bool             `json:"includeAttachments"`
	MaxConcurrency     *int              `json:"maxConcurrency"`
	RatePerSecond      *float64          `json:"ratePerSecond"`
	HasSecret          *bool             `json:"hasSecret,omitempty"` // read-only, ignored
}

// Build checks in against every rule and returns the flow it describes.
// prev is the stored flow when editing: an activity whose secret is omitted
// keeps the secret of prev's activity at the same position while its URL
// keeps that activity's scheme, host and port (Origin), as header values
// do. newSecret makes a secret for an activity that has none, or whose URL
// moved to another origin; generated lists the positions it filled. The
// error is a valid.Errors naming every wrong field.
func Build(in Input, prev *Flow, newSecret func() string) (f Flow, generated []int, err error) {
	// NUL and other control characters in any field, first (see valid.Strings).
	e := valid.Strings(in)
	f.Name = deref(in.Name, "")
	if m := valid.Name(f.Name); m != "" {
		e.Add("name", m)
	}
	f.Description = deref(in.Description, "")
	if m := valid.Text(f.Description, MaxDescriptionLen); m != "" {
		e.Add("description", m)
	}
	f.Enabled = in.Enabled == nil || *in.Enabled

	if in.Start == nil || in.Start.EmailTrigger == nil {
		e.Add("start.emailTrigger", "required: the Email Trigger names an IMAP configuration and a subject")
	} else {
		ti := in.Start.EmailTrigger
		f.Start.EmailTrigger = Trigger{IMAP: deref(ti.IMAP, ""), Subject: deref(ti.Subject, ""), Match: deref(ti.Match, MatchExact),
			IgnoreReplyPrefixes: ti.IgnoreReplyPrefixes != nil && *ti.IgnoreReplyPrefixes, From: strings.TrimSpace(deref(ti.From, ""))}
		checkTrigger(f.Start.EmailTrigger, e)
	}

	checkActivityCount(len(in.Activities), e)
	for i, ai := range in.Activities {
		if i >= MaxActivities {
			break
		}
		p := fmt.Sprintf("activities[%d].", i)
		a := Activity{Type: deref(ai.Type, "webhook"), URL: deref(ai.URL, ""), Headers: ai.Headers,
			Timeout: deref(ai.Timeout, ""), IncludeAttachments: ai.IncludeAttachments != nil && *ai.IncludeAttachments}
		if ai.MaxConcurrency != nil {
			a.MaxConcurrency = *ai.MaxConcurrency
		}
		if ai.RatePerSecond != nil {
			a.RatePerSecond = *ai.RatePerSecond
		}
		checkActivity(p, a, ai.MaxConcurrency != nil, ai.RatePerSecond != nil, e)
		var pa *Activity
		if prev != nil && i < len(prev.Activities) {
			pa = &prev.Activities[i]
		}
		a.Headers = buildHeaders(ai.Headers, a.URL, pa, p, e)
		switch {
		case ai.Secret != nil && *ai.Secret != "":
			a.Secret = *ai.Secret
			if m := secret(a.Secret); m != "" {
				e.Add(p+"secret", m)
			}
		case pa != nil && pa.Secret != "" && Origin(pa.URL) == Origin(a.URL):
			a.Secret = pa.Secret
		default:
			// A new activity, or one whose URL moved to another scheme,
			// host or port: a new destination is a new receiver, so it
			// gets a new secret, shown once, as a new activity does. The
			// stored one never signs for another origin (else whoever
			// may edit the flow could point it at their host and collect
			// payloads signed with the old receiver's key). Unlike a
			// header value, which only its receiver can issue and so
			// must be given again, a secret can be generated: refusing
			// the edit would only make the caller invent one.
			a.Secret = newSecret()
			generated = append(generated, i)
		}
		f.Activities = append(f.Activities, a)
	}
	return f, generated, e.Err()
}

// timeoutMessage is the rule on an activity's timeout.
const timeoutMessage = "must be a duration from 1s to 2m, such as 30s"

// checkTrigger adds to e what is wrong with t: the rules on an Email Trigger,
// for Build and Parse alike. It returns the subject's regular expression
// compiled when t matches by one and it compiles.
func checkTrigger(t Trigger, e valid.Errors) (re *regexp.Regexp) {
	const tp = "start.emailTrigger."
	if t.IMAP == "" {
		e.Add(tp+"imap", "required")
	}
	switch {
	case strings.TrimSpace(t.Subject) == "":
		e.Add(tp+"subject", "required")
	case valid.Text(t.Subject, MaxSubjectLen) != "":
		e.Add(tp+"subject", valid.Text(t.Subject, MaxSubjectLen))
	case t.Match == MatchRegex:
		var err error
		if re, err = regexp.Compile(t.Subject); err != nil {
			e.Add(tp+"subject", "not a valid regular expression (RE2 syntax): "+strings.TrimPrefix(err.Error(), "error parsing regexp: "))
		}
	}
	if m := valid.OneOf(t.Match, MatchExact, MatchContains, MatchPrefix, MatchRegex); m != "" {
		e.Add(tp+"match", m)
	}
	if t.From != "" {
		if strings.HasPrefix(t.From, "@") {
			if m := valid.Domain(t.From[1:]); m != "" {
				e.Add(tp+"from", "must be an e-mail address or @domain")
			}
		} else if m := valid.Email(t.From); m != "" {
			e.Add(tp+"from", "must be an e-mail address or @domain")
		}
	}
	return re
}

// checkActivityCount adds to e what is wrong with a flow of n activities.
func checkActivityCount(n int, e valid.Errors) {
	switch {
	case n == 0:
		e.Add("activities", "at least one activity is required")
	case n > MaxActivities:
		e.Add("activities", fmt.Sprintf("at most %d activities", MaxActivities))
	}
}

// checkActivity adds to e what is wrong with a (its fields prefixed by p),
// for Build and Parse alike; hasMax and hasRate say whether a sets its
// maxConcurrency and ratePerSecond. Its headers are checked apart: Build
// holds their values, a stored definition only their names.
func checkActivity(p string, a Activity, hasMax, hasRate bool, e valid.Errors) {
	if a.Type != "webhook" {
		e.Add(p+"type", "must be webhook")
	}
	if m := webhookURL(a.URL); m != "" {
		e.Add(p+"url", m)
	}
	if a.Timeout != "" {
		d, err := time.ParseDuration(a.Timeout)
		if err != nil || d < time.Second || d > MaxTimeout {
			e.Add(p+"timeout", timeoutMessage)
		}
	}
	if hasMax && (a.MaxConcurrency < 1 || a.MaxConcurrency > MaxConcurrency) {
		e.Add(p+"maxConcurrency", fmt.Sprintf("must be a whole number from 1 to %d, or left out for the adaptive limit", MaxConcurrency))
	}
	if hasRate && !(a.RatePerSecond >= 0.01 && a.RatePerSecond <= MaxRatePerSecond) {
		e.Add(p+"ratePerSecond", fmt.Sprintf("must be a number from 0.01 to %d, or left out for no rate limit", MaxRatePerSecond))
	}
	if len(a.Headers) > MaxHeaders {
		e.Add(p+"headers", fmt.Sprintf("at most %d headers", MaxHeaders))
	}
}

func webhookURL(s string) string {
	if s == "" {
		return "required"
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") || u.Fragment != "" {
		return "must be an absolute http:// or https:// URL"
	}
	if u.User != nil {
		return "must not contain a user name or password; use headers"
	}
	return ""
}

var tokenRE = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

// hopByHop are the headers that describe one connection rather than the
// request (RFC 9110 §7.6.1, and Proxy-Connection): an HTTP client drops or
// replaces them, so an activity cannot set them.
var hopByHop = map[string]bool{"Connection": true, "Keep-Alive": true, "Proxy-Connection": true,
	"Transfer-Encoding": true, "Te": true, "Trailer": true, "Upgrade": true}

// buildHeaders checks an activity's headers and returns them with their
// values. Header values are write-only secrets: an empty value keeps the
// value stored for that header in prev (the stored activity at the same
// place), but only while the activity's URL keeps its scheme, host and port;
// otherwise the value must be given again. p prefixes the fields named in e.
func buildHeaders(in map[string]string, target string, prev *Activity, p string, e valid.Errors) map[string]string {
	if len(in) == 0 {
		return nil
	}
	out := make(map[string]string, len(in))
	for k, v := range in {
		field := p + "headers." + k
		if m := header(k, v); m != "" {
			e.Add(field, m)
			continue
		}
		if v == "" {
			stored, ok := storedHeader(prev, k)
			switch {
			case !ok:
				e.Add(field, "required: a header needs a value")
				continue
			case Origin(prev.URL) != Origin(target):
				e.Add(field, "required again because the url's scheme, host or port changed — a stored header value is only sent to the host it was saved for")
				continue
			}
			v = stored
		}
		out[k] = v
	}
	return out
}

// storedHeader returns the value prev holds for header name k, any case.
func storedHeader(prev *Activity, k string) (string, bool) {
	if prev == nil {
		return "", false
	}
	if v, ok := prev.Headers[k]; ok {
		return v, true
	}
	ck := http.CanonicalHeaderKey(k)
	for pk, v := range prev.Headers {
		if http.CanonicalHeaderKey(pk) == ck {
			return v, true
		}
	}
	return "", false
}

// Origin returns scheme://host:port of a webhook URL, lower case with the
// port made explicit: where the URL's headers go, and what stored header
// values and signing secrets are bound to. "" when it does not parse.
func Origin(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return ""
	}
	scheme, port := strings.ToLower(u.Scheme), u.Port()
	if port == "" {
		port = "80"
		if scheme == "https" {
			port = "443"
		}
	}
	return scheme + "://" + strings.ToLower(u.Hostname()) + ":" + port
}

func header(k, v string) string {
	if !tokenRE.MatchString(k) {
		return "not a valid header name"
	}
	ck := http.CanonicalHeaderKey(k)
	if hopByHop[ck] {
		return "a hop-by-hop header (it describes one connection, not the request); it cannot be sent"
	}
	if strings.HasPrefix(ck, "Webhook-") || ck == "Content-Type" || ck == "Content-Length" || ck == "Host" || ck == "Idempotency-Key" {
		return "set by mailtrigger; cannot be overridden"
	}
	if strings.ContainsAny(v, "\r\n\x00") || len(v) > 4096 {
		return "must be one line of at most 4096 bytes"
	}
	return ""
}

func secret(s string) string {
	rest, ok := strings.CutPrefix(s, "whsec_")
	key, err := base64.StdEncoding.DecodeString(rest)
	if !ok || err != nil || len(key) < 16 {
		return "must have the form whsec_<base64 of at least 16 bytes>; leave it out to have one generated"
	}
	return ""
}

func deref(p *string, def string) string {
	if p == nil {
		return def
	}
	return *p
}

// NewSecret returns a new webhook signing secret: whsec_ and the base64 of
// 32 random bytes (the Standard Webhooks form).
func NewSecret() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return "whsec_" + base64.StdEncoding.EncodeToString(b)
}
