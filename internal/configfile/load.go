package configfile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"go.yaml.in/yaml/v3"

	"mailtrigger/internal/configschema"
	"mailtrigger/internal/flow"
	"mailtrigger/internal/imapconf"
)

// Problem is one thing wrong with a file: which object (such as
// `imap[0] support`, or `file`), which field (as the API names it, such
// as `port` or `activities[0].url`; "" for the object as a whole) and what.
type Problem struct {
	Object, Field, Message string
}

func (p Problem) String() string {
	if p.Field == "" {
		return p.Object + ": " + p.Message
	}
	return p.Object + ": " + p.Field + ": " + p.Message
}

// Problems are every problem of a file, in the file's order.
type Problems []Problem

// Objects is how many objects have a problem.
func (ps Problems) Objects() int {
	seen := map[string]bool{}
	for _, p := range ps {
		seen[p.Object] = true
	}
	return len(seen)
}

// Sources are where placeholders are resolved.
type Sources struct {
	LookupEnv func(string) (string, bool)
	ReadFile  func(string) ([]byte, error)
}

// Object is one IMAP configuration or flow of a file, placeholders resolved.
type Object struct {
	Kind  string // "imap" or "flow"
	Index int    // its place in its list
	Name  string
	// Body is the object as JSON: the body of the API call that creates
	// or changes it.
	Body []byte
	IMAP imapconf.Input // when Kind is imap
	Flow flow.Input     // when Kind is flow
	// bad: the object has a problem already; it is not planned.
	bad bool
	// undecodable: it is not of the API's shape, so it cannot be built.
	undecodable bool
	// reported are the fields with a problem already (Build's message
	// for them is left out).
	reported map[string]bool
}

func (o *Object) report(ps *Problems, field, msg string) {
	*ps = append(*ps, Problem{Object: o.Label(), Field: field, Message: msg})
	o.bad = true
	if o.reported == nil {
		o.reported = map[string]bool{}
	}
	o.reported[field] = true
}

// Label names the object in plans and problems: `imap support`, or
// `imap[3]` when it has no usable name.
func (o *Object) Label() string {
	if o.Name == "" {
		return fmt.Sprintf("%s[%d]", o.Kind, o.Index)
	}
	return o.Kind + " " + o.Name
}

// Desired is what a file asks for.
type Desired struct {
	IMAP  []*Object
	Flows []*Object
}

// Load reads a file: YAML (or JSON), its placeholders resolved from src,
// checked against the JSON Schema, every object decoded as the API would.
// Problems lists all that is wrong, object by object; err is a file that is
// not YAML at all.
func Load(data []byte, src Sources) (*Desired, Problems, error) {
	var doc any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, nil, fmt.Errorf("not a YAML document: %w", err)
	}
	top, ok := doc.(map[string]any)
	if !ok {
		return nil, Problems{{Object: "file", Message: "must be a mapping with apiVersion, kind, imap and flows"}}, nil
	}
	var ps Problems
	d := &Desired{}
	lists := map[string]*[]*Object{"imap": &d.IMAP, "flows": &d.Flows}
	objects := map[string][]any{}
	for _, key := range []string{"imap", "flows"} {
		list, _ := top[key].([]any)
		objects[key] = list
		kind := strings.TrimSuffix(key, "s")
		for i, v := range list {
			o := &Object{Kind: kind, Index: i}
			if m, ok := v.(map[string]any); ok {
				if n, ok := m["name"].(string); ok && n != "" && !strings.ContainsAny(n, " \t\r\n") {
					o.Name = n
				}
				resolve(m, "", func(field, msg string) { o.report(&ps, field, msg) }, src)
			}
			*lists[key] = append(*lists[key], o)
		}
	}
	// The schema, on the file with its placeholders resolved.
	for _, sp := range schemaProblems(doc) {
		if len(sp.path) >= 2 && (sp.path[0] == "imap" || sp.path[0] == "flows") {
			if i, err := strconv.Atoi(sp.path[1]); err == nil && i < len(*lists[sp.path[0]]) {
				o := (*lists[sp.path[0]])[i]
				o.report(&ps, fieldName(append(sp.path[2:len(sp.path):len(sp.path)], sp.sub...)), sp.msg)
				continue
			}
		}
		ps = append(ps, Problem{Object: "file", Field: fieldName(append(sp.path, sp.sub...)), Message: sp.msg})
	}
	// Each object as the API decodes it.
	for _, key := range []string{"imap", "flows"} {
		for i, o := range *lists[key] {
			body, err := json.Marshal(objects[key][i])
			if err != nil {
				o.report(&ps, "", "cannot be written as JSON: "+err.Error())
				o.undecodable = true
				continue
			}
			o.Body = body
			var target any = &o.IMAP
			if o.Kind == "flow" {
				target = &o.Flow
			}
			// Unknown fields are the schema's to report; a value of the
			// wrong type stops the object here.
			if err := json.Unmarshal(body, target); err != nil {
				if !o.bad {
					o.report(&ps, "", "does not have the API's shape: "+err.Error())
				}
				o.undecodable = true
			}
		}
	}
	// Names are unique, case-insensitively, within a kind.
	for _, list := range [][]*Object{d.IMAP, d.Flows} {
		seen := map[string]*Object{}
		for _, o := range list {
			if o.Name == "" {
				continue
			}
			k := strings.ToLower(o.Name)
			if first, ok := seen[k]; ok {
				o.report(&ps, "name", fmt.Sprintf("named like %s[%d] (names are unique, case-insensitively)", first.Kind, first.Index))
				continue
			}
			seen[k] = o
		}
	}
	return d, SortProblems(ps, d), nil
}

// SortProblems orders ps by the file's order of their objects.
func SortProblems(ps Problems, d *Desired) Problems {
	order := map[string]int{"file": -1}
	for i, o := range append(slices.Clone(d.IMAP), d.Flows...) {
		if _, ok := order[o.Label()]; !ok {
			order[o.Label()] = i
		}
	}
	slices.SortStableFunc(ps, func(a, b Problem) int { return order[a.Object] - order[b.Object] })
	return ps
}

var placeholderRE = regexp.MustCompile(`^\$\{(env|file):([^}]*)\}$`)

// resolve replaces, in the strings of v, every placeholder (a whole value
// ${env:NAME} or ${file:/path}) by its value, and reports those it cannot
// resolve by field. path is v's field name.
func resolve(v any, path string, fail func(field, msg string), src Sources) any {
	switch x := v.(type) {
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(x)) {
			p := k
			if path != "" {
				p = path + "." + k
			}
			x[k] = resolve(x[k], p, fail, src)
		}
	case []any:
		for i := range x {
			x[i] = resolve(x[i], fmt.Sprintf("%s[%d]", path, i), fail, src)
		}
	case string:
		m := placeholderRE.FindStringSubmatch(x)
		if m == nil {
			return x
		}
		switch m[1] {
		case "env":
			if m[2] == "" {
				fail(path, x+": names no environment variable")
				return x
			}
			val, ok := src.LookupEnv(m[2])
			if !ok || val == "" {
				fail(path, x+": the environment variable "+m[2]+" is not set")
				return x
			}
			return val
		case "file":
			if m[2] == "" {
				fail(path, x+": names no file")
				return x
			}
			data, err := src.ReadFile(m[2])
			if err != nil {
				fail(path, x+": "+err.Error())
				return x
			}
			s := strings.TrimSuffix(strings.TrimSuffix(string(data), "\n"), "\r")
			if s == "" {
				fail(path, x+": the file is empty")
				return x
			}
			return s
		}
	}
	return v
}

// fieldName is the API's name of the field at path (in an object):
// activities[0].url, start.emailTrigger.imap.
func fieldName(path []string) string {
	var b strings.Builder
	for _, p := range path {
		if _, err := strconv.Atoi(p); err == nil {
			b.WriteString("[" + p + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(p)
	}
	return b.String()
}

type schemaProblem struct {
	path []string // where in the document
	sub  []string // the property of path it is about (unknown, missing)
	msg  string
}

var (
	schemaOnce sync.Once
	schema     *jsonschema.Schema
	schemaErr  error
)

// Schema returns the compiled JSON Schema of the file.
func Schema() (*jsonschema.Schema, error) {
	schemaOnce.Do(func() {
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(configschema.JSON))
		if err != nil {
			schemaErr = err
			return
		}
		c := jsonschema.NewCompiler()
		if err := c.AddResource("config.schema.json", doc); err != nil {
			schemaErr = err
			return
		}
		schema, schemaErr = c.Compile("config.schema.json")
	})
	return schema, schemaErr
}

// Validate checks a document (as decoded from YAML or JSON) against the
// schema; nil when it conforms.
func Validate(doc any) error {
	sch, err := Schema()
	if err != nil {
		return fmt.Errorf("compiling the configuration schema: %w", err)
	}
	data, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return err
	}
	return sch.Validate(v)
}

// schemaProblems lists what the schema finds wrong in doc, deepest first
// by location.
func schemaProblems(doc any) []schemaProblem {
	err := Validate(doc)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return []schemaProblem{{msg: err.Error()}}
	}
	var out []schemaProblem
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) > 0 {
			for _, c := range e.Causes {
				walk(c)
			}
			return
		}
		switch k := e.ErrorKind.(type) {
		case *kind.AdditionalProperties:
			for _, p := range k.Properties {
				out = append(out, schemaProblem{path: e.InstanceLocation, sub: []string{p}, msg: "unknown field"})
			}
		case *kind.Required:
			for _, p := range k.Missing {
				out = append(out, schemaProblem{path: e.InstanceLocation, sub: []string{p}, msg: "required"})
			}
		default:
			out = append(out, schemaProblem{path: e.InstanceLocation, msg: schemaMessage(e)})
		}
	}
	walk(ve)
	return out
}

func schemaMessage(e *jsonschema.ValidationError) string {
	var bo = e.BasicOutput()
	if bo != nil && bo.Error != nil {
		return bo.Error.String()
	}
	return e.Error()
}
