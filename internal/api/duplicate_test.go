package api_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
)

func TestDuplicate(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st)
		ctx := context.Background()

		in := genericInput("support")
		in.Description = p("the support mailbox")
		in.Port = p(143)
		in.Folder = p("Support/Incoming")
		in.AfterProcessing = p("move")
		in.MoveTo = p("Support/Done")
		in.PollInterval = p(17)
		in.Backlog = p("all")
		orig, err := h.c.CreateIMAP(ctx, in)
		if err != nil {
			t.Fatal(err)
		}

		// Refused without the secret, and nothing created.
		before := h.snapshot()
		_, err = h.c.DuplicateIMAP(ctx, "support", map[string]string{})
		if ce := apiErr(t, err); ce.Status != http.StatusBadRequest || ce.Fields["password"] == "" {
			t.Errorf("got %+v, want 400 on password", ce)
		}
		if h.snapshot() != before {
			t.Error("a refused duplicate created something")
		}

		// Every field but the secret is kept; the copy is disabled.
		var copies []imapconf.View
		for i := range 3 {
			cp, err := h.c.DuplicateIMAP(ctx, "support", map[string]string{"password": "copy-pw"})
			if err != nil {
				t.Fatalf("copy %d: %v", i, err)
			}
			copies = append(copies, cp)
		}
		for i, want := range []string{"support_copied", "support_copied_2", "support_copied_3"} {
			cp := copies[i]
			if cp.Name != want {
				t.Errorf("copy %d: got name %q, want %q", i, cp.Name, want)
			}
			if cp.Enabled {
				t.Errorf("copy %s is enabled", cp.Name)
			}
			exp := orig
			exp.Name, exp.Enabled, exp.CreatedAt, exp.UpdatedAt = cp.Name, false, cp.CreatedAt, cp.UpdatedAt
			if cp != exp {
				t.Errorf("copy %d: got %+v,\nwant %+v", i, cp, exp)
			}
			stored, _ := st.GetIMAP(ctx, cp.Name)
			if stored.Password != "copy-pw" {
				t.Errorf("copy %s does not have the new password", cp.Name)
			}
		}
		// The original is untouched.
		if o, _ := st.GetIMAP(ctx, "support"); o.Password != "Gen-Secret-support" || !o.Enabled {
			t.Error("duplicating changed the original")
		}
		// A copy of a copy.
		if cp, err := h.c.DuplicateIMAP(ctx, "support_copied", map[string]string{"password": "x"}); err != nil || cp.Name != "support_copied_copied" {
			t.Errorf("copy of a copy: got %q, %v", cp.Name, err)
		}
		// An explicit name.
		if cp, err := h.c.DuplicateIMAP(ctx, "support", map[string]string{"password": "x", "name": "Chosen"}); err != nil || cp.Name != "Chosen" || cp.Enabled {
			t.Errorf("explicit name: got %+v, %v", cp, err)
		}
		// A name taken in another case is skipped.
		if _, err := h.c.CreateIMAP(ctx, genericInput("OTHER_COPIED")); err != nil {
			t.Fatal(err)
		}
		if _, err := h.c.CreateIMAP(ctx, genericInput("other")); err != nil {
			t.Fatal(err)
		}
		if cp, err := h.c.DuplicateIMAP(ctx, "other", map[string]string{"password": "x"}); err != nil || cp.Name != "other_copied_2" {
			t.Errorf("got %q, %v, want other_copied_2", cp.Name, err)
		}

		// Graph configurations need the client secret.
		if _, err := h.c.CreateIMAP(ctx, graphInput("graph")); err != nil {
			t.Fatal(err)
		}
		if cp, err := h.c.DuplicateIMAP(ctx, "graph", map[string]string{"clientSecret": "new-cs"}); err != nil || !cp.HasClientSecret || cp.TenantID != "contoso.onmicrosoft.com" {
			t.Errorf("graph copy: got %+v, %v", cp, err)
		}

		// So do generic IMAP and POP3 configurations with OAuth2: the
		// original's client secret is not copied, a password is no
		// substitute, and everything else is kept.
		for _, serverType := range []string{"imaps", "pop3s"} {
			name := "oauth_" + serverType
			in := genericInput(name)
			in.ServerType, in.Password = p(serverType), nil
			in.Auth, in.TokenURL, in.ClientID, in.ClientSecret = p("oauth2"), p("https://login.example.com/tenant/token"), p("app-id"), p("orig-cs")
			in.Scope = p("https://outlook.office365.com/.default")
			orig, err := h.c.CreateIMAP(ctx, in)
			if err != nil {
				t.Fatal(err)
			}
			before := h.snapshot()
			_, err = h.c.DuplicateIMAP(ctx, name, map[string]string{"password": "not-a-client-secret"})
			if ce := apiErr(t, err); ce.Status != http.StatusBadRequest || ce.Fields["clientSecret"] == "" {
				t.Errorf("%s: got %+v, want 400 on clientSecret", name, ce)
			}
			if h.snapshot() != before {
				t.Errorf("%s: a refused duplicate created something", name)
			}
			cp, err := h.c.DuplicateIMAP(ctx, name, map[string]string{"clientSecret": "copy-cs"})
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			exp := orig
			exp.Name, exp.Enabled, exp.CreatedAt, exp.UpdatedAt = cp.Name, false, cp.CreatedAt, cp.UpdatedAt
			if cp != exp || cp.HasPassword {
				t.Errorf("%s copy: got %+v,\nwant %+v", name, cp, exp)
			}
			stored, _ := st.GetIMAP(ctx, cp.Name)
			if stored.ClientSecret != "copy-cs" || stored.Password != "" {
				t.Errorf("%s copy: does not have the new client secret only", name)
			}
			if o, _ := st.GetIMAP(ctx, name); o.ClientSecret != "orig-cs" {
				t.Errorf("%s: duplicating changed the original's client secret", name)
			}
		}
	})
}

// TestDuplicateLongNames: names of 43 to 50 characters are shortened so the
// copy's name fits 50, for the first copy and the repeated ones.
func TestDuplicateLongNames(t *testing.T) {
	st := storetest.Open(t, store.SQLite)
	h := newHarness(t, st)
	ctx := context.Background()
	for n := 43; n <= 50; n++ {
		name := strings.Repeat(string(rune('a'+n-43)), n)
		if _, err := h.c.CreateIMAP(ctx, genericInput(name)); err != nil {
			t.Fatal(err)
		}
		want := []string{name[:43] + "_copied", name[:41] + "_copied_2", name[:41] + "_copied_3"}
		for i, w := range want {
			cp, err := h.c.DuplicateIMAP(ctx, name, map[string]string{"password": "x"})
			if err != nil {
				t.Fatalf("%d chars, copy %d: %v", n, i+1, err)
			}
			if cp.Name != w || len(cp.Name) > 50 {
				t.Errorf("%d chars, copy %d: got %q (%d), want %q", n, i+1, cp.Name, len(cp.Name), w)
			}
		}
	}
	// Ten copies of a 50-character name: the suffix _copied_10 still fits.
	name := strings.Repeat("z", 50)
	if _, err := h.c.CreateIMAP(ctx, genericInput(name)); err != nil {
		t.Fatal(err)
	}
	var last string
	for range 10 {
		cp, err := h.c.DuplicateIMAP(ctx, name, map[string]string{"password": "x"})
		if err != nil {
			t.Fatal(err)
		}
		last = cp.Name
	}
	if want := name[:40] + "_copied_10"; last != want {
		t.Errorf("tenth copy: got %q, want %q", last, want)
	}
}
