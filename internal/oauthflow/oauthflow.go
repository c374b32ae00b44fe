// Package oauthflow is the protocol side of delegated OAuth2 sign-in
// (issue 17): the authorization code flow with PKCE (RFC 7636, S256) and a
// one-time state, the code exchange, refresh-token renewal with rotation,
// the signed-in account from the ID token or the provider's userinfo, and
// the endpoints and scopes of the known providers (Google, Microsoft) for
// each kind of mailbox. It knows nothing of the store, HTTP routes or the
// UI; it talks only to the provider's endpoints.
//
// Requests without a deadline in their context get RequestTimeout. No
// error text holds a code, verifier, token or client secret; nothing is
// logged here.
//
// CONTRACT (issue 17): the signatures the lead committed may be added to,
// not changed without telling (notes/i17.md).
package oauthflow

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/valid"
)

// StateTTL is how long a sign-in started may be completed.
const StateTTL = 10 * time.Minute

// RequestTimeout bounds a request to the provider whose context has no
// deadline.
const RequestTimeout = 30 * time.Second

// The known providers' endpoints and scopes.
const (
	GoogleAuthURL     = "https://accounts.google.com/o/oauth2/v2/auth"
	GoogleTokenURL    = "https://oauth2.googleapis.com/token"
	GoogleUserinfoURL = "https://openidconnect.googleapis.com/v1/userinfo"
	GoogleMailScope   = "https://mail.google.com/"

	// MicrosoftUserinfoURL is asked only under the default authority
	// (another authority is a national cloud or a test's stand-in).
	MicrosoftUserinfoURL = "https://graph.microsoft.com/oidc/userinfo"
	MicrosoftIMAPScope   = "https://outlook.office.com/IMAP.AccessAsUser.All"
	MicrosoftPOPScope    = "https://outlook.office.com/POP.AccessAsUser.All"
	MicrosoftGraphScope  = "https://graph.microsoft.com/Mail.ReadWrite"
	// MicrosoftTenant is the tenant of a configuration without one: work,
	// school and personal accounts alike.
	MicrosoftTenant = "common"
)

// Endpoints are where and for what a configuration signs in.
type Endpoints struct {
	AuthURL  string
	TokenURL string
	// UserinfoURL is asked for the account when the token answer has no
	// ID token naming it ("" when there is none to ask).
	UserinfoURL string
	// Scopes asked for: the mail scope of the mailbox's kind, offline
	// access (a refresh token) and what names the account (openid email).
	Scopes []string
	// ExtraAuthParams go on the authorization URL (Google:
	// access_type=offline, prompt=consent).
	ExtraAuthParams map[string]string
}

// EndpointsOf returns the endpoints of c, an oauth2-delegated
// configuration: the provider's defaults (Google; Microsoft with c.TenantID,
// "common" when empty, under c.AuthorityURL when set), or c.AuthURL,
// c.TokenURL and c.Scope for a custom provider. c.Scope, when set,
// replaces the default mail scope for every provider.
//
// A custom provider has no userinfo endpoint: its account must come from
// the ID token (its scope should have openid and what names the user).
func EndpointsOf(c imapconf.Config) (Endpoints, error) {
	custom := strings.Fields(c.Scope)
	switch c.Provider {
	case imapconf.ProviderGoogle:
		if c.Type == imapconf.TypeMSGraph {
			return Endpoints{}, errors.New("provider google cannot sign in to Microsoft Graph: use microsoft or custom")
		}
		mail := []string{GoogleMailScope}
		if len(custom) > 0 {
			mail = custom
		}
		return Endpoints{
			AuthURL:         GoogleAuthURL,
			TokenURL:        GoogleTokenURL,
			UserinfoURL:     GoogleUserinfoURL,
			Scopes:          union(mail, "openid", "email"),
			ExtraAuthParams: map[string]string{"access_type": "offline", "prompt": "consent"},
		}, nil
	case imapconf.ProviderMicrosoft:
		var mail []string
		switch {
		case len(custom) > 0:
			mail = custom
		case c.Type == imapconf.TypeMSGraph:
			mail = []string{MicrosoftGraphScope}
		case c.ServerType == imapconf.ServerPOP3S:
			mail = []string{MicrosoftPOPScope}
		case c.ServerType == imapconf.ServerIMAPS:
			mail = []string{MicrosoftIMAPScope}
		default:
			return Endpoints{}, fmt.Errorf("no Microsoft scope for server type %q (imaps or pop3s)", c.ServerType)
		}
		tenant := strings.TrimSpace(c.TenantID)
		if tenant == "" {
			tenant = MicrosoftTenant
		}
		authority := strings.TrimRight(strings.TrimSpace(c.AuthorityURL), "/")
		if authority == "" {
			authority = imapconf.DefaultAuthorityURL
		}
		userinfo := ""
		if authority == imapconf.DefaultAuthorityURL {
			userinfo = MicrosoftUserinfoURL
		}
		base := authority + "/" + url.PathEscape(tenant) + "/oauth2/v2.0"
		return Endpoints{
			AuthURL:     base + "/authorize",
			TokenURL:    base + "/token",
			UserinfoURL: userinfo,
			Scopes:      union(mail, "offline_access", "openid", "email", "profile"),
		}, nil
	case imapconf.ProviderCustom:
		switch {
		case c.AuthURL == "":
			return Endpoints{}, errors.New("a custom provider needs authUrl")
		case c.TokenURL == "":
			return Endpoints{}, errors.New("a custom provider needs tokenUrl")
		case len(custom) == 0:
			return Endpoints{}, errors.New("a custom provider needs scope")
		}
		return Endpoints{AuthURL: c.AuthURL, TokenURL: c.TokenURL, Scopes: union(custom)}, nil
	}
	return Endpoints{}, fmt.Errorf("unknown provider %q (google, microsoft or custom)", c.Provider)
}

// union returns a followed by those of more it lacks, without repeats.
func union(a []string, more ...string) []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range append(append([]string(nil), a...), more...) {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// Start is a sign-in begun: the URL to open in the user's browser, the
// state it carries and the PKCE verifier kept (secret) until the callback.
type Start struct {
	URL      string
	State    string
	Verifier string
	Expires  time.Time
}

// Begin starts a sign-in for c with redirectURI registered at the provider:
// a fresh random state (at least 128 bits) and PKCE verifier, the S256
// challenge on the URL, login_hint set to c.Username.
func Begin(c imapconf.Config, redirectURI string, now time.Time) (Start, error) {
	ep, err := EndpointsOf(c)
	if err != nil {
		return Start{}, err
	}
	if c.ClientID == "" {
		return Start{}, errors.New("clientId is required to sign in")
	}
	u, err := url.Parse(ep.AuthURL)
	if err != nil || u.Host == "" {
		return Start{}, errors.New("the authorization URL is not an absolute URL")
	}
	// The browser is sent there: never a javascript: or data: URL (a
	// configuration stored past imapconf.Build's checks).
	if m := valid.HTTPSURL(ep.AuthURL); m != "" {
		return Start{}, errors.New("the authorization URL " + m)
	}
	if r, err := url.Parse(redirectURI); err != nil || r.Host == "" || (r.Scheme != "https" && r.Scheme != "http") {
		return Start{}, errors.New("the redirect URI is not an absolute http(s) URL")
	}
	state, err := randomString(32)
	if err != nil {
		return Start{}, fmt.Errorf("making the state: %w", err)
	}
	// 48 bytes: 64 characters of [A-Za-z0-9_-] (RFC 7636 §4.1: 43 to 128).
	verifier, err := randomString(48)
	if err != nil {
		return Start{}, fmt.Errorf("making the PKCE verifier: %w", err)
	}
	q := u.Query()
	for k, v := range ep.ExtraAuthParams {
		q.Set(k, v)
	}
	q.Set("response_type", "code")
	q.Set("client_id", c.ClientID)
	q.Set("redirect_uri", redirectURI)
	q.Set("scope", strings.Join(ep.Scopes, " "))
	q.Set("state", state)
	q.Set("code_challenge", Challenge(verifier))
	q.Set("code_challenge_method", "S256")
	if c.Username != "" {
		q.Set("login_hint", c.Username)
	}
	u.RawQuery = q.Encode()
	return Start{URL: u.String(), State: state, Verifier: verifier, Expires: now.Add(StateTTL)}, nil
}

// Challenge is the S256 code challenge of a PKCE verifier (RFC 7636 §4.2).
func Challenge(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// randomString is n random bytes, base64url without padding.
func randomString(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// Grant is what the token endpoint gave.
type Grant struct {
	AccessToken string
	// RefreshToken is "" on a renewal that did not rotate it (keep the old).
	RefreshToken string
	Expiry       time.Time
	// Account is the signed-in account (email or UPN): from the ID token
	// (email, preferred_username, upn) or userinfo. Set by Exchange only.
	Account string
}

// ErrInvalidGrant is wrapped by Exchange and Refresh errors when the
// provider answered invalid_grant: the code or refresh token is expired,
// used, revoked or for another client; the user must sign in again.
var ErrInvalidGrant = errors.New("the provider refused the grant (invalid_grant): sign in again")

// ProviderError is an error the provider returned (an OAuth2 error code and
// its description), on the callback (access_denied) or from the token
// endpoint. Its text never holds a code, token or secret.
type ProviderError struct {
	Code        string
	Description string
}

func (e *ProviderError) Error() string {
	if e.Description == "" {
		return "the provider answered " + e.Code
	}
	return "the provider answered " + e.Code + ": " + e.Description
}

// Exchange redeems code (with the verifier of its Begin) at c's token
// endpoint and finds the account that signed in. hc makes the requests
// (the service's egress policy); nil: http.DefaultClient.
//
// The client authenticates with client_id and, when c has one,
// client_secret in the form body (client_secret_post: Google, Microsoft
// and most others accept it). An answer without a refresh token is an
// error: the scope lacks offline access.
func Exchange(ctx context.Context, hc *http.Client, c imapconf.Config, redirectURI, code, verifier string) (Grant, error) {
	ep, err := EndpointsOf(c)
	if err != nil {
		return Grant{}, err
	}
	return exchange(ctx, hc, ep, c, redirectURI, code, verifier)
}

// exchange is Exchange at ep.
func exchange(ctx context.Context, hc *http.Client, ep Endpoints, c imapconf.Config, redirectURI, code, verifier string) (Grant, error) {
	const doing = "redeeming the sign-in code"
	form := url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {redirectURI},
		"code_verifier": {verifier},
	}
	secrets := []string{code, verifier, c.ClientSecret}
	g, idToken, err := requestToken(ctx, hc, ep.TokenURL, c, form, doing, secrets)
	if err != nil {
		return Grant{}, err
	}
	if g.RefreshToken == "" {
		return Grant{}, fmt.Errorf("%s: the provider gave no refresh token: the scope needs offline access (offline_access, or Google's access_type=offline)", doing)
	}
	g.Account, err = accountOf(ctx, hc, ep, c.ClientID, idToken, g.AccessToken)
	if err != nil {
		return Grant{}, err
	}
	return g, nil
}

// Refresh renews the access token with refreshToken. The answer's
// RefreshToken is the rotated one when the provider rotated it ("" when it
// answered none or the same).
func Refresh(ctx context.Context, hc *http.Client, c imapconf.Config, refreshToken string) (Grant, error) {
	ep, err := EndpointsOf(c)
	if err != nil {
		return Grant{}, err
	}
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshToken}}
	if c.Provider == imapconf.ProviderMicrosoft {
		// Microsoft documents scope as required on a refresh (the scopes
		// of the sign-in, or fewer).
		form.Set("scope", strings.Join(ep.Scopes, " "))
	}
	g, _, err := requestToken(ctx, hc, ep.TokenURL, c, form, "renewing the access token", []string{refreshToken, c.ClientSecret})
	if err != nil {
		return Grant{}, err
	}
	if g.RefreshToken == refreshToken {
		g.RefreshToken = ""
	}
	return g, nil
}

// withTimeout gives ctx RequestTimeout unless it has a deadline.
func withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, RequestTimeout)
}

// maxAnswer bounds what is read of an answer.
const maxAnswer = 1 << 20

type tokenAnswer struct {
	AccessToken      string          `json:"access_token"`
	TokenType        string          `json:"token_type"`
	ExpiresIn        json.RawMessage `json:"expires_in"`
	RefreshToken     string          `json:"refresh_token"`
	IDToken          string          `json:"id_token"`
	Error            string          `json:"error"`
	ErrorDescription string          `json:"error_description"`
}

// requestToken posts form to tokenURL as c's client and returns the grant
// and the ID token. Its errors say what was being done (doing) and never
// hold one of secrets or a token.
func requestToken(ctx context.Context, hc *http.Client, tokenURL string, c imapconf.Config, form url.Values, doing string, secrets []string) (Grant, string, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	if c.ClientID == "" {
		return Grant{}, "", fmt.Errorf("%s: clientId is required", doing)
	}
	form.Set("client_id", c.ClientID)
	if c.ClientSecret != "" {
		form.Set("client_secret", c.ClientSecret)
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return Grant{}, "", fmt.Errorf("%s: the token URL is not valid", doing)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	start := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		return Grant{}, "", fmt.Errorf("%s: %w", doing, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return Grant{}, "", fmt.Errorf("%s: reading the answer of %s: %w", doing, hostOf(tokenURL), err)
	}
	var a tokenAnswer
	jsonErr := json.Unmarshal(body, &a)
	// What the answer handed out is as secret as what was sent.
	secrets = append(secrets[:len(secrets):len(secrets)], a.AccessToken, a.RefreshToken, a.IDToken)
	if resp.StatusCode != http.StatusOK || a.Error != "" {
		if jsonErr != nil || a.Error == "" {
			return Grant{}, "", fmt.Errorf("%s: %s answered HTTP %d, %s", doing, hostOf(tokenURL), resp.StatusCode, notOAuth2(resp))
		}
		return Grant{}, "", oauthError(doing, a.Error, a.ErrorDescription, secrets)
	}
	if jsonErr != nil {
		return Grant{}, "", fmt.Errorf("%s: %s answered HTTP 200, %s", doing, hostOf(tokenURL), notOAuth2(resp))
	}
	if a.AccessToken == "" {
		return Grant{}, "", fmt.Errorf("%s: %s answered without an access token", doing, hostOf(tokenURL))
	}
	if a.TokenType != "" && !strings.EqualFold(a.TokenType, "bearer") {
		return Grant{}, "", fmt.Errorf("%s: %s answered a token of type %q, not Bearer", doing, hostOf(tokenURL), clean(a.TokenType, 40, secrets))
	}
	g := Grant{AccessToken: a.AccessToken, RefreshToken: a.RefreshToken}
	if secs := expiresIn(a.ExpiresIn); secs > 0 {
		// From the request's start: the token may be a little older than
		// the answer, never younger.
		g.Expiry = start.Add(time.Duration(secs) * time.Second)
	}
	return g, a.IDToken, nil
}

// expiresIn reads expires_in, a number or (some providers) a string of
// one; 0 when absent or unreadable.
func expiresIn(raw json.RawMessage) int64 {
	s := strings.Trim(strings.TrimSpace(string(raw)), `"`)
	n, err := strconv.ParseFloat(s, 64)
	if err != nil || n <= 0 || n > 1<<31 {
		return 0
	}
	return int64(n)
}

// oauthError is the error of an OAuth2 error answer: ErrInvalidGrant
// wrapped for invalid_grant, a *ProviderError for the others.
func oauthError(doing, code, desc string, secrets []string) error {
	code = errorCode(code, secrets)
	desc = descriptionOf(desc, secrets)
	if code == "invalid_grant" {
		if desc == "" {
			return fmt.Errorf("%s: %w", doing, ErrInvalidGrant)
		}
		return fmt.Errorf("%s: %w (%s)", doing, ErrInvalidGrant, desc)
	}
	return fmt.Errorf("%s: %w", doing, &ProviderError{Code: code, Description: desc})
}

// CallbackError is the error of a callback that carried error= instead of
// a code (access_denied and the like), as a *ProviderError with its
// description cleaned (one line, bounded, no secrets).
func CallbackError(code, description string) *ProviderError {
	return &ProviderError{Code: errorCode(code, nil), Description: descriptionOf(description, nil)}
}

// errorCode is an OAuth2 error code made fit for an error text.
func errorCode(code string, secrets []string) string {
	if code = clean(code, 100, secrets); code == "" {
		return "an error it did not name"
	}
	return code
}

// descriptionOf is an error_description made fit for an error text: its
// first line without Microsoft's trace and correlation ids, valid UTF-8,
// bounded, with secrets replaced.
func descriptionOf(desc string, secrets []string) string {
	desc = strings.SplitN(strings.ReplaceAll(desc, "\r", "\n"), "\n", 2)[0]
	if i := strings.Index(desc, " Trace ID:"); i > 0 {
		desc = desc[:i]
	}
	return clean(desc, 300, secrets)
}

// clean returns s as valid UTF-8 without control characters, each of
// secrets replaced, and at most limit bytes (cut at a rune).
func clean(s string, limit int, secrets []string) string {
	s = strings.ToValidUTF8(s, "?")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	for _, sec := range secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, "[redacted]")
		}
	}
	for _, sec := range secrets {
		if sec != "" && strings.Contains(s, sec) {
			// The replacements made one anew (overlapping secrets):
			// withhold it all.
			return ""
		}
	}
	s = strings.TrimSpace(s)
	if len(s) > limit {
		cut := limit
		for cut > 0 && !utf8RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }

// notOAuth2 describes an answer that is not an OAuth2 one by its
// Content-Type, never its body.
func notOAuth2(resp *http.Response) string {
	ct := resp.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err == nil {
		ct = mt
	}
	if ct == "" {
		ct = "none"
	}
	return "not an OAuth2 answer (Content-Type " + clean(ct, 100, nil) + ")"
}

// hostOf is the host of an endpoint, for error texts.
func hostOf(endpoint string) string {
	if u, err := url.Parse(endpoint); err == nil && u.Host != "" {
		return u.Host
	}
	return "the endpoint"
}

// accountOf finds the account that signed in: from the ID token's claims,
// else from userinfo with the access token.
func accountOf(ctx context.Context, hc *http.Client, ep Endpoints, clientID, idToken, accessToken string) (string, error) {
	if idToken != "" {
		account, err := AccountFromIDToken(idToken, clientID)
		if err != nil {
			return "", fmt.Errorf("reading the ID token: %w", err)
		}
		if account != "" {
			return account, nil
		}
	}
	if ep.UserinfoURL == "" {
		return "", errors.New("the provider did not name the account that signed in (no ID token with email, preferred_username or upn): add openid and email to the scope")
	}
	return userinfo(ctx, hc, ep.UserinfoURL, accessToken)
}

// AccountFromIDToken returns the account an ID token names: its claim
// email, else preferred_username, else upn ("" when none). The signature
// is not verified: the token came from the token endpoint over TLS (OIDC
// Core 3.1.3.7). An aud that does not name clientID is an error. Errors
// never quote the token.
func AccountFromIDToken(idToken, clientID string) (string, error) {
	parts := strings.Split(idToken, ".")
	if len(parts) != 3 {
		return "", errors.New("it is not a JWT (three dot-separated parts)")
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return "", errors.New("its payload is not base64url")
	}
	var claims struct {
		Aud               json.RawMessage `json:"aud"`
		Email             string          `json:"email"`
		PreferredUsername string          `json:"preferred_username"`
		UPN               string          `json:"upn"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return "", errors.New("its payload is not a JSON object of claims")
	}
	if len(claims.Aud) > 0 && clientID != "" {
		var one string
		var many []string
		if json.Unmarshal(claims.Aud, &one) == nil {
			many = []string{one}
		} else if json.Unmarshal(claims.Aud, &many) != nil {
			return "", errors.New("its aud claim is neither a string nor a list")
		}
		ok := false
		for _, a := range many {
			ok = ok || a == clientID
		}
		if !ok {
			return "", errors.New("it was issued to another client (aud)")
		}
	}
	for _, v := range []string{claims.Email, claims.PreferredUsername, claims.UPN} {
		if v = strings.TrimSpace(v); v != "" {
			return clean(v, 320, nil), nil
		}
	}
	return "", nil
}

// userinfo asks the userinfo endpoint for the account's email.
func userinfo(ctx context.Context, hc *http.Client, endpoint, accessToken string) (string, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	const doing = "asking the provider who signed in (userinfo)"
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint, nil)
	if err != nil {
		return "", fmt.Errorf("%s: the userinfo URL is not valid", doing)
	}
	req.Header.Set("Authorization", "Bearer "+accessToken)
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("%s: %w", doing, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return "", fmt.Errorf("%s: reading the answer of %s: %w", doing, hostOf(endpoint), err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s answered HTTP %d", doing, hostOf(endpoint), resp.StatusCode)
	}
	var info struct {
		Email             string `json:"email"`
		PreferredUsername string `json:"preferred_username"`
	}
	if err := json.Unmarshal(body, &info); err != nil {
		return "", fmt.Errorf("%s: %s answered HTTP 200, %s", doing, hostOf(endpoint), notOAuth2(resp))
	}
	for _, v := range []string{info.Email, info.PreferredUsername} {
		if v = strings.TrimSpace(v); v != "" {
			return clean(v, 320, []string{accessToken}), nil
		}
	}
	return "", fmt.Errorf("%s: %s named no email: add email to the scope", doing, hostOf(endpoint))
}
