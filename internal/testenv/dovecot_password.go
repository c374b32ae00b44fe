package testenv

import (
	"context"
	"fmt"
	"os/exec"
	"testing"
	"time"

	"mailtrigger/internal/testwait"
)

// SetPassword changes the password of address, a user AddUser added, and
// returns once Dovecot's authentication takes the new one (it stats a
// passwd-file at most once a second: a login in that second would still
// get in with the old one). Open sessions stay logged in (Doveadm "kick"
// ends them).
func (d *Dovecot) SetPassword(t testing.TB, address, password string) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.users[address]; !ok {
		t.Fatalf("dovecot: no user %s", address)
	}
	d.users[address] = password
	if err := d.writeUser(address, password); err != nil {
		t.Fatalf("dovecot: setting the password of %s: %v", address, err)
	}
	err := testwait.UntilErr(15*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, d.doveadmBin, "-c", d.ConfigPath, "auth", "test", address, password).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("dovecot: the new password of %s is not taken after 15s: %v", address, err)
	}
}
