package configfile

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"
	"strings"
	"time"

	"mailtrigger/internal/api"
	"mailtrigger/internal/flow"
	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/valid"
)

// Op is what apply does to an object.
type Op string

// The operations of a plan.
const (
	Create    Op = "create"
	Change    Op = "change"
	Delete    Op = "delete"
	Unchanged Op = "unchanged"
)

// Step is one object of a plan.
type Step struct {
	Op   Op
	Kind string // "imap" or "flow"
	// Name is the object's name in the file (on the service for Delete);
	// Target its name on the service (Change and Delete).
	Name, Target string
	// Fields are the fields that change (Change).
	Fields []string
	// Body is the API's request body (Create and Change).
	Body []byte
}

func (s Step) String() string {
	out := fmt.Sprintf("%-10s %s %s", s.Op, s.Kind, s.Name)
	if s.Op == Change && !strings.EqualFold(s.Name, s.Target) {
		out += " (was " + s.Target + ")"
	}
	if len(s.Fields) > 0 {
		out += ": " + strings.Join(s.Fields, ", ")
	}
	return out
}

// Plan is what apply does, in the order it does it: IMAP configurations
// created and changed, then flows created and changed, then flows deleted,
// then IMAP configurations deleted (a configuration cannot be deleted while
// a flow names it). Unchanged objects are listed too.
type Plan struct {
	Steps []Step
}

// Count returns how many steps do op.
func (p Plan) Count(op Op) int {
	n := 0
	for _, s := range p.Steps {
		if s.Op == op {
			n++
		}
	}
	return n
}

// Summary is the plan's last line: "Plan: 1 to create, 0 to change, 0 to
// delete, 2 unchanged."
func (p Plan) Summary() string {
	return fmt.Sprintf("Plan: %d to create, %d to change, %d to delete, %d unchanged.", p.Count(Create), p.Count(Change), p.Count(Delete), p.Count(Unchanged))
}

// Print writes every step and the summary.
func (p Plan) Print(w io.Writer) {
	for _, s := range p.Steps {
		fmt.Fprintln(w, s)
	}
	fmt.Fprintln(w, p.Summary())
}

// Current is what a service has.
type Current struct {
	IMAP  []imapconf.View
	Flows []api.FlowView
}

// stored stands for a stored secret, which the API never shows: checking
// an object against it is checking it against the stored one, as the API
// does on edit (a secret left out is kept; it is required again when the
// destination changes).
const stored = "(stored)"

var storedWebhookSecret = "whsec_" + base64.StdEncoding.EncodeToString(make([]byte, 32))

// Options are apply's choices.
type Options struct {
	// Prune deletes the objects of the service the file does not name.
	Prune bool
	// SendSecrets changes every object whose secrets (or header values)
	// the file gives, even when nothing else differs: how a secret is
	// rotated, since the API never shows one to compare.
	SendSecrets bool
}

// MakePlan compares what d asks for with cur and checks every object as the
// API will (imapconf.Build and flow.Build over the stored object, and that
// each flow's IMAP configuration exists in the file, or on the service
// unless opt.Prune). Secrets and header values are write-only: they are
// compared by presence only, and sent with every object that is created or
// changed. Objects Load found bad are left out of the plan; problems lists
// those MakePlan finds.
func MakePlan(d *Desired, cur Current, opt Options) (Plan, Problems) {
	prune, sendSecrets := opt.Prune, opt.SendSecrets
	var ps Problems
	var creates, deletes []Step
	// fail reports what Build found, but for fields already reported.
	fail := func(o *Object, err error) {
		var ve valid.Errors
		if errors.As(err, &ve) {
			for _, k := range slices.Sorted(maps.Keys(ve)) {
				if !o.reported[k] {
					ps = append(ps, Problem{Object: o.Label(), Field: k, Message: ve[k]})
				}
			}
			return
		}
		ps = append(ps, Problem{Object: o.Label(), Message: err.Error()})
	}

	inFile := map[string]bool{}
	for _, o := range d.IMAP {
		if o.Name != "" {
			inFile[strings.ToLower(o.Name)] = true
		}
	}
	onService := map[string]imapconf.View{}
	for _, v := range cur.IMAP {
		onService[strings.ToLower(v.Name)] = v
	}
	for _, o := range d.IMAP {
		if o.undecodable {
			continue
		}
		v, exists := onService[strings.ToLower(o.Name)]
		var prev *imapconf.Config
		if exists {
			prev = configOf(v)
		}
		c, err := imapconf.Build(o.IMAP, prev)
		if err != nil {
			fail(o, err)
			continue
		}
		if !o.bad {
			st := step(o, exists, v.Name, imapCompared(c.View()), imapCompared(v))
			if sendSecrets && st.Op != Create {
				st = withSecrets(st, o, secretFields(o.IMAP.Password, "password", o.IMAP.ClientSecret, "clientSecret"))
			}
			creates = append(creates, st)
		}
	}

	flowsOnService := map[string]api.FlowView{}
	for _, v := range cur.Flows {
		flowsOnService[strings.ToLower(v.Name)] = v
	}
	for _, o := range d.Flows {
		if o.undecodable {
			continue
		}
		v, exists := flowsOnService[strings.ToLower(o.Name)]
		var prev *flow.Flow
		if exists {
			prev = flowOf(v)
		}
		f, generated, err := flow.Build(o.Flow, prev, func() string { return storedWebhookSecret })
		var ve valid.Errors
		if err != nil && !errors.As(err, &ve) {
			fail(o, err)
			continue
		}
		if name := f.Start.EmailTrigger.IMAP; name != "" && ve["start.emailTrigger.imap"] == "" {
			_, there := onService[strings.ToLower(name)]
			switch {
			case inFile[strings.ToLower(name)]:
			case there && prune:
				if ve == nil {
					ve = valid.Errors{}
				}
				ve.Add("start.emailTrigger.imap", "the IMAP configuration "+name+" is not in the file, and --prune deletes it")
			case !there:
				if ve == nil {
					ve = valid.Errors{}
				}
				ve.Add("start.emailTrigger.imap", "no IMAP configuration named "+name+" in the file or on the service")
			}
		}
		if len(ve) > 0 {
			fail(o, ve)
			continue
		}
		if !o.bad {
			st := step(o, exists, v.Name, flowCompared(flowViewOf(f)), flowCompared(v))
			if st.Op == Change {
				// A stored secret is not kept for a url moved to another
				// origin: the service generates a new one (printed once by
				// apply), which the plan says rather than lets pass as a
				// url change.
				for _, i := range generated {
					if i < len(prev.Activities) && prev.Activities[i].Secret != "" {
						st.Fields = append(st.Fields, fmt.Sprintf("activities[%d].secret (generated: the url's scheme, host or port changed)", i))
					}
				}
			}
			if sendSecrets && st.Op != Create {
				var fields []string
				for i, a := range o.Flow.Activities {
					p := fmt.Sprintf("activities[%d].", i)
					fields = append(fields, secretFields(a.Secret, p+"secret")...)
					for _, h := range slices.Sorted(maps.Keys(a.Headers)) {
						if a.Headers[h] != "" {
							fields = append(fields, p+"headers."+h)
						}
					}
				}
				st = withSecrets(st, o, fields)
			}
			creates = append(creates, st)
		}
	}

	if prune {
		inFlows := map[string]bool{}
		for _, o := range d.Flows {
			inFlows[strings.ToLower(o.Name)] = true
		}
		for _, v := range cur.Flows {
			if !inFlows[strings.ToLower(v.Name)] {
				deletes = append(deletes, Step{Op: Delete, Kind: "flow", Name: v.Name, Target: v.Name})
			}
		}
		for _, v := range cur.IMAP {
			if !inFile[strings.ToLower(v.Name)] {
				deletes = append(deletes, Step{Op: Delete, Kind: "imap", Name: v.Name, Target: v.Name})
			}
		}
	}
	return Plan{Steps: append(creates, deletes...)}, ps
}

// secretFields returns the names of the secrets given (pairs of value and
// field name).
func secretFields(pairs ...any) []string {
	var out []string
	for i := 0; i+1 < len(pairs); i += 2 {
		if v, _ := pairs[i].(*string); v != nil && *v != "" {
			out = append(out, pairs[i+1].(string))
		}
	}
	return out
}

// withSecrets makes s a change that sends the secrets in fields.
func withSecrets(s Step, o *Object, fields []string) Step {
	if len(fields) == 0 {
		return s
	}
	for _, f := range fields {
		s.Fields = append(s.Fields, f+" (sent)")
	}
	s.Op, s.Body = Change, o.Body
	return s
}

// step compares want with have (the JSON forms of what the file builds and
// what the service has) and returns the object's step.
func step(o *Object, exists bool, target string, want, have map[string]any) Step {
	s := Step{Kind: o.Kind, Name: o.Name, Target: target, Body: o.Body}
	switch {
	case !exists:
		s.Op = Create
	default:
		s.Fields = diff("", want, have)
		s.Op = Change
		if len(s.Fields) == 0 {
			s.Op, s.Body = Unchanged, nil
		}
	}
	return s
}

// configOf is the stored configuration v shows, with a stand-in for each
// secret it holds.
func configOf(v imapconf.View) *imapconf.Config {
	c := &imapconf.Config{Name: v.Name, ServerType: v.ServerType, Type: v.Type, Description: v.Description, Enabled: v.Enabled,
		Host: v.Host, Port: v.Port, Username: v.Username, TenantID: v.TenantID, ClientID: v.ClientID, Folder: v.Folder, TLS: v.TLS,
		CACert: v.CACert, AfterProcessing: v.AfterProcessing, MoveTo: v.MoveTo, PollInterval: v.PollInterval, Backlog: v.Backlog,
		GraphURL: v.GraphURL, AuthorityURL: v.AuthorityURL, Auth: v.Auth, TokenURL: v.TokenURL, Scope: v.Scope, Provider: v.Provider,
		AuthURL: v.AuthURL}
	if v.HasPassword {
		c.Password = stored
	}
	if v.HasClientSecret {
		c.ClientSecret = stored
	}
	return c
}

// flowOf is the stored flow v shows, with stand-ins for its secrets and
// header values.
func flowOf(v api.FlowView) *flow.Flow {
	f := &flow.Flow{Name: v.Name, Description: v.Description, Enabled: v.Enabled, Start: v.Start}
	for _, a := range v.Activities {
		fa := flow.Activity{Type: a.Type, URL: a.URL, Timeout: a.Timeout, IncludeAttachments: a.IncludeAttachments,
			MaxConcurrency: a.MaxConcurrency, RatePerSecond: a.RatePerSecond}
		if a.HasSecret {
			fa.Secret = storedWebhookSecret
		}
		if len(a.Headers) > 0 {
			fa.Headers = map[string]string{}
			for k := range a.Headers {
				fa.Headers[k] = stored
			}
		}
		f.Activities = append(f.Activities, fa)
	}
	return f
}

// flowViewOf is f as the API would show it.
func flowViewOf(f flow.Flow) api.FlowView {
	v := api.FlowView{Name: f.Name, Description: f.Description, Enabled: f.Enabled, Start: f.Start, Activities: []api.ActivityView{}}
	for _, a := range f.Activities {
		v.Activities = append(v.Activities, api.ActivityView{Type: a.Type, URL: a.URL, Headers: a.HeaderNames(), Timeout: a.Timeout,
			IncludeAttachments: a.IncludeAttachments, MaxConcurrency: a.MaxConcurrency, RatePerSecond: a.RatePerSecond, HasSecret: a.Secret != ""})
	}
	return v
}

// imapCompared is the part of v that apply makes match: not its times,
// state or sign-in.
func imapCompared(v imapconf.View) map[string]any {
	v.CreatedAt, v.UpdatedAt, v.Status, v.SignIn = time.Time{}, time.Time{}, nil, nil
	m := jsonMap(v)
	delete(m, "createdAt")
	delete(m, "updatedAt")
	return m
}

// flowCompared is the part of v that apply makes match: not its times, and
// its trigger's IMAP name in lower case (names are case-insensitive).
func flowCompared(v api.FlowView) map[string]any {
	v.Start.EmailTrigger.IMAP = strings.ToLower(v.Start.EmailTrigger.IMAP)
	for i := range v.Activities {
		v.Activities[i].Secret = ""
	}
	m := jsonMap(v)
	delete(m, "createdAt")
	delete(m, "updatedAt")
	return m
}

func jsonMap(v any) map[string]any {
	data, _ := json.Marshal(v)
	var m map[string]any
	_ = json.Unmarshal(data, &m)
	return m
}

// diff names the fields in which a and b differ, as the API names them
// (host, start.emailTrigger.subject, activities[0].url).
func diff(path string, a, b any) []string {
	am, aok := a.(map[string]any)
	bm, bok := b.(map[string]any)
	if aok && bok {
		var out []string
		keys := slices.Sorted(maps.Keys(am))
		for k := range bm {
			if _, ok := am[k]; !ok {
				keys = append(keys, k)
			}
		}
		for _, k := range keys {
			p := k
			if path != "" {
				p = path + "." + k
			}
			out = append(out, diff(p, am[k], bm[k])...)
		}
		return out
	}
	as, aok := a.([]any)
	bs, bok := b.([]any)
	if aok && bok && len(as) == len(bs) {
		var out []string
		for i := range as {
			out = append(out, diff(fmt.Sprintf("%s[%d]", path, i), as[i], bs[i])...)
		}
		return out
	}
	if reflect.DeepEqual(a, b) {
		return nil
	}
	return []string{path}
}
