// Package configfile is configuration as code: the YAML document that
// "mailtrigger export" writes (every IMAP configuration and flow of a
// service, secrets as placeholders) and "mailtrigger apply" reads, checks
// and turns into a plan of API calls. It knows the file format, the
// placeholders and the comparison with what a service has; the calls
// themselves are the CLI's.
package configfile

import (
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"mailtrigger/internal/api"
	"mailtrigger/internal/imapconf"
)

// The header of every file.
const (
	APIVersion = "mailtrigger/v1"
	Kind       = "Configuration"
)

// Document is the file. Its JSON Schema is package configschema's.
type Document struct {
	APIVersion string `yaml:"apiVersion" json:"apiVersion"`
	Kind       string `yaml:"kind" json:"kind"`
	IMAP       []IMAP `yaml:"imap" json:"imap"`
	Flows      []Flow `yaml:"flows" json:"flows"`
}

// IMAP is an IMAP configuration in the file: the API's body of create,
// without its read-only fields.
type IMAP struct {
	Name            string `yaml:"name" json:"name"`
	Description     string `yaml:"description,omitempty" json:"description,omitempty"`
	Enabled         bool   `yaml:"enabled" json:"enabled"`
	ServerType      string `yaml:"serverType,omitempty" json:"serverType,omitempty"`
	Type            string `yaml:"type,omitempty" json:"type,omitempty"`
	Host            string `yaml:"host,omitempty" json:"host,omitempty"`
	Port            int    `yaml:"port,omitempty" json:"port,omitempty"`
	Username        string `yaml:"username,omitempty" json:"username,omitempty"`
	Password        string `yaml:"password,omitempty" json:"password,omitempty"`
	TenantID        string `yaml:"tenantId,omitempty" json:"tenantId,omitempty"`
	ClientID        string `yaml:"clientId,omitempty" json:"clientId,omitempty"`
	ClientSecret    string `yaml:"clientSecret,omitempty" json:"clientSecret,omitempty"`
	Folder          string `yaml:"folder,omitempty" json:"folder,omitempty"`
	TLS             string `yaml:"tls,omitempty" json:"tls,omitempty"`
	CACert          string `yaml:"caCert,omitempty" json:"caCert,omitempty"`
	AfterProcessing string `yaml:"afterProcessing,omitempty" json:"afterProcessing,omitempty"`
	MoveTo          string `yaml:"moveTo,omitempty" json:"moveTo,omitempty"`
	PollInterval    int    `yaml:"pollInterval,omitempty" json:"pollInterval,omitempty"`
	Backlog         string `yaml:"backlog,omitempty" json:"backlog,omitempty"`
	GraphURL        string `yaml:"graphUrl,omitempty" json:"graphUrl,omitempty"`
	AuthorityURL    string `yaml:"authorityUrl,omitempty" json:"authorityUrl,omitempty"`
	Auth            string `yaml:"auth,omitempty" json:"auth,omitempty"`
	TokenURL        string `yaml:"tokenUrl,omitempty" json:"tokenUrl,omitempty"`
	Scope           string `yaml:"scope,omitempty" json:"scope,omitempty"`
	Provider        string `yaml:"provider,omitempty" json:"provider,omitempty"`
	AuthURL         string `yaml:"authUrl,omitempty" json:"authUrl,omitempty"`
}

// Flow is a flow in the file: the API's body of create.
type Flow struct {
	Name        string     `yaml:"name" json:"name"`
	Description string     `yaml:"description,omitempty" json:"description,omitempty"`
	Enabled     bool       `yaml:"enabled" json:"enabled"`
	Start       Start      `yaml:"start" json:"start"`
	Activities  []Activity `yaml:"activities" json:"activities"`
}

// Start is a flow's Start activity.
type Start struct {
	EmailTrigger Trigger `yaml:"emailTrigger" json:"emailTrigger"`
}

// Trigger is the Email Trigger.
type Trigger struct {
	IMAP                string `yaml:"imap" json:"imap"`
	Subject             string `yaml:"subject" json:"subject"`
	Match               string `yaml:"match,omitempty" json:"match,omitempty"`
	IgnoreReplyPrefixes bool   `yaml:"ignoreReplyPrefixes,omitempty" json:"ignoreReplyPrefixes,omitempty"`
	From                string `yaml:"from,omitempty" json:"from,omitempty"`
}

// Activity is a webhook activity.
type Activity struct {
	Type               string            `yaml:"type,omitempty" json:"type,omitempty"`
	URL                string            `yaml:"url" json:"url"`
	Secret             string            `yaml:"secret,omitempty" json:"secret,omitempty"`
	Headers            map[string]string `yaml:"headers,omitempty" json:"headers,omitempty"`
	Timeout            string            `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	IncludeAttachments bool              `yaml:"includeAttachments,omitempty" json:"includeAttachments,omitempty"`
	MaxConcurrency     int               `yaml:"maxConcurrency,omitempty" json:"maxConcurrency,omitempty"`
	RatePerSecond      float64           `yaml:"ratePerSecond,omitempty" json:"ratePerSecond,omitempty"`
}

// Export returns the document of the configurations and flows a service
// answered, with a placeholder ${env:NAME} for every secret it holds (see
// EnvName), and the names of those environment variables.
func Export(imaps []imapconf.View, flows []api.FlowView) (Document, []string) {
	d := Document{APIVersion: APIVersion, Kind: Kind, IMAP: []IMAP{}, Flows: []Flow{}}
	var envs []string
	used := map[string]bool{}
	env := func(name string) string {
		// Names made to collide (a mailbox named like a flow's header
		// variable) must not share a variable: one secret would go
		// where the other belongs. A name taken gets a number.
		for n, base := 2, name; used[name]; n++ {
			name = base + "_" + strconv.Itoa(n)
		}
		used[name] = true
		envs = append(envs, name)
		return "${env:" + name + "}"
	}
	for _, v := range imaps {
		c := IMAP{Name: v.Name, Description: v.Description, Enabled: v.Enabled, ServerType: v.ServerType, Type: v.Type, Host: v.Host,
			Port: v.Port, Username: v.Username, TenantID: v.TenantID, ClientID: v.ClientID, Folder: v.Folder, TLS: v.TLS, CACert: v.CACert,
			AfterProcessing: v.AfterProcessing, MoveTo: v.MoveTo, PollInterval: v.PollInterval, Backlog: v.Backlog, GraphURL: v.GraphURL,
			AuthorityURL: v.AuthorityURL, Auth: v.Auth, TokenURL: v.TokenURL, Scope: v.Scope, Provider: v.Provider, AuthURL: v.AuthURL}
		if v.HasPassword {
			c.Password = env(EnvName(v.Name, "PASSWORD"))
		}
		if v.HasClientSecret {
			c.ClientSecret = env(EnvName(v.Name, "CLIENT_SECRET"))
		}
		d.IMAP = append(d.IMAP, c)
	}
	for _, v := range flows {
		f := Flow{Name: v.Name, Description: v.Description, Enabled: v.Enabled, Activities: []Activity{}}
		t := v.Start.EmailTrigger
		f.Start.EmailTrigger = Trigger{IMAP: t.IMAP, Subject: t.Subject, Match: t.Match, IgnoreReplyPrefixes: t.IgnoreReplyPrefixes, From: t.From}
		for i, a := range v.Activities {
			fa := Activity{Type: a.Type, URL: a.URL, Timeout: a.Timeout, IncludeAttachments: a.IncludeAttachments,
				MaxConcurrency: a.MaxConcurrency, RatePerSecond: a.RatePerSecond}
			prefix := "WEBHOOK"
			if i > 0 {
				prefix += "_" + strconv.Itoa(i+1)
			}
			if a.HasSecret {
				fa.Secret = env(EnvName(v.Name, prefix+"_SECRET"))
			}
			if len(a.Headers) > 0 {
				fa.Headers = map[string]string{}
				for _, h := range slices.Sorted(maps.Keys(a.Headers)) {
					fa.Headers[h] = env(EnvName(v.Name, prefix+"_HEADER_"+h))
				}
			}
			f.Activities = append(f.Activities, fa)
		}
		d.Flows = append(d.Flows, f)
	}
	return d, envs
}

var notEnvChar = regexp.MustCompile(`[^A-Z0-9_]+`)

// EnvName is the environment variable export names for the secret field of
// the object called object: both upper case, joined by an underscore, every
// other character than letters, digits and underscores made one, such as
// SUPPORT_PASSWORD or INVOICES_WEBHOOK_SECRET.
func EnvName(object, field string) string {
	return notEnvChar.ReplaceAllString(strings.ToUpper(object+"_"+field), "_")
}

// Encode writes d as YAML, with a comment naming the environment variables
// its placeholders need.
func Encode(w io.Writer, d Document, envs []string) error {
	var n yaml.Node
	if err := n.Encode(d); err != nil {
		return fmt.Errorf("encoding the document: %w", err)
	}
	n.HeadComment = "mailtrigger configuration (apply with: mailtrigger apply -f FILE).\n" +
		"Secrets are never exported: each is a placeholder, ${env:NAME} or ${file:/path},\n" +
		"resolved when the file is applied."
	if len(envs) > 0 {
		n.HeadComment += "\nThis file needs: " + strings.Join(envs, ", ")
	}
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return fmt.Errorf("writing YAML: %w", err)
	}
	return enc.Close()
}
