package testenv

import "testing"

// SetPassword changes the password of address, a user AddUser added. New
// logins see it within about a second (Dovecot stats a passwd-file at most
// once a second); open sessions stay logged in (Doveadm "kick" ends them).
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
}
