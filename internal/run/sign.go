package run

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The Standard Webhooks headers every delivery carries.
const (
	HeaderID        = "Webhook-Id"
	HeaderTimestamp = "Webhook-Timestamp"
	HeaderSignature = "Webhook-Signature"
)

// SecretPrefix starts every signing secret.
const SecretPrefix = "whsec_"

// Errors Verify returns, wrapped.
var (
	ErrBadSecret        = errors.New("signing secret is not whsec_ followed by base64")
	ErrMissingHeaders   = errors.New("webhook-id, webhook-timestamp or webhook-signature header missing")
	ErrBadTimestamp     = errors.New("webhook-timestamp outside the tolerance")
	ErrInvalidSignature = errors.New("no valid signature")
)

// NewSecret returns a new signing secret: whsec_ and the base64 of 32 random
// bytes.
func NewSecret() string {
	key := make([]byte, 32)
	rand.Read(key) // never fails (crypto/rand documents it)
	return SecretPrefix + base64.StdEncoding.EncodeToString(key)
}

// secretKey returns the HMAC key of secret: the base64-decoded part after
// whsec_ (the prefix may be left out, as the Standard Webhooks libraries
// allow).
func secretKey(secret string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, SecretPrefix))
	if err != nil || len(key) == 0 {
		return nil, ErrBadSecret
	}
	return key, nil
}

func mac(key []byte, id, ts string, body []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(id + "." + ts + "."))
	h.Write(body)
	return h.Sum(nil)
}

// Sign returns the webhook-signature header value for a delivery with id
// (webhook-id) at ts (webhook-timestamp, Unix seconds) of body, per the
// Standard Webhooks convention: "v1," and the base64 HMAC-SHA256, keyed with
// the secret's decoded bytes, of "id.timestamp.body".
func Sign(secret, id string, ts time.Time, body []byte) (string, error) {
	key, err := secretKey(secret)
	if err != nil {
		return "", err
	}
	return "v1," + base64.StdEncoding.EncodeToString(mac(key, id, strconv.FormatInt(ts.Unix(), 10), body)), nil
}

// Verify checks a delivery as its receiver does: the headers are present,
// webhook-timestamp is within tolerance of now (either way), and one of the
// space-separated signatures in webhook-signature is a valid v1 signature of
// body.
func Verify(secret string, header http.Header, body []byte, tolerance time.Duration) error {
	key, err := secretKey(secret)
	if err != nil {
		return err
	}
	id, ts, sigs := header.Get(HeaderID), header.Get(HeaderTimestamp), header.Get(HeaderSignature)
	if id == "" || ts == "" || sigs == "" {
		return ErrMissingHeaders
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("webhook-timestamp %q: %w", ts, ErrBadTimestamp)
	}
	if d := time.Since(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("webhook-timestamp %s is %s away: %w", ts, d.Round(time.Second), ErrBadTimestamp)
	}
	want := mac(key, id, ts, body)
	for _, s := range strings.Fields(sigs) {
		version, b64, ok := strings.Cut(s, ",")
		if !ok || version != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(b64)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return ErrInvalidSignature
}
