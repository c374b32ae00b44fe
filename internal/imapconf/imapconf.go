// Package imapconf is the IMAP configuration entity of Management >
// Configuration Management: its fields, its rules, its defaults and the JSON
// shapes the API reads and writes. It knows nothing of HTTP or SQL.
package imapconf

import (
	"time"
)

// Values of the enumerated fields.
const (
	ServerIMAPS = "imaps"
	ServerPOP3S = "pop3s"

	TypeGeneric = "generic"
	TypeMSGraph = "msgraph"

	TLSImplicit = "implicit"
	TLSStartTLS = "starttls"

	AfterNone   = "none"
	AfterSeen   = "seen"
	AfterDelete = "delete"
	AfterMove   = "move"

	BacklogNew    = "new"
	BacklogUnseen = "unseen"
	BacklogAll    = "all"

	AuthPassword = "password"
	AuthOAuth2   = "oauth2"
	// AuthOAuth2Delegated logs in as the user who signed in with the
	// provider (authorization code + PKCE, refresh tokens): generic IMAP and
	// POP3, and msgraph. Issue 17.
	AuthOAuth2Delegated = "oauth2-delegated"

	// Providers of oauth2-delegated: their authorization and token URLs
	// and scopes are known (Google, Microsoft) or given (custom).
	ProviderGoogle    = "google"
	ProviderMicrosoft = "microsoft"
	ProviderCustom    = "custom"

	DefaultFolder       = "INBOX"
	DefaultPollInterval = 60
	MinPollInterval     = 5
	MaxPollInterval     = 86400
	DefaultGraphURL     = "https://graph.microsoft.com"
	DefaultAuthorityURL = "https://login.microsoftonline.com"
	// DefaultTenant is Microsoft's tenant of oauth2-delegated when none is
	// given: work, school and personal accounts alike.
	DefaultTenant = "common"
	// DefaultOAuth2Scope is the scope of the tokens of an oauth2
	// configuration without one: IMAP and POP access to Exchange Online.
	DefaultOAuth2Scope = "https://outlook.office365.com/.default"

	MaxNameLen        = 50
	MaxDescriptionLen = 1000
)

// Config is one IMAP configuration. Password and ClientSecret hold the
// plaintext secrets in memory only; the store seals them.
type Config struct {
	ID              int64
	Name            string
	ServerType      string
	Type            string
	Description     string
	Enabled         bool
	Host            string
	Port            int
	Username        string
	Password        string
	TenantID        string
	ClientID        string
	ClientSecret    string
	Folder          string
	TLS             string
	CACert          string
	AfterProcessing string
	MoveTo          string
	PollInterval    int
	Backlog         string
	GraphURL        string
	AuthorityURL    string
	Auth            string
	TokenURL        string
	Scope           string
	// Provider and AuthURL are those of oauth2-delegated (AuthURL: the
	// authorization endpoint of a custom provider; TokenURL its token
	// endpoint). TenantID is then Microsoft's tenant (common, consumers,
	// organizations, a GUID or a domain).
	Provider  string
	AuthURL   string
	CreatedAt time.Time
	UpdatedAt time.Time
	// SecretError, set by the store, says why a stored secret could not be
	// opened (a wrong key, a damaged value, or a value copied from another
	// configuration's row); the secret is then empty and the configuration
	// must not be used to log in. Never the secret itself.
	SecretError string
}

// NeedsPassword reports whether the configuration logs in with a password.
func (c *Config) NeedsPassword() bool {
	return c.Type == TypeGeneric && c.Auth == AuthPassword
}

// NeedsClientSecret reports whether the configuration authenticates with a
// client secret (MS Graph, or OAuth2 client credentials for IMAP/POP3).
// An oauth2-delegated configuration's client secret is optional.
func (c *Config) NeedsClientSecret() bool {
	return (c.Type == TypeMSGraph && c.Auth != AuthOAuth2Delegated) || c.Auth == AuthOAuth2
}

// View is the JSON form of a configuration in responses. It never carries a
// secret, only whether one is stored.
type View struct {
	Name            string `json:"name"`
	ServerType      string `json:"serverType"`
	Type            string `json:"type"`
	Description     string `json:"description"`
	Enabled         bool   `json:"enabled"`
	Host            string `json:"host,omitempty"`
	Port            int    `json:"port,omitempty"`
	Username        string `json:"username"`
	HasPassword     bool   `json:"hasPassword"`
	TenantID        string `json:"tenantId,omitempty"`
	ClientID        string `json:"clientId,omitempty"`
	HasClientSecret bool   `json:"hasClientSecret"`
	Folder          string `json:"folder"`
	TLS             string `json:"tls,omitempty"`
	CACert          string `json:"caCert,omitempty"`
	AfterProcessing string `json:"afterProcessing"`
	MoveTo          string `json:"moveTo,omitempty"`
	PollInterval    int    `json:"pollInterval"`
	Backlog         string `json:"backlog"`
	GraphURL        string `json:"graphUrl,omitempty"`
	AuthorityURL    string `json:"authorityUrl,omitempty"`
	Auth            string `json:"auth,omitempty"`
	TokenURL        string `json:"tokenUrl,omitempty"`
	Scope           string `json:"scope,omitempty"`
	Provider        string `json:"provider,omitempty"`
	AuthURL         string `json:"authUrl,omitempty"`
	// SignIn is who signed in, for oauth2-delegated (nil: nobody yet, or
	// the sign-in was dropped). Never a token.
	SignIn    *SignIn   `json:"signIn,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
	Status    *Status   `json:"status,omitempty"`
}

// SignIn is the public part of an oauth2-delegated configuration's grant.
type SignIn struct {
	Account    string    `json:"account"`
	SignedInAt time.Time `json:"signedInAt"`
	// Broken says why the grant no longer works ("sign in again": revoked,
	// password changed, consent withdrawn); "" while it works.
	Broken string `json:"broken,omitempty"`
}

// Watcher states.
const (
	StateDisabled    = "disabled"
	StateConnecting  = "connecting"
	StateSyncing     = "syncing"
	StateIdle        = "idle"    // waiting in IMAP IDLE
	StatePolling     = "polling" // waiting between polls (no IDLE)
	StateStale       = "stale"   // the server was silent too long; reconnecting
	StateError       = "error"
	StateAuthFailed  = "auth_failed"
	StateUnsupported = "unsupported" // this kind of mailbox is not read yet
)

// Status is what the watcher of a configuration last did. The watcher fills
// it in; the entity only carries it.
type Status struct {
	State            string     `json:"state"`
	Since            time.Time  `json:"since"`
	LastError        string     `json:"lastError,omitempty"`
	LastErrorAt      *time.Time `json:"lastErrorAt,omitempty"`
	LastSuccessAt    *time.Time `json:"lastSuccessAt,omitempty"`
	LastMessageAt    *time.Time `json:"lastMessageAt,omitempty"`
	MessagesIngested int64      `json:"messagesIngested"`
	Reconnects       int64      `json:"reconnects"`
	BacklogDone      int        `json:"backlogDone,omitempty"`
	BacklogTotal     int        `json:"backlogTotal,omitempty"`
	// RetryAt is when a failing watcher tries again (its configured
	// backoff from the failure); nil while it is not waiting to retry.
	RetryAt *time.Time `json:"retryAt,omitempty"`
	// Replica is the replica watching the mailbox (several replicas on
	// PostgreSQL); "" when none holds it yet.
	Replica string `json:"replica,omitempty"`
}

// View returns the response form of c.
func (c *Config) View() View {
	return View{
		Name:            c.Name,
		ServerType:      c.ServerType,
		Type:            c.Type,
		Description:     c.Description,
		Enabled:         c.Enabled,
		Host:            c.Host,
		Port:            c.Port,
		Username:        c.Username,
		HasPassword:     c.Password != "",
		TenantID:        c.TenantID,
		ClientID:        c.ClientID,
		HasClientSecret: c.ClientSecret != "",
		Folder:          c.Folder,
		TLS:             c.TLS,
		CACert:          c.CACert,
		AfterProcessing: c.AfterProcessing,
		MoveTo:          c.MoveTo,
		PollInterval:    c.PollInterval,
		Backlog:         c.Backlog,
		GraphURL:        c.GraphURL,
		AuthorityURL:    c.AuthorityURL,
		Auth:            c.Auth,
		TokenURL:        c.TokenURL,
		Scope:           c.Scope,
		Provider:        c.Provider,
		AuthURL:         c.AuthURL,
		CreatedAt:       c.CreatedAt,
		UpdatedAt:       c.UpdatedAt,
	}
}

// Input is the JSON body of create, edit and test. Every field is a pointer so
// that an absent field can be told from an empty one. The read-only fields of
// View are accepted and ignored, so that a client may send back what it read.
type Input struct {
	Name            *string `json:"name"`
	ServerType      *string `json:"serverType"`
	Type            *string `json:"type"`
	Description     *string `json:"description" valid:"multiline"`
	Enabled         *bool   `json:"enabled"`
	Host            *string `json:"host"`
	Port            *int    `json:"port"`
	Username        *string `json:"username"`
	Password        *string `json:"password"`
	TenantID        *string `json:"tenantId"`
	ClientID        *string `json:"clientId"`
	ClientSecret    *string `json:"clientSecret"`
	Folder          *string `json:"folder"`
	TLS             *string `json:"tls"`
	CACert          *string `json:"caCert" valid:"multiline"`
	AfterProcessing *string `json:"afterProcessing"`
	MoveTo          *string `json:"moveTo"`
	PollInterval    *int    `json:"pollInterval"`
	Backlog         *string `json:"backlog"`
	GraphURL        *string `json:"graphUrl"`
	AuthorityURL    *string `json:"authorityUrl"`
	Auth            *string `json:"auth"`
	TokenURL        *string `json:"tokenUrl"`
	Scope           *string `json:"scope"`
	Provider        *string `json:"provider"`
	AuthURL         *string `json:"authUrl"`

	// Read-only, ignored.
	HasPassword     *bool      `json:"hasPassword,omitempty"`
	HasClientSecret *bool      `json:"hasClientSecret,omitempty"`
	SignIn          *SignIn    `json:"signIn,omitempty" valid:"-"`
	CreatedAt       *time.Time `json:"createdAt,omitempty"`
	UpdatedAt       *time.Time `json:"updatedAt,omitempty"`
	Status          *Status    `json:"status,omitempty" valid:"-"`
}

// DuplicateInput is the body of the duplicate operation.
type DuplicateInput struct {
	Name         *string `json:"name"`
	Password     *string `json:"password"`
	ClientSecret *string `json:"clientSecret"`
}
