// Package secret seals the secrets of IMAP configurations and flows (passwords,
// client secrets, webhook secrets) with AES-256-GCM, so that they are never
// stored in plaintext.
package secret

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// KeySize is the length of a key in bytes (AES-256).
const KeySize = 32

// Versions prefix every sealed value. version (1) binds the value to its
// field (the purpose); versionRow (2) binds it to its field and its row.
const (
	version    byte = 1
	versionRow byte = 2
)

// KeyFileName is the name of the key file created in the data directory when
// MAILTRIGGER_SECRET_KEY is not set.
const KeyFileName = "secret.key"

// ErrOpen is returned when a sealed value cannot be opened: a wrong key or a
// damaged value. It never carries the value itself.
var ErrOpen = errors.New("cannot open sealed secret (wrong MAILTRIGGER_SECRET_KEY, damaged value, or a value copied from another row)")

// Box seals and opens secrets with one key.
type Box struct {
	aead cipher.AEAD
}

// NewBox returns a Box for a 32-byte key.
func NewBox(key []byte) (*Box, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("secret key must be %d bytes, got %d", KeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("creating cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("creating gcm: %w", err)
	}
	return &Box{aead: aead}, nil
}

// Seal encrypts plaintext. purpose (for example "imap.password") is bound to
// the result as additional data, so a sealed value cannot be moved to another
// field. An empty plaintext seals to nil. Values stored in a row use SealRow;
// Seal remains for values sealed before rows were bound, and for tests.
func (b *Box) Seal(plaintext, purpose string) ([]byte, error) {
	return b.seal(plaintext, version, []byte(purpose))
}

func (b *Box) seal(plaintext string, v byte, ad []byte) ([]byte, error) {
	if plaintext == "" {
		return nil, nil
	}
	nonce := make([]byte, b.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("reading nonce: %w", err)
	}
	out := make([]byte, 0, 1+len(nonce)+len(plaintext)+b.aead.Overhead())
	out = append(out, v)
	out = append(out, nonce...)
	return b.aead.Seal(out, nonce, []byte(plaintext), ad), nil
}

// Open decrypts a value made by Seal with the same purpose. nil opens to "".
// A value made by SealRow does not open here.
func (b *Box) Open(sealed []byte, purpose string) (string, error) {
	return b.open(sealed, version, []byte(purpose))
}

// SealRow encrypts plaintext bound to its field (purpose) and to the row it
// is stored in (id, the row's primary key), so that a sealed value copied to
// another row, or another field, does not open. An empty plaintext seals to
// nil.
func (b *Box) SealRow(plaintext, purpose string, id int64) ([]byte, error) {
	return b.seal(plaintext, versionRow, rowData(purpose, id))
}

// OpenRow decrypts a value made by SealRow with the same purpose and id. nil
// opens to "". A value made by Seal (IsLegacy) does not open here: it must be
// re-sealed first (Open, then SealRow).
func (b *Box) OpenRow(sealed []byte, purpose string, id int64) (string, error) {
	return b.open(sealed, versionRow, rowData(purpose, id))
}

// IsLegacy reports whether sealed was made by Seal, bound to its field only.
func IsLegacy(sealed []byte) bool { return len(sealed) > 0 && sealed[0] == version }

func rowData(purpose string, id int64) []byte {
	return []byte(purpose + "\x00row=" + strconv.FormatInt(id, 10))
}

func (b *Box) open(sealed []byte, v byte, ad []byte) (string, error) {
	if len(sealed) == 0 {
		return "", nil
	}
	ns := b.aead.NonceSize()
	if len(sealed) < 1+ns+b.aead.Overhead() || sealed[0] != v {
		return "", ErrOpen
	}
	plain, err := b.aead.Open(nil, sealed[1:1+ns], sealed[1+ns:], ad)
	if err != nil {
		return "", ErrOpen
	}
	return string(plain), nil
}

// LoadKey returns the key from envKey (base64 of 32 bytes) when it is set,
// otherwise from the key file in dataDir, creating that file with mode 0600 and
// a random key when it does not exist yet. created reports the latter.
func LoadKey(envKey, dataDir string) (key []byte, created bool, err error) {
	if envKey != "" {
		key, err := decodeKey(strings.TrimSpace(envKey))
		if err != nil {
			return nil, false, fmt.Errorf("MAILTRIGGER_SECRET_KEY: %w", err)
		}
		return key, false, nil
	}
	path := filepath.Join(dataDir, KeyFileName)
	data, err := os.ReadFile(path)
	if err == nil {
		key, err := decodeKey(strings.TrimSpace(string(data)))
		if err != nil {
			return nil, false, fmt.Errorf("key file %s: %w", path, err)
		}
		return key, false, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, false, fmt.Errorf("reading key file: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, false, fmt.Errorf("creating data directory: %w", err)
	}
	key = make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, false, fmt.Errorf("generating key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			// Another process created it first: use that one.
			return LoadKey("", dataDir)
		}
		return nil, false, fmt.Errorf("creating key file: %w", err)
	}
	if _, err := f.WriteString(base64.StdEncoding.EncodeToString(key) + "\n"); err != nil {
		f.Close()
		return nil, false, fmt.Errorf("writing key file: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, false, fmt.Errorf("writing key file: %w", err)
	}
	return key, true, nil
}

func decodeKey(s string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		key, err = base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	}
	if err != nil {
		return nil, errors.New("not valid base64")
	}
	if len(key) != KeySize {
		return nil, fmt.Errorf("must decode to %d bytes, got %d", KeySize, len(key))
	}
	return key, nil
}
