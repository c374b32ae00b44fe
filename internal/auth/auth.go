// Package auth issues and checks API tokens and hashes user passwords.
// Tokens are random, shown once and stored as SHA-256; passwords are stored
// as argon2id hashes.
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
)

// TokenPrefix starts every API token, so that a leaked one is recognisable.
const TokenPrefix = "mt_"

// NewToken returns a new random API token and the hash to store.
func NewToken() (token, hash string) {
	token = TokenPrefix + rand.Text() + rand.Text()
	return token, HashToken(token)
}

// HashToken returns the stored form of token.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// MinPasswordLen is the shortest password (in characters) accepted for a
// new or changed user password: the first admin's, the CLI's and the UI's.
// Passwords set before this rule keep working.
const MinPasswordLen = 12

// CheckNewPassword returns what is wrong with a new password, or "".
func CheckNewPassword(p string) string {
	if utf8.RuneCountInString(p) < MinPasswordLen {
		return fmt.Sprintf("must have at least %d characters", MinPasswordLen)
	}
	for _, r := range p {
		if unicode.IsControl(r) {
			return "must not contain control characters"
		}
	}
	if !utf8.ValidString(p) {
		return "must be valid UTF-8"
	}
	return ""
}

// RandomPassword returns a random password of 26 base32 characters.
func RandomPassword() string { return rand.Text() }

// argon2id parameters (RFC 9106 second recommended option, lighter memory).
const (
	argonTime    = 3
	argonMemory  = 64 * 1024
	argonThreads = 2
	argonKeyLen  = 32
)

// HashPassword returns an encoded argon2id hash of password.
func HashPassword(password string) (string, error) {
	if password == "" {
		return "", errors.New("empty password")
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("reading salt: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

// CheckPassword reports whether password matches the encoded hash.
func CheckPassword(encoded, password string) bool {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false
	}
	var version int
	var mem uint32
	var t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &mem, &t, &p); err != nil {
		return false
	}
	salt, err := base64.RawStdEncoding.DecodeString(parts[4])
	if err != nil {
		return false
	}
	want, err := base64.RawStdEncoding.DecodeString(parts[5])
	if err != nil || len(want) == 0 {
		return false
	}
	got := argon2.IDKey([]byte(password), salt, t, mem, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}
