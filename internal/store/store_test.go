package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/secret"
	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
	"mailtrigger/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func sampleIMAP(name string) imapconf.Config {
	return imapconf.Config{
		Name: name, ServerType: "imaps", Type: "generic", Description: "Süpport – inbox", Enabled: true,
		Host: "imap.example.com", Port: 993, Username: "support@example.com", Password: "PW-" + name + "-pässword",
		Folder: "INBOX", TLS: "implicit", AfterProcessing: "move", MoveTo: "Done", PollInterval: 30,
		Backlog: "unseen", Auth: "password",
	}
}

func TestOpenTwiceMigratesOnce(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		if err := s.Ready(context.Background()); err != nil {
			t.Fatalf("got %v, want ready", err)
		}
	})
	dir := t.TempDir()
	for i := range 2 {
		s, err := store.Open(context.Background(), store.Options{DataDir: dir, Box: storetest.Box(t)})
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		s.Close()
	}
}

func TestIMAPRoundTrip(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		c := sampleIMAP("Support_Inbox")
		c.CACert = "-----BEGIN CERTIFICATE-----\n..."
		if err := s.CreateIMAP(ctx, &c); err != nil {
			t.Fatal(err)
		}
		if c.ID == 0 || c.CreatedAt.IsZero() {
			t.Errorf("got id %d, created %v, want them set", c.ID, c.CreatedAt)
		}
		got, err := s.GetIMAP(ctx, "support_inbox")
		if err != nil {
			t.Fatal(err)
		}
		if !got.CreatedAt.Equal(c.CreatedAt) {
			t.Errorf("got created %v, want %v", got.CreatedAt, c.CreatedAt)
		}
		got.CreatedAt, got.UpdatedAt = c.CreatedAt, c.UpdatedAt
		if got != c {
			t.Errorf("got %+v,\nwant %+v", got, c)
		}

		g := imapconf.Config{Name: "graph", ServerType: "imaps", Type: "msgraph", Enabled: false, Username: "a@b.example",
			TenantID: "contoso.onmicrosoft.com", ClientID: "11111111-2222-3333-4444-555555555555", ClientSecret: "CS-graph",
			Folder: "INBOX", AfterProcessing: "none", PollInterval: 60, Backlog: "new",
			GraphURL: imapconf.DefaultGraphURL, AuthorityURL: imapconf.DefaultAuthorityURL}
		if err := s.CreateIMAP(ctx, &g); err != nil {
			t.Fatal(err)
		}
		gg, err := s.GetIMAP(ctx, "GRAPH")
		if err != nil {
			t.Fatal(err)
		}
		if gg.ClientSecret != "CS-graph" || gg.Password != "" || gg.Enabled {
			t.Errorf("got %+v", gg)
		}
	})
}

func TestIMAPNamesUniqueCaseInsensitively(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		a, b := sampleIMAP("inbox"), sampleIMAP("INBOX")
		if err := s.CreateIMAP(ctx, &a); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateIMAP(ctx, &b); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("got %v, want store.ErrConflict", err)
		}
		c := sampleIMAP("other")
		if err := s.CreateIMAP(ctx, &c); err != nil {
			t.Fatal(err)
		}
		c.Name = "Inbox"
		if err := s.UpdateIMAP(ctx, &c); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("rename onto a taken name: got %v, want store.ErrConflict", err)
		}
		c.Name = "OTHER_renamed"
		if err := s.UpdateIMAP(ctx, &c); err != nil {
			t.Fatalf("rename: %v", err)
		}
		if _, err := s.GetIMAP(ctx, "other"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("old name: got %v, want store.ErrNotFound", err)
		}
		if got, err := s.GetIMAP(ctx, "other_renamed"); err != nil || got.Name != "OTHER_renamed" {
			t.Errorf("got %q, %v, want the new name as written", got.Name, err)
		}
		c.ID = 999999
		if err := s.UpdateIMAP(ctx, &c); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("update of a missing id: got %v, want store.ErrNotFound", err)
		}
	})
}

func TestListIMAPPages(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		for _, n := range []string{"delta", "Alpha", "charlie", "Bravo", "echo"} {
			c := sampleIMAP(n)
			if err := s.CreateIMAP(ctx, &c); err != nil {
				t.Fatal(err)
			}
		}
		var names []string
		after := ""
		for range 10 {
			page, err := s.ListIMAP(ctx, after, 2)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) == 0 {
				break
			}
			for _, c := range page {
				names = append(names, c.Name)
			}
			after = page[len(page)-1].Name
		}
		if got, want := strings.Join(names, ","), "Alpha,Bravo,charlie,delta,echo"; got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	})
}

func TestDeleteIMAPRefusedWhileFlowsNameIt(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		c := sampleIMAP("support")
		if err := s.CreateIMAP(ctx, &c); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"invoices", "Alerts"} {
			if err := s.CreateFlow(ctx, &store.FlowRecord{Name: f, IMAPID: c.ID, Enabled: true, Definition: "{}"}); err != nil {
				t.Fatal(err)
			}
		}
		dup := store.FlowRecord{Name: "INVOICES", IMAPID: c.ID, Definition: "{}"}
		if err := s.CreateFlow(ctx, &dup); !errors.Is(err, store.ErrConflict) {
			t.Errorf("got %v, want ErrConflict for a flow name taken in another case", err)
		}
		err := s.DeleteIMAP(ctx, "SUPPORT")
		var inUse *store.InUseError
		if !errors.As(err, &inUse) {
			t.Fatalf("got %v, want store.InUseError", err)
		}
		if got := strings.Join(inUse.Flows, ","); got != "Alerts,invoices" {
			t.Errorf("got flows %s, want Alerts,invoices", got)
		}
		if _, err := s.GetIMAP(ctx, "support"); err != nil {
			t.Errorf("refused delete removed it: %v", err)
		}
		for _, f := range []string{"invoices", "alerts"} {
			if err := s.DeleteFlow(ctx, f); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.DeleteIMAP(ctx, "support"); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteIMAP(ctx, "support"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("got %v, want store.ErrNotFound", err)
		}
	})
}

func TestTokensAndUsers(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		if err := s.CreateToken(ctx, "cli", "hash1"); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateToken(ctx, "cli", "hash2"); !errors.Is(err, store.ErrConflict) {
			t.Errorf("got %v, want store.ErrConflict", err)
		}
		tok, err := s.TokenByHash(ctx, "hash1")
		if err != nil || tok.Name != "cli" || tok.LastUsedAt != nil {
			t.Fatalf("got %+v, %v", tok, err)
		}
		if err := s.TouchToken(ctx, tok.ID, time.Now()); err != nil {
			t.Fatal(err)
		}
		toks, err := s.ListTokens(ctx)
		if err != nil || len(toks) != 1 || toks[0].LastUsedAt == nil {
			t.Fatalf("got %+v, %v", toks, err)
		}
		if err := s.RevokeToken(ctx, "cli"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.TokenByHash(ctx, "hash1"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("got %v, want store.ErrNotFound after revoke", err)
		}
		if err := s.RevokeToken(ctx, "cli"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("got %v, want store.ErrNotFound", err)
		}

		created, err := s.CreateFirstUser(ctx, "admin", "h1")
		if err != nil || !created {
			t.Fatalf("got %v, %v", created, err)
		}
		created, err = s.CreateFirstUser(ctx, "admin", "h2")
		if err != nil || created {
			t.Fatalf("second first user: got %v, %v", created, err)
		}
		if created, err := s.SetUserPassword(ctx, "admin", "h3"); err != nil || created {
			t.Fatalf("got %v, %v", created, err)
		}
		if h, _ := s.UserPasswordHash(ctx, "admin"); h != "h3" {
			t.Errorf("got %q, want h3", h)
		}
		if created, err := s.SetUserPassword(ctx, "ops", "h4"); err != nil || !created {
			t.Fatalf("got %v, %v", created, err)
		}
		if n, _ := s.CountUsers(ctx); n != 2 {
			t.Errorf("got %d users, want 2", n)
		}
	})
}

// TestNoPlaintextSecretsAtRest reads what the database holds, byte for byte
// on SQLite and column by column on PostgreSQL, and finds no secret.
func TestNoPlaintextSecretsAtRest(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		secrets := []string{"Zebra-Password-4711", "Quokka-ClientSecret-0815", "Narwhal-OAuth-Secret-42"}
		a := sampleIMAP("plain")
		a.Password = secrets[0]
		g := imapconf.Config{Name: "graph", ServerType: "imaps", Type: "msgraph", Username: "a@b.example",
			TenantID: "contoso.onmicrosoft.com", ClientID: "11111111-2222-3333-4444-555555555555", ClientSecret: secrets[1],
			Folder: "INBOX", AfterProcessing: "none", PollInterval: 60, Backlog: "new"}
		o := sampleIMAP("oauth")
		o.Password, o.Auth, o.TokenURL, o.ClientID, o.ClientSecret = "", "oauth2", "https://login.example/token", "id", secrets[2]
		for _, c := range []*imapconf.Config{&a, &g, &o} {
			if err := s.CreateIMAP(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
		// An edit re-seals: check that path too.
		a.Description = "edited"
		if err := s.UpdateIMAP(ctx, &a); err != nil {
			t.Fatal(err)
		}
		// A webhook header value is a secret too (issue 12).
		secrets = append(secrets, "Okapi-Header-Secret-77")
		f := store.FlowRecord{Name: "hdr", IMAPID: a.ID, Enabled: true, Secrets: []string{"whsec_Zm9vYmFyYmF6cXV4cXV1eA=="},
			Definition: `{"name":"hdr","activities":[{"type":"webhook","url":"https://x.example/h","headers":{"Authorization":"Bearer Okapi-Header-Secret-77"}}]}`}
		if err := s.CreateFlow(ctx, &f); err != nil {
			t.Fatal(err)
		}
		var raw []byte
		switch s.Dialect() {
		case store.SQLite:
			for _, suffix := range []string{"", "-wal", "-shm"} {
				b, err := os.ReadFile(s.SQLitePath() + suffix)
				if err != nil && !errors.Is(err, os.ErrNotExist) {
					t.Fatal(err)
				}
				raw = append(raw, b...)
			}
			entries, _ := os.ReadDir(filepath.Dir(s.SQLitePath()))
			if len(raw) < 4096 || len(entries) == 0 {
				t.Fatalf("read only %d bytes of the database", len(raw))
			}
		case store.Postgres:
			rows, err := store.DB(s).QueryContext(ctx, `SELECT t::text FROM imap_configs AS t UNION ALL SELECT t::text FROM flows AS t`)
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var line string
				if err := rows.Scan(&line); err != nil {
					t.Fatal(err)
				}
				raw = append(raw, line...)
			}
			rows.Close()
			if !bytes.Contains(raw, []byte("imap.example.com")) {
				t.Fatalf("the raw rows do not even hold the host: %s", raw)
			}
		}
		for _, sec := range secrets {
			for _, form := range []string{sec, fmt.Sprintf("%x", sec)} {
				if bytes.Contains(raw, []byte(form)) {
					t.Errorf("the database holds the secret %q in plaintext", sec)
				}
			}
		}
		// And it reads back.
		got, err := s.GetIMAP(ctx, "plain")
		if err != nil || got.Password != secrets[0] {
			t.Errorf("got %v, want the password back", err)
		}
	})
}

func TestWrongKeyIsAClearError(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s, err := store.Open(ctx, store.Options{DataDir: dir, Box: storetest.Box(t)})
	if err != nil {
		t.Fatal(err)
	}
	c := sampleIMAP("x")
	if err := s.CreateIMAP(ctx, &c); err != nil {
		t.Fatal(err)
	}
	s.Close()
	other, _ := secret.NewBox(bytes.Repeat([]byte{1}, secret.KeySize))
	s, err = store.Open(ctx, store.Options{DataDir: dir, Box: other})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = s.GetIMAP(ctx, "x")
	if !errors.Is(err, secret.ErrOpen) || strings.Contains(err.Error(), c.Password) {
		t.Errorf("got %v, want ErrOpen without the secret", err)
	}
}
