package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"mailtrigger/internal/imapconf"
	"mailtrigger/internal/secret"
	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
)

// TestSealedSecretBoundToItsRow: a sealed password or flow secret copied from
// one row to another (someone with write access to the database but not the
// key) does not open there: reading the configuration fails with ErrOpen,
// the list shows it without a secret and says why, and the original row
// still opens.
func TestSealedSecretBoundToItsRow(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		a, b := sampleIMAP("row_a"), sampleIMAP("row_b")
		b.Host = "evil.example.net"
		for _, c := range []*imapconf.Config{&a, &b} {
			if err := s.CreateIMAP(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
		db := store.DB(s)
		if _, err := db.ExecContext(ctx, `UPDATE imap_configs SET password_sealed = (SELECT password_sealed FROM imap_configs WHERE id = $1) WHERE id = $2`, a.ID, b.ID); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetIMAP(ctx, "row_b")
		if !errors.Is(err, secret.ErrOpen) || got.Password != "" || strings.Contains(err.Error(), a.Password) {
			t.Errorf("b with a's sealed password: got %q, %v, want ErrOpen and no password", got.Password, err)
		}
		list, err := s.ListIMAP(ctx, "", 10)
		if err != nil || len(list) != 2 {
			t.Fatalf("list: got %d, %v, want both configurations", len(list), err)
		}
		if list[0].Password != a.Password || list[0].SecretError != "" {
			t.Errorf("a: got secret error %q, want its password", list[0].SecretError)
		}
		if list[1].Password != "" || !strings.Contains(list[1].SecretError, "password") {
			t.Errorf("b: got password %q, secret error %q, want none and the reason", list[1].Password, list[1].SecretError)
		}

		// Flows: the sealed secrets of one flow copied to another.
		mk := func(name, hdr string) store.FlowRecord {
			f := store.FlowRecord{Name: name, IMAPID: a.ID, Enabled: true, Secrets: []string{"whsec_" + name},
				Definition: `{"name":"` + name + `","activities":[{"type":"webhook","url":"https://x.example/h","headers":{"Authorization":"` + hdr + `"}}]}`}
			if err := s.CreateFlow(ctx, &f); err != nil {
				t.Fatal(err)
			}
			return f
		}
		fa, fb := mk("flow_a", "Bearer flow-a-hdr"), mk("flow_b", "Bearer flow-b-hdr")
		if _, err := db.ExecContext(ctx, `UPDATE flows SET secrets_sealed = (SELECT secrets_sealed FROM flows WHERE id = $1) WHERE id = $2`, fa.ID, fb.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetFlow(ctx, "flow_b"); !errors.Is(err, secret.ErrOpen) {
			t.Errorf("flow b with a's sealed secrets: got %v, want ErrOpen", err)
		}
		if f, err := s.GetFlow(ctx, "flow_a"); err != nil || f.Headers[0]["Authorization"] != "Bearer flow-a-hdr" {
			t.Errorf("flow a: got %v, %v", f.Headers, err)
		}
	})
}

// TestLegacySecretsResealed: values sealed before rows were bound (and
// header values stored in plaintext in a flow's definition) are re-sealed by
// the pass every start runs, and read back as before; a legacy value that
// does not open is left alone.
func TestLegacySecretsResealed(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		db := store.DB(s)
		box := storetest.Box(t)
		c := sampleIMAP("legacy")
		g := sampleIMAP("legacy_oauth")
		g.Password, g.Auth, g.TokenURL, g.ClientID, g.ClientSecret = "", "oauth2", "https://login.example/token", "id", "Legacy-CS-1"
		for _, x := range []*imapconf.Config{&c, &g} {
			if err := s.CreateIMAP(ctx, x); err != nil {
				t.Fatal(err)
			}
		}
		// Write them as the previous release did.
		pw, _ := box.Seal(c.Password, "imap.password")
		cs, _ := box.Seal(g.ClientSecret, "imap.clientSecret")
		if _, err := db.ExecContext(ctx, `UPDATE imap_configs SET password_sealed = $1 WHERE id = $2`, pw, c.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, `UPDATE imap_configs SET client_secret_sealed = $1 WHERE id = $2`, cs, g.ID); err != nil {
			t.Fatal(err)
		}
		f := store.FlowRecord{Name: "legacy_flow", IMAPID: c.ID, Enabled: true, Secrets: []string{"whsec_x"},
			Definition: `{"name":"legacy_flow","activities":[{"type":"webhook","url":"https://x.example/h","timeout":5}]}`}
		if err := s.CreateFlow(ctx, &f); err != nil {
			t.Fatal(err)
		}
		old, _ := json.Marshal([]string{"whsec_legacy"})
		fsealed, _ := box.Seal(string(old), "flow.secrets")
		def := `{"name":"legacy_flow","activities":[{"type":"webhook","url":"https://x.example/h","timeout":5,"headers":{"Authorization":"Bearer legacy-plain-hdr"}}]}`
		if _, err := db.ExecContext(ctx, `UPDATE flows SET secrets_sealed = $1, definition = $2 WHERE id = $3`, fsealed, def, f.ID); err != nil {
			t.Fatal(err)
		}
		// Before the pass they do not open (only a re-seal makes them).
		if _, err := s.GetIMAP(ctx, "legacy"); !errors.Is(err, secret.ErrOpen) {
			t.Fatalf("legacy value before the pass: got %v, want ErrOpen", err)
		}
		if err := store.ResealLegacy(s); err != nil {
			t.Fatal(err)
		}
		if got, err := s.GetIMAP(ctx, "legacy"); err != nil || got.Password != c.Password {
			t.Errorf("legacy password after the pass: got %v", err)
		}
		if got, err := s.GetIMAP(ctx, "legacy_oauth"); err != nil || got.ClientSecret != g.ClientSecret {
			t.Errorf("legacy client secret after the pass: got %v", err)
		}
		got, err := s.GetFlow(ctx, "legacy_flow")
		if err != nil || len(got.Secrets) != 1 || got.Secrets[0] != "whsec_legacy" || got.Headers[0]["Authorization"] != "Bearer legacy-plain-hdr" {
			t.Fatalf("legacy flow after the pass: got %v %v, %v", got.Secrets, got.Headers, err)
		}
		if strings.Contains(got.Definition, "legacy-plain-hdr") || !strings.Contains(got.Definition, `"Authorization":""`) || !strings.Contains(got.Definition, `"timeout":5`) {
			t.Errorf("definition after the pass: %s, want the header named without its value, the rest as it was", got.Definition)
		}
		// Nothing left to do the second time; values under another key
		// are left alone.
		var before []byte
		db.QueryRowContext(ctx, `SELECT password_sealed FROM imap_configs WHERE id = $1`, c.ID).Scan(&before)
		if err := store.ResealLegacy(s); err != nil {
			t.Fatal(err)
		}
		var after []byte
		db.QueryRowContext(ctx, `SELECT password_sealed FROM imap_configs WHERE id = $1`, c.ID).Scan(&after)
		if string(before) != string(after) {
			t.Error("the second pass re-sealed again")
		}
		other, _ := secret.NewBox(make([]byte, secret.KeySize))
		foreign, _ := other.Seal("x", "imap.password")
		if _, err := db.ExecContext(ctx, `UPDATE imap_configs SET password_sealed = $1 WHERE id = $2`, foreign, c.ID); err != nil {
			t.Fatal(err)
		}
		if err := store.ResealLegacy(s); err != nil {
			t.Errorf("a value under another key stopped the pass: %v", err)
		}
	})
}
