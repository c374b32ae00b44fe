package testenv

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// DovecotDomain is the domain of the addresses AddUser creates.
const DovecotDomain = "example.test"

// dovecotDirPrefix starts the names of the instances' directories in the
// system's temporary directory.
const dovecotDirPrefix = "mailtrigger-dovecot-"

var dovecotCleanOnce sync.Once

const (
	dovecotInstallHint = "apt-get install dovecot-imapd dovecot-pop3d"
	// dovecotReadyTimeout bounds how long a start or stop may take.
	dovecotReadyTimeout = 15 * time.Second
	// dovecotStopGrace is how long a stopping master may take before it
	// is killed.
	dovecotStopGrace = 300 * time.Millisecond
	// dovecotLogTail is how much of the log failure messages show.
	dovecotLogTail = 4000
)

// Dovecot is a private Dovecot started by StartDovecot: IMAP and POP3, each
// with STARTTLS/STLS and with implicit TLS, on loopback ports of its own,
// with its configuration, users, maildirs and log in a temporary directory.
//
// Its methods take the test's testing.TB and fail the test on error, so
// they must be called from the test's goroutine.
type Dovecot struct {
	// Host is the loopback address Dovecot listens on. It is 127.0.0.2 where
	// the system allows it (Linux routes all of 127.0.0.0/8 to lo), so that
	// clients connect from 127.0.0.1 to a different address: Dovecot treats
	// a connection whose client and server address are the same as secure
	// and would let it log in without TLS. Elsewhere it is 127.0.0.1; see
	// PlaintextRefused.
	Host      string
	IMAPPort  int // IMAP; LOGINDISABLED until STARTTLS
	IMAPSPort int // IMAP over implicit TLS
	POP3Port  int // POP3; login refused until STLS
	POP3SPort int // POP3 over implicit TLS
	// CACertPEM is the PEM of the throwaway CA that signed the server
	// certificate, which is valid for Host, 127.0.0.1, 127.0.0.2 and
	// localhost.
	CACertPEM []byte
	// PlaintextRefused reports that Dovecot refuses a login before TLS on
	// IMAPPort and POP3Port. It is false only when Host is 127.0.0.1.
	PlaintextRefused bool

	Dir        string // the instance's directory, removed at cleanup
	ConfigPath string // dovecot.conf, for doveadm -c
	LogPath    string // Dovecot's log

	dovecotBin string
	doveadmBin string
	usersDir   string
	mailUser   dovecotUser
	mailDir    string

	// oauth2URL is the introspection URL of DovecotOAuth2, empty for
	// password logins.
	oauth2URL string

	mu     sync.Mutex
	users  map[string]string // address → password
	cmd    *exec.Cmd         // the running master, nil when stopped
	exited chan struct{}     // closed when cmd has exited
	output *dovecotOutput    // the master's stdout and stderr
}

// DovecotOption changes how StartDovecot configures Dovecot.
type DovecotOption func(d *Dovecot)

// DovecotOAuth2 makes Dovecot accept OAuth2 logins only: SASL XOAUTH2 and
// OAUTHBEARER, each token checked on every login (no auth cache) by a POST
// to introspectionURL (RFC 7662; oauthfake's IntrospectionURL), whose
// answer must say "active": true and name the user logging in as
// "username". Passwords are refused (LOGIN, USER/PASS and AUTH PLAIN are
// not offered), so Append then stores mail with doveadm save, and DialIMAPS
// and Password cannot be used. The URL must be http:// on loopback.
func DovecotOAuth2(introspectionURL string) DovecotOption {
	return func(d *Dovecot) { d.oauth2URL = introspectionURL }
}

// StartDovecot starts a private Dovecot on loopback and stops it and removes
// its directory when the test ends. It fails the test when Dovecot is not
// installed.
func StartDovecot(t testing.TB, opts ...DovecotOption) *Dovecot {
	t.Helper()
	d, err := NewDovecot(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Error(err)
		}
	})
	return d
}

// NewDovecot starts a private Dovecot on loopback outside of a test (the
// bench command uses it); the caller must Close it. It returns an error
// saying how to install Dovecot when it is missing.
func NewDovecot(opts ...DovecotOption) (*Dovecot, error) {
	d := &Dovecot{users: map[string]string{}}
	for _, o := range opts {
		o(d)
	}
	d.dovecotBin = dovecotFindProgram("dovecot", "/usr/sbin/dovecot")
	d.doveadmBin = dovecotFindProgram("doveadm", "/usr/bin/doveadm")
	if d.dovecotBin == "" || d.doveadmBin == "" || !dovecotHasProtocols() {
		return nil, errors.New("dovecot not found: " + dovecotInstallHint)
	}

	// Not t.TempDir: its parents are private to root, which the mail and
	// auth processes (unprivileged users) could not enter, and its long
	// names would push base_dir's sockets past the 108-byte limit.
	dovecotCleanOnce.Do(removeStaleDovecotDirs)
	dir, err := os.MkdirTemp("", dovecotDirPrefix)
	if err != nil {
		return nil, fmt.Errorf("creating dovecot directory: %w", err)
	}
	d.Dir = dir
	fail := func(err error) (*Dovecot, error) {
		if cerr := d.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
		return nil, err
	}
	if err := d.setUp(); err != nil {
		return fail(fmt.Errorf("setting up dovecot: %w", err))
	}

	// A port chosen free may be taken before Dovecot binds it: retry with
	// new ones.
	for attempt := 1; ; attempt++ {
		if err := d.choosePorts(); err != nil {
			return fail(fmt.Errorf("choosing dovecot ports: %w", err))
		}
		if err := d.writeConfig(); err != nil {
			return fail(fmt.Errorf("writing dovecot config: %w", err))
		}
		err := d.start()
		if err == nil {
			return d, nil
		}
		if attempt < 3 && strings.Contains(d.logTail(), "Address already in use") {
			continue
		}
		return fail(fmt.Errorf("starting dovecot: %w\n%s", err, d.logTail()))
	}
}

// Close stops Dovecot and removes its directory.
func (d *Dovecot) Close() error {
	var errs []error
	if err := d.stop(); err != nil {
		errs = append(errs, fmt.Errorf("stopping dovecot: %w\n%s", err, d.logTail()))
	}
	if err := os.RemoveAll(d.Dir); err != nil {
		errs = append(errs, fmt.Errorf("removing dovecot directory: %w", err))
	}
	return errors.Join(errs...)
}

// AddUser adds a mailbox user localpart@DovecotDomain with the password and
// returns the address, which is also the login name. Dovecot sees the user at
// once, also while running.
func (d *Dovecot) AddUser(t testing.TB, localpart, password string) (address string) {
	t.Helper()
	address, err := d.NewUser(localpart, password)
	if err != nil {
		t.Fatal(err)
	}
	return address
}

// NewUser is AddUser outside of a test: it returns an error instead of
// failing one.
func (d *Dovecot) NewUser(localpart, password string) (address string, err error) {
	if localpart == "" || strings.ContainsAny(localpart, ":@/\r\n\t ") {
		return "", fmt.Errorf("dovecot: invalid localpart %q", localpart)
	}
	if password == "" || strings.ContainsAny(password, ":\r\n") {
		return "", fmt.Errorf("dovecot: invalid password %q: must be non-empty without ':' or line breaks", password)
	}
	address = localpart + "@" + DovecotDomain

	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.users[address]; ok {
		return "", fmt.Errorf("dovecot: user %s already exists", address)
	}
	d.users[address] = password
	if err := d.writeUser(address, password); err != nil {
		return "", fmt.Errorf("dovecot: adding user %s: %w", address, err)
	}
	return address, nil
}

// Password returns the password AddUser set for address.
func (d *Dovecot) Password(t testing.TB, address string) string {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	password, ok := d.users[address]
	if !ok {
		t.Fatalf("dovecot: no user %s", address)
	}
	return password
}

// TLSConfig returns a client TLS configuration that trusts CACertPEM and
// expects Host.
func (d *Dovecot) TLSConfig() *tls.Config {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(d.CACertPEM)
	return &tls.Config{RootCAs: pool, ServerName: d.Host, MinVersion: tls.VersionTLS12}
}

// Addr returns Host:port for one of the ports.
func (d *Dovecot) Addr(port int) string {
	return net.JoinHostPort(d.Host, strconv.Itoa(port))
}

// DialIMAPS connects over implicit TLS and logs in as address, which
// AddUser created. The client is closed at the end of the test.
func (d *Dovecot) DialIMAPS(t testing.TB, address string, options *imapclient.Options) *imapclient.Client {
	t.Helper()
	var opts imapclient.Options
	if options != nil {
		opts = *options
	}
	if opts.TLSConfig == nil {
		opts.TLSConfig = d.TLSConfig()
	}
	c, err := imapclient.DialTLS(d.Addr(d.IMAPSPort), &opts)
	if err != nil {
		t.Fatalf("dovecot: dialing imaps: %v\n%s", err, d.logTail())
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Login(address, d.Password(t, address)).Wait(); err != nil {
		t.Fatalf("dovecot: logging in as %s: %v\n%s", address, err, d.logTail())
	}
	return c
}

// Append stores raw in folder of address's mailbox through IMAP over TLS,
// creating the folder if needed, and returns the message's UID.
func (d *Dovecot) Append(t testing.TB, address, folder string, raw []byte) uint32 {
	t.Helper()
	if d.oauth2URL != "" {
		return d.save(t, address, folder, raw)
	}
	c := d.DialIMAPS(t, address, nil)
	defer c.Close()

	data, err := dovecotAppend(c, folder, raw)
	var imapErr *imap.Error
	if errors.As(err, &imapErr) && imapErr.Code == imap.ResponseCodeTryCreate {
		if err := c.Create(folder, nil).Wait(); err != nil {
			t.Fatalf("dovecot: creating folder %q for %s: %v", folder, address, err)
		}
		data, err = dovecotAppend(c, folder, raw)
	}
	if err != nil {
		t.Fatalf("dovecot: appending to %q for %s: %v\n%s", folder, address, err, d.logTail())
	}
	if data.UID == 0 {
		t.Fatalf("dovecot: appending to %q for %s: no APPENDUID in the response", folder, address)
	}
	if err := c.Logout().Wait(); err != nil {
		t.Fatalf("dovecot: logging out: %v", err)
	}
	return uint32(data.UID)
}

func dovecotAppend(c *imapclient.Client, folder string, raw []byte) (*imap.AppendData, error) {
	cmd := c.Append(folder, int64(len(raw)), nil)
	if _, err := cmd.Write(raw); err != nil {
		return nil, err
	}
	if err := cmd.Close(); err != nil {
		return nil, err
	}
	return cmd.Wait()
}

// save stores raw in folder of address's mailbox with doveadm save (for
// an instance that refuses password logins) and returns its UID.
func (d *Dovecot) save(t testing.TB, address, folder string, raw []byte) uint32 {
	t.Helper()
	d.doveadm(t, raw, "save", "-u", address, "-m", folder)
	out := d.Doveadm(t, "-f", "tab", "fetch", "-u", address, "uid", "mailbox", folder, "all")
	var last uint32
	for i, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if i == 0 {
			continue // the header row
		}
		if uid, err := strconv.ParseUint(strings.TrimSpace(line), 10, 32); err == nil && uint32(uid) > last {
			last = uint32(uid)
		}
	}
	if last == 0 {
		t.Fatalf("dovecot: saving to %q for %s: no message found after doveadm save:\n%s", folder, address, out)
	}
	return last
}

// Doveadm runs doveadm with args against this instance and returns its
// standard output; for example
//
//	d.Doveadm(t, "mailbox", "delete", "-u", address, "INBOX/Sub")
//	d.Doveadm(t, "search", "-u", address, "mailbox", "INBOX", "all")
//
// Commands that look up users need the instance running.
func (d *Dovecot) Doveadm(t testing.TB, args ...string) string {
	t.Helper()
	return d.doveadm(t, nil, args...)
}

// doveadm runs doveadm with args and stdin as its standard input.
func (d *Dovecot) doveadm(t testing.TB, stdin []byte, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, d.doveadmBin, append([]string{"-c", d.ConfigPath}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	if err := cmd.Run(); err != nil {
		t.Fatalf("doveadm %s: %v\nstdout: %s\nstderr: %s\n%s",
			strings.Join(args, " "), err, stdout.String(), stderr.String(), d.logTail())
	}
	return stdout.String()
}

// Stop stops Dovecot, dropping every connection, and waits until its ports
// are free. The mail and users stay for Start.
func (d *Dovecot) Stop(t testing.TB) {
	t.Helper()
	if err := d.stop(); err != nil {
		t.Fatalf("stopping dovecot: %v\n%s", err, d.logTail())
	}
}

// Start starts a stopped Dovecot again on the same ports with the same mail.
func (d *Dovecot) Start(t testing.TB) {
	t.Helper()
	if err := d.start(); err != nil {
		t.Fatalf("starting dovecot: %v\n%s", err, d.logTail())
	}
}

// Log returns Dovecot's log so far.
func (d *Dovecot) Log() string {
	b, err := os.ReadFile(d.LogPath)
	if err != nil {
		return fmt.Sprintf("(reading %s: %v)", d.LogPath, err)
	}
	return string(b)
}

// logTail returns the end of the log and of the master's own output, for
// failure messages.
func (d *Dovecot) logTail() string {
	log := d.Log()
	if len(log) > dovecotLogTail {
		log = "…" + log[len(log)-dovecotLogTail:]
	}
	s := "dovecot log " + d.LogPath + ":\n" + log
	d.mu.Lock()
	output := d.output
	d.mu.Unlock()
	if output != nil {
		if out := output.String(); out != "" {
			s += "\ndovecot output:\n" + out
		}
	}
	return s
}

// removeStaleDovecotDirs removes the directories of instances whose test
// binary was killed before its cleanup could (Dovecot itself dies with the
// test binary). A directory is stale when no master runs on it and neither
// it nor the log has changed for ten minutes.
func removeStaleDovecotDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dovecotDirPrefix+"*"))
	for _, dir := range dirs {
		fi, err := os.Stat(dir)
		if err != nil || !fi.IsDir() || time.Since(fi.ModTime()) < 10*time.Minute {
			continue
		}
		if fi, err := os.Stat(filepath.Join(dir, "dovecot.log")); err == nil && time.Since(fi.ModTime()) < 10*time.Minute {
			continue
		}
		if pidFile, err := os.ReadFile(filepath.Join(dir, "run", "master.pid")); err == nil {
			pid, err := strconv.Atoi(strings.TrimSpace(string(pidFile)))
			if err != nil || pid <= 0 || syscall.Kill(pid, 0) != syscall.ESRCH {
				continue // running, or not ours to judge
			}
		}
		_ = os.RemoveAll(dir)
	}
}

// dovecotFindProgram returns the path of program name, looked up in PATH,
// else fallback if it exists (sbin is often missing from a user's PATH).
func dovecotFindProgram(name, fallback string) string {
	if path, err := exec.LookPath(name); err == nil {
		return path
	}
	if _, err := os.Stat(fallback); err == nil {
		return fallback
	}
	return ""
}

// dovecotHasProtocols reports whether the imap and pop3 services are
// installed (dovecot-core alone has neither), as far as it can tell.
func dovecotHasProtocols() bool {
	for _, dir := range []string{"/usr/lib/dovecot", "/usr/libexec/dovecot"} {
		if _, err := os.Stat(dir); err != nil {
			continue
		}
		for _, service := range []string{"imap", "pop3", "imap-login", "pop3-login"} {
			if _, err := os.Stat(filepath.Join(dir, service)); err != nil {
				return false
			}
		}
		return true
	}
	return true // unknown layout: let the start say what is missing
}

// setUp chooses the host and the mail user and creates the certificates
// and the users and mail directories.
func (d *Dovecot) setUp() error {
	d.Host = "127.0.0.1"
	if l, err := net.Listen("tcp", "127.0.0.2:0"); err == nil {
		_ = l.Close()
		d.Host = "127.0.0.2"
	}
	d.PlaintextRefused = d.Host != "127.0.0.1"

	// The auth process runs as the dovecot user and the mail processes as
	// the mail user: both must reach into the directory.
	if err := os.Chmod(d.Dir, 0o755); err != nil {
		return err
	}
	d.ConfigPath = filepath.Join(d.Dir, "dovecot.conf")
	d.LogPath = filepath.Join(d.Dir, "dovecot.log")
	d.usersDir = filepath.Join(d.Dir, "users")
	d.mailDir = filepath.Join(d.Dir, "mail")

	caPEM, certPEM, keyPEM, err := dovecotCertificates(d.Host)
	if err != nil {
		return fmt.Errorf("generating certificates: %w", err)
	}
	d.CACertPEM = caPEM
	if err := os.WriteFile(filepath.Join(d.Dir, "cert.pem"), certPEM, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(d.Dir, "key.pem"), keyPEM, 0o600); err != nil {
		return err
	}
	if err := os.Mkdir(d.usersDir, 0o755); err != nil {
		return err
	}
	if d.mailUser, err = dovecotMailUser(); err != nil {
		return err
	}
	if err := os.Mkdir(d.mailDir, 0o700); err != nil {
		return err
	}
	return os.Chown(d.mailDir, d.mailUser.uid, d.mailUser.gid)
}

// dovecotUser is the user the mail processes run as.
type dovecotUser struct {
	uid, gid    int
	name, group string
}

// dovecotMailUser returns the user the mail processes run as. Dovecot
// refuses uid 0 for mail ("userdb returned 0 as uid"), so as root that is
// nobody; otherwise Dovecot runs entirely as the current user.
func dovecotMailUser() (dovecotUser, error) {
	u, err := user.Current()
	if err != nil {
		return dovecotUser{}, fmt.Errorf("looking up the current user: %w", err)
	}
	if os.Geteuid() == 0 {
		if u, err = user.Lookup("nobody"); err != nil {
			return dovecotUser{}, fmt.Errorf("looking up user nobody to own the test mail: %w", err)
		}
	}
	g, err := user.LookupGroupId(u.Gid)
	if err != nil {
		return dovecotUser{}, fmt.Errorf("looking up group %s of user %s: %w", u.Gid, u.Username, err)
	}
	mu := dovecotUser{name: u.Username, group: g.Name}
	if mu.uid, err = strconv.Atoi(u.Uid); err != nil {
		return dovecotUser{}, fmt.Errorf("uid %q: %w", u.Uid, err)
	}
	if mu.gid, err = strconv.Atoi(u.Gid); err != nil {
		return dovecotUser{}, fmt.Errorf("gid %q: %w", u.Gid, err)
	}
	return mu, nil
}

// writeUser writes address's passwd-file. Each user has a file of its own:
// Dovecot stats a passwd-file at most once a second, so a user added to a
// shared file right after a login could stay unknown for up to a second,
// while a file it has not seen before is read at the first lookup. The
// rename makes the file appear whole.
func (d *Dovecot) writeUser(address, password string) error {
	path := filepath.Join(d.usersDir, address)
	line := fmt.Sprintf("%s:{PLAIN}%s::::::\n", address, password)
	if err := os.WriteFile(path+".tmp", []byte(line), 0o644); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}

// choosePorts picks four distinct free ports on Host.
func (d *Dovecot) choosePorts() error {
	var ports []int
	for range 4 {
		l, err := net.Listen("tcp", net.JoinHostPort(d.Host, "0"))
		if err != nil {
			return err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	d.IMAPPort, d.IMAPSPort, d.POP3Port, d.POP3SPort = ports[0], ports[1], ports[2], ports[3]
	return nil
}

// writeConfig writes a complete dovecot.conf: nothing from /etc/dovecot is
// read.
func (d *Dovecot) writeConfig() error {
	var privileges string
	if os.Geteuid() != 0 {
		// Without root Dovecot can neither switch users nor chroot.
		privileges = fmt.Sprintf(`default_login_user = %[1]s
default_internal_user = %[1]s
default_internal_group = %[2]s
service anvil {
  chroot =
}
service ipc {
  chroot =
}
`, d.mailUser.name, d.mailUser.group)
	}
	mechanisms := "auth_mechanisms = plain login"
	passdb := fmt.Sprintf(`passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%%u %s/users/%%u
}`, d.Dir)
	if d.oauth2URL != "" {
		// Only tokens, each asked about at every login.
		mechanisms = "auth_mechanisms = xoauth2 oauthbearer\nauth_cache_size = 0"
		ext := filepath.Join(d.Dir, "dovecot-oauth2.conf.ext")
		// username_format %Lu (the default) compares the lower-cased
		// login name with the introspected username.
		oauthConf := fmt.Sprintf(`introspection_mode = post
introspection_url = %s
force_introspection = yes
username_attribute = username
active_attribute = active
active_value = true
timeout_msecs = 10000
`, d.oauth2URL)
		if err := os.WriteFile(ext, []byte(oauthConf), 0o644); err != nil {
			return err
		}
		passdb = fmt.Sprintf(`passdb {
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = %s
}`, ext)
	}
	conf := fmt.Sprintf(`# Written by mailtrigger's internal/testenv for one test.
instance_name = %[12]s
base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
%[2]s
protocols = imap pop3
listen = %[3]s
ssl = required
disable_plaintext_auth = yes
ssl_cert = <%[1]s/cert.pem
ssl_key = <%[1]s/key.pem
%[13]s
auth_verbose = yes
# A failed login is answered at the next 0.5 s tick instead of after 2 s.
# (nodelay=yes does not help: it is dropped with a wrong password.)
auth_failure_delay = 0
first_valid_uid = %[4]d
first_valid_gid = %[5]d
mail_location = maildir:~/Maildir
mail_fsync = never
# IDLE sees new mail through inotify; this is only the fallback.
mailbox_idle_check_interval = 1 secs
namespace inbox {
  inbox = yes
  separator = /
}
%[14]s
userdb {
  driver = passwd-file
  args = username_format=%%u %[1]s/users/%%u
  default_fields = uid=%[4]d gid=%[5]d home=%[6]s/%%d/%%n
}
protocol imap {
  # The default 10 is easily reached by tests with several clients.
  mail_max_userip_connections = 1000
}
protocol pop3 {
  mail_max_userip_connections = 1000
}
# No growing delay for logins from an address that failed to log in:
# tests try wrong passwords and then log in again at once. The auth process
# cannot connect to a socket of mode 0 and so runs without penalties.
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
# One long-lived login process per protocol, connected to auth before the
# first client, instead of a process per connection.
service imap-login {
  service_count = 0
  process_min_avail = 1
%[7]s  inet_listener imap {
    port = %[8]d
  }
  inet_listener imaps {
    port = %[9]d
    ssl = yes
  }
}
service pop3-login {
  service_count = 0
  process_min_avail = 1
%[7]s  inet_listener pop3 {
    port = %[10]d
  }
  inet_listener pop3s {
    port = %[11]d
    ssl = yes
  }
}
`, d.Dir, privileges, d.Host, d.mailUser.uid, d.mailUser.gid, d.mailDir, dovecotLoginChroot(),
		d.IMAPPort, d.IMAPSPort, d.POP3Port, d.POP3SPort, filepath.Base(d.Dir), mechanisms, passdb)
	return os.WriteFile(d.ConfigPath, []byte(conf), 0o644)
}

func dovecotLoginChroot() string {
	if os.Geteuid() != 0 {
		return "  chroot =\n"
	}
	return ""
}

// start runs the master in the foreground as a child of the test binary and
// waits until it greets on IMAP and POP3.
func (d *Dovecot) start() error {
	d.mu.Lock()
	if d.cmd != nil {
		d.mu.Unlock()
		return errors.New("already running")
	}
	output := &dovecotOutput{}
	cmd := exec.Command(d.dovecotBin, "-F", "-c", d.ConfigPath)
	cmd.Dir = d.Dir
	cmd.Stdout = output
	cmd.Stderr = output
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Its children share the group, so that stop reaches them all.
		Setpgid: true,
		// The master, and through it every child, goes when the test
		// binary dies, even by SIGKILL.
		Pdeathsig: syscall.SIGTERM,
	}
	started := make(chan error, 1)
	exited := make(chan struct{})
	go func() {
		// Pdeathsig fires when the thread that started the child ends,
		// not the process: keep that thread until the master exits.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		defer close(exited)
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		_ = cmd.Wait()
	}()
	if err := <-started; err != nil {
		d.mu.Unlock()
		return err
	}
	d.cmd, d.exited, d.output = cmd, exited, output
	d.mu.Unlock()

	if err := d.waitReady(exited); err != nil {
		d.halt()
		return err
	}
	return nil
}

// waitReady waits until the IMAP port sends its real greeting (the login
// process says "Waiting for authentication process" first while auth starts)
// and the POP3 port greets; all listeners are bound together by the master.
func (d *Dovecot) waitReady(exited <-chan struct{}) error {
	deadline := time.Now().Add(dovecotReadyTimeout)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("dovecot exited during start")
		default:
		}
		lastErr = dovecotGreets(d.Addr(d.IMAPPort), "* OK [CAPABILITY ", deadline)
		if lastErr == nil {
			lastErr = dovecotGreets(d.Addr(d.POP3Port), "+OK ", deadline)
		}
		if lastErr == nil {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("not ready within %v: %w", dovecotReadyTimeout, lastErr)
}

// dovecotGreets connects to addr and reads lines until one starts with prefix.
func dovecotGreets(addr, prefix string, deadline time.Time) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	if d := time.Now().Add(2 * time.Second); d.Before(deadline) {
		deadline = d
	}
	if err := conn.SetDeadline(deadline); err != nil {
		return err
	}
	var buf []byte
	chunk := make([]byte, 512)
	for {
		n, err := conn.Read(chunk)
		buf = append(buf, chunk[:n]...)
		for line := range strings.Lines(string(buf)) {
			if strings.HasPrefix(line, prefix) {
				return nil
			}
		}
		if err != nil {
			return fmt.Errorf("greeting from %s: got %q: %w", addr, buf, err)
		}
	}
}

// stop stops a running Dovecot and waits until its ports can be bound
// again: a Start right after must not find them taken.
func (d *Dovecot) stop() error {
	if !d.halt() {
		return nil
	}
	deadline := time.Now().Add(dovecotReadyTimeout)
	for _, port := range []int{d.IMAPPort, d.IMAPSPort, d.POP3Port, d.POP3SPort} {
		for {
			l, err := net.Listen("tcp", d.Addr(port))
			if err == nil {
				_ = l.Close()
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("port %d still bound after stop: %w", port, err)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return nil
}

// halt ends the master and its children, if running, and reports whether
// they were.
func (d *Dovecot) halt() bool {
	d.mu.Lock()
	cmd, exited := d.cmd, d.exited
	d.cmd = nil
	d.mu.Unlock()
	if cmd == nil {
		return false
	}
	pgid := cmd.Process.Pid
	// Signal the whole group: the master alone, which signals its children
	// itself, takes a second to wait for them. Even so the master, seeing
	// a child alive, sometimes sleeps a second before it looks again: it
	// gets a short while (all children have been told to stop), then is
	// killed with them, as a crashed server would be.
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(dovecotStopGrace):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-exited
		// A killed master leaves its pid file, which a new master would
		// believe if the pid were reused.
		_ = os.Remove(filepath.Join(d.Dir, "run", "master.pid"))
	}
	return true
}

// Certificates returns a new throwaway CA certificate and a server
// certificate and key it signed, valid for host, 127.0.0.1, 127.0.0.2 and
// localhost, all PEM: for test servers of the tests' own.
func Certificates(host string) (caPEM, certPEM, keyPEM []byte, err error) {
	return dovecotCertificates(host)
}

// dovecotCertificates returns a new CA certificate and a server certificate
// and key it signed, valid for host, 127.0.0.1, 127.0.0.2 and localhost.
func dovecotCertificates(host string) (caPEM, certPEM, keyPEM []byte, err error) {
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	caTemplate := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "mailtrigger test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, nil, nil, err
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	ips := []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("127.0.0.2")}
	if ip := net.ParseIP(host); ip != nil && !slices.ContainsFunc(ips, ip.Equal) {
		ips = append(ips, ip)
	}
	template := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  ips,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, template, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, nil, err
	}
	caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	return caPEM, certPEM, keyPEM, nil
}

// dovecotOutput is a bytes.Buffer safe for the process's writes and the
// test's reads.
type dovecotOutput struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *dovecotOutput) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *dovecotOutput) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
