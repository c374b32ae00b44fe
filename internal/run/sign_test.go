package run_test

import (
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"mailtrigger/internal/run"
)

func TestNewSecret(t *testing.T) {
	a, b := run.NewSecret(), run.NewSecret()
	if a == b {
		t.Fatal("two secrets are equal")
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(a, "whsec_"))
	if !strings.HasPrefix(a, "whsec_") || err != nil || len(key) != 32 {
		t.Errorf("got %q (%d bytes, %v), want whsec_ and the base64 of 32 bytes", a, len(key), err)
	}
}

func TestSignErrors(t *testing.T) {
	for _, secret := range []string{"", "whsec_", "whsec_not base64!", "whsec_abc"} {
		if _, err := run.Sign(secret, "run_x", time.Now(), nil); !errors.Is(err, run.ErrBadSecret) {
			t.Errorf("secret %q: got %v, want ErrBadSecret", secret, err)
		}
	}
	// The prefix may be left out, as the Standard Webhooks libraries allow.
	with, _ := run.Sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "id", time.Unix(1, 0), []byte("b"))
	without, _ := run.Sign("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "id", time.Unix(1, 0), []byte("b"))
	if with == "" || with != without {
		t.Errorf("got %q and %q, want the same signature", with, without)
	}
}

func TestVerifyErrors(t *testing.T) {
	secret := run.NewSecret()
	body := []byte(`{}`)
	now := time.Now()
	cases := []struct {
		name   string
		header http.Header
		want   error
	}{
		{"missing", http.Header{}, run.ErrMissingHeaders},
		{"old", signed(t, secret, "run_a", now.Add(-time.Hour), body), run.ErrBadTimestamp},
		{"not a number", func() http.Header {
			h := signed(t, secret, "run_a", now, body)
			h.Set("Webhook-Timestamp", "soon")
			return h
		}(), run.ErrBadTimestamp},
		{"wrong version", func() http.Header {
			h := signed(t, secret, "run_a", now, body)
			h.Set("Webhook-Signature", "v2"+strings.TrimPrefix(h.Get("Webhook-Signature"), "v1"))
			return h
		}(), run.ErrInvalidSignature},
		{"garbage", func() http.Header {
			h := signed(t, secret, "run_a", now, body)
			h.Set("Webhook-Signature", "v1,%%% v1 ,")
			return h
		}(), run.ErrInvalidSignature},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := run.Verify(secret, c.header, body, 5*time.Minute); !errors.Is(err, c.want) {
				t.Errorf("got %v, want %v", err, c.want)
			}
		})
	}
	if err := run.Verify("whsec_!", signed(t, secret, "run_a", now, body), body, time.Minute); !errors.Is(err, run.ErrBadSecret) {
		t.Errorf("got %v, want ErrBadSecret", err)
	}
}
