package config

import (
	"flag"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// TLS is how the service serves HTTPS: from certificate files, or with
// certificates it gets itself over ACME (Let's Encrypt), or not at all.
type TLS struct {
	// CertFile and KeyFile are PEM files, reloaded when they change
	// (MAILTRIGGER_TLS_CERT, MAILTRIGGER_TLS_KEY).
	CertFile string
	KeyFile  string
	// ACMEDomains lists the domain names to get certificates for,
	// comma-separated (MAILTRIGGER_ACME_DOMAINS); ACMEEmail is the account's
	// contact (MAILTRIGGER_ACME_EMAIL, optional); ACMEDirectory is the ACME
	// server's directory URL (MAILTRIGGER_ACME_DIRECTORY; default Let's
	// Encrypt's production one).
	ACMEDomains   string
	ACMEEmail     string
	ACMEDirectory string
	// HTTPListen is a second, plain HTTP address (MAILTRIGGER_HTTP_LISTEN,
	// such as :80) that answers ACME HTTP-01 challenges and redirects
	// everything else to HTTPS.
	HTTPListen string
}

// tlsFromEnv reads the TLS settings.
func tlsFromEnv(getenv func(string) string) TLS {
	return TLS{
		CertFile:      getenv("MAILTRIGGER_TLS_CERT"),
		KeyFile:       getenv("MAILTRIGGER_TLS_KEY"),
		ACMEDomains:   getenv("MAILTRIGGER_ACME_DOMAINS"),
		ACMEEmail:     getenv("MAILTRIGGER_ACME_EMAIL"),
		ACMEDirectory: getenv("MAILTRIGGER_ACME_DIRECTORY"),
		HTTPListen:    getenv("MAILTRIGGER_HTTP_LISTEN"),
	}
}

// tlsFlags registers the flags of the TLS settings on fs.
func (t *TLS) tlsFlags(fs *flag.FlagSet) {
	fs.StringVar(&t.CertFile, "tls-cert", t.CertFile, "PEM certificate (chain) file: serve HTTPS on -listen, reloaded when it changes (MAILTRIGGER_TLS_CERT)")
	fs.StringVar(&t.KeyFile, "tls-key", t.KeyFile, "PEM private key file of -tls-cert (MAILTRIGGER_TLS_KEY)")
	fs.StringVar(&t.ACMEDomains, "acme-domains", t.ACMEDomains, "comma-separated domain names to get certificates for over ACME (Let's Encrypt) and serve HTTPS on -listen (MAILTRIGGER_ACME_DOMAINS)")
	fs.StringVar(&t.ACMEEmail, "acme-email", t.ACMEEmail, "contact address of the ACME account (MAILTRIGGER_ACME_EMAIL)")
	fs.StringVar(&t.ACMEDirectory, "acme-directory", t.ACMEDirectory, "ACME directory URL; default Let's Encrypt production (MAILTRIGGER_ACME_DIRECTORY)")
	fs.StringVar(&t.HTTPListen, "http-listen", t.HTTPListen, "plain HTTP address such as :80 that answers ACME HTTP-01 challenges and redirects the rest to HTTPS (MAILTRIGGER_HTTP_LISTEN)")
}

// Enabled reports whether the service serves HTTPS.
func (t TLS) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" || t.ACMEDomains != "" }

// Domains is the parsed MAILTRIGGER_ACME_DOMAINS, lower-cased.
func (t TLS) Domains() []string {
	var out []string
	for _, d := range strings.Split(t.ACMEDomains, ",") {
		if d = strings.ToLower(strings.TrimSpace(d)); d != "" {
			out = append(out, d)
		}
	}
	return out
}

// Validate checks the TLS settings that can be checked without reading the
// files (tlsconf reads them at start, and says which one is wrong).
func (t TLS) Validate() error {
	if (t.CertFile == "") != (t.KeyFile == "") {
		return fmt.Errorf("MAILTRIGGER_TLS_CERT and MAILTRIGGER_TLS_KEY go together: set both (the certificate and its key) or neither")
	}
	acme := t.ACMEDomains != "" || t.ACMEEmail != "" || t.ACMEDirectory != ""
	if acme && t.CertFile != "" {
		return fmt.Errorf("MAILTRIGGER_ACME_DOMAINS and MAILTRIGGER_TLS_CERT exclude each other: use certificate files or ACME, not both")
	}
	if acme && t.ACMEDomains == "" {
		return fmt.Errorf("MAILTRIGGER_ACME_EMAIL and MAILTRIGGER_ACME_DIRECTORY need MAILTRIGGER_ACME_DOMAINS, the domain names to get certificates for")
	}
	if t.ACMEDomains != "" {
		ds := t.Domains()
		if len(ds) == 0 {
			return fmt.Errorf("MAILTRIGGER_ACME_DOMAINS must list domain names separated by commas")
		}
		for _, d := range ds {
			if net.ParseIP(d) != nil || strings.ContainsAny(d, " /:*") || !strings.Contains(d, ".") || strings.HasSuffix(d, ".") {
				return fmt.Errorf("MAILTRIGGER_ACME_DOMAINS: %q is not a domain name such as mail.example.com", d)
			}
		}
	}
	if t.ACMEDirectory != "" {
		u, err := url.Parse(t.ACMEDirectory)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return fmt.Errorf("MAILTRIGGER_ACME_DIRECTORY must be an https:// URL, got %q", t.ACMEDirectory)
		}
	}
	if t.ACMEEmail != "" && !strings.Contains(t.ACMEEmail, "@") {
		return fmt.Errorf("MAILTRIGGER_ACME_EMAIL must be an email address, got %q", t.ACMEEmail)
	}
	if t.HTTPListen != "" {
		if !t.Enabled() {
			return fmt.Errorf("MAILTRIGGER_HTTP_LISTEN redirects to HTTPS: it needs MAILTRIGGER_TLS_CERT and MAILTRIGGER_TLS_KEY, or MAILTRIGGER_ACME_DOMAINS")
		}
		if _, _, err := net.SplitHostPort(t.HTTPListen); err != nil {
			return fmt.Errorf("MAILTRIGGER_HTTP_LISTEN must be an address such as :80, got %q", t.HTTPListen)
		}
	}
	return nil
}
