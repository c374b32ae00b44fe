package secret

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestSealOpen(t *testing.T) {
	key := bytes.Repeat([]byte{7}, KeySize)
	b, err := NewBox(key)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := b.Seal("hunter2-app-password", "imap.password")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("hunter2")) {
		t.Fatal("sealed value contains the plaintext")
	}
	got, err := b.Open(sealed, "imap.password")
	if err != nil || got != "hunter2-app-password" {
		t.Fatalf("got %q, %v, want the plaintext", got, err)
	}
	again, _ := b.Seal("hunter2-app-password", "imap.password")
	if bytes.Equal(again, sealed) {
		t.Error("two seals of one value are equal: nonce reused")
	}
	if _, err := b.Open(sealed, "imap.clientSecret"); !errors.Is(err, ErrOpen) {
		t.Errorf("got %v, want ErrOpen for another purpose", err)
	}
	other, _ := NewBox(bytes.Repeat([]byte{8}, KeySize))
	if _, err := other.Open(sealed, "imap.password"); !errors.Is(err, ErrOpen) {
		t.Errorf("got %v, want ErrOpen for another key", err)
	}
	sealed[len(sealed)-1] ^= 1
	if _, err := b.Open(sealed, "imap.password"); !errors.Is(err, ErrOpen) {
		t.Errorf("got %v, want ErrOpen for a damaged value", err)
	}
	if s, _ := b.Seal("", "x"); s != nil {
		t.Errorf("got %v, want nil for an empty secret", s)
	}
	if got, err := b.Open(nil, "x"); got != "" || err != nil {
		t.Errorf("got %q, %v, want empty", got, err)
	}
}

func TestLoadKey(t *testing.T) {
	dir := t.TempDir()
	k1, created, err := LoadKey("", dir)
	if err != nil || !created || len(k1) != KeySize {
		t.Fatalf("got %d bytes, created %v, %v", len(k1), created, err)
	}
	fi, err := os.Stat(filepath.Join(dir, KeyFileName))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("got mode %v, want 0600", fi.Mode().Perm())
	}
	k2, created, err := LoadKey("", dir)
	if err != nil || created || !bytes.Equal(k1, k2) {
		t.Errorf("second load: got created %v, same key %v, %v", created, bytes.Equal(k1, k2), err)
	}
	env := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, KeySize))
	k3, _, err := LoadKey(env, dir)
	if err != nil || !bytes.Equal(k3, bytes.Repeat([]byte{1}, KeySize)) {
		t.Errorf("env key: got %v, %v", k3, err)
	}
	for _, bad := range []string{"not base64!!", base64.StdEncoding.EncodeToString([]byte("short"))} {
		if _, _, err := LoadKey(bad, dir); err == nil {
			t.Errorf("LoadKey(%q): got no error", bad)
		} else if bytes.Contains([]byte(err.Error()), []byte(bad)) {
			t.Errorf("error %q repeats the key", err)
		}
	}
}

func TestSealRowBindsTheRow(t *testing.T) {
	b, err := NewBox(make([]byte, KeySize))
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := b.SealRow("row-secret", "imap.password", 7)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := b.OpenRow(sealed, "imap.password", 7); err != nil || got != "row-secret" {
		t.Fatalf("got %q, %v, want the secret back", got, err)
	}
	for _, tc := range []struct {
		purpose string
		id      int64
	}{{"imap.password", 8}, {"imap.clientSecret", 7}, {"imap.password", 70}} {
		if _, err := b.OpenRow(sealed, tc.purpose, tc.id); !errors.Is(err, ErrOpen) {
			t.Errorf("%s of row %d: got %v, want ErrOpen", tc.purpose, tc.id, err)
		}
	}
	if _, err := b.Open(sealed, "imap.password"); !errors.Is(err, ErrOpen) {
		t.Errorf("a row-bound value opened without its row: %v", err)
	}
	legacy, _ := b.Seal("old", "imap.password")
	if !IsLegacy(legacy) || IsLegacy(sealed) || IsLegacy(nil) {
		t.Error("IsLegacy tells the versions apart wrongly")
	}
	if _, err := b.OpenRow(legacy, "imap.password", 7); !errors.Is(err, ErrOpen) {
		t.Errorf("a legacy value opened as row-bound: %v", err)
	}
}
