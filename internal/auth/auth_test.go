package auth

import (
	"strings"
	"testing"
)

func TestPasswordHash(t *testing.T) {
	h, err := HashPassword("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(h, "correct horse") || !strings.HasPrefix(h, "$argon2id$") {
		t.Errorf("got %q", h)
	}
	if !CheckPassword(h, "correct horse") {
		t.Error("the right password does not match")
	}
	for _, wrong := range []string{"", "correct horse ", "Correct horse"} {
		if CheckPassword(h, wrong) {
			t.Errorf("%q matches", wrong)
		}
	}
	for _, bad := range []string{"", "$argon2id$", "plain", "$argon2id$v=19$m=1,t=1,p=1$!!$!!"} {
		if CheckPassword(bad, "x") {
			t.Errorf("malformed hash %q matches", bad)
		}
	}
	if _, err := HashPassword(""); err == nil {
		t.Error("an empty password was hashed")
	}
}

func TestTokens(t *testing.T) {
	a, ha := NewToken()
	b, hb := NewToken()
	if a == b || ha == hb || !strings.HasPrefix(a, TokenPrefix) || len(a) < 40 {
		t.Errorf("got %q %q", a, b)
	}
	if HashToken(a) != ha || strings.Contains(ha, a) {
		t.Error("hash is not the SHA-256 of the token")
	}
}
