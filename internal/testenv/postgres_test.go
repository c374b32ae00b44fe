package testenv

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { Main(m) }

func connect(t *testing.T, dbURL string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatalf("connecting to %s: %v", dbURL, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func TestPostgresURLGivesDistinctEmptyDatabases(t *testing.T) {
	ctx := context.Background()
	url1, url2 := PostgresURL(t), PostgresURL(t)
	if url1 == url2 {
		t.Fatalf("both calls returned %s, want two databases", url1)
	}

	conns := []*pgx.Conn{connect(t, url1), connect(t, url2)}
	names := make([]string, len(conns))
	for i, conn := range conns {
		if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&names[i]); err != nil {
			t.Fatalf("querying database %d: %v", i+1, err)
		}
		var tables int
		err := conn.QueryRow(ctx,
			"SELECT count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "+
				"WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')").Scan(&tables)
		if err != nil {
			t.Fatalf("counting relations in %s: %v", names[i], err)
		}
		if tables != 0 {
			t.Errorf("database %s has %d relations, want 0", names[i], tables)
		}
	}
	if names[0] == names[1] {
		t.Fatalf("both URLs lead to database %s, want two databases", names[0])
	}

	// A table made in one database is not seen in the other.
	if _, err := conns[0].Exec(ctx, "CREATE TABLE marker (id int)"); err != nil {
		t.Fatalf("creating a table in %s: %v", names[0], err)
	}
	var seen bool
	if err := conns[1].QueryRow(ctx, "SELECT to_regclass('marker') IS NOT NULL").Scan(&seen); err != nil {
		t.Fatalf("looking for the table in %s: %v", names[1], err)
	}
	if seen {
		t.Errorf("table made in %s is visible in %s", names[0], names[1])
	}
}

func TestPostgresURLDropsDatabaseAtCleanup(t *testing.T) {
	var name string
	outer := t
	t.Run("user", func(t *testing.T) {
		ctx := context.Background()
		// Closed only when the outer test ends, so the connection is still
		// open when the database is dropped: the drop must not wait for it.
		conn, err := pgx.Connect(ctx, PostgresURL(t))
		if err != nil {
			t.Fatalf("connecting: %v", err)
		}
		outer.Cleanup(func() { conn.Close(ctx) })
		if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&name); err != nil {
			t.Fatalf("querying: %v", err)
		}
	})
	if name == "" {
		t.FailNow()
	}

	admin, err := postgresAdminURL()
	if err != nil {
		t.Fatal(err)
	}
	conn := connect(t, admin)
	var exists bool
	err = conn.QueryRow(context.Background(),
		"SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists)
	if err != nil {
		t.Fatalf("looking up database %s: %v", name, err)
	}
	if exists {
		t.Errorf("database %s still exists after its test ended, want it dropped", name)
	}
}

func TestPostgresURLParallel(t *testing.T) {
	for i := range 8 {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			t.Parallel()
			conn := connect(t, PostgresURL(t))
			var one int
			if err := conn.QueryRow(context.Background(), "SELECT 1").Scan(&one); err != nil {
				t.Fatalf("querying: %v", err)
			}
		})
	}
}

func TestFindPostgresBinDir(t *testing.T) {
	t.Run("missing", func(t *testing.T) {
		dir := t.TempDir()
		_, err := findPostgresBinDir(filepath.Join(dir, "no-pg_config"), filepath.Join(dir, "*", "bin"))
		if err == nil {
			t.Fatal("got no error, want one saying how to install PostgreSQL")
		}
		for _, want := range []string{"apt-get install postgresql", PostgresURLEnv} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("got error %q, want it to mention %q", err, want)
			}
		}
	})
	t.Run("newest version", func(t *testing.T) {
		dir := t.TempDir()
		for _, version := range []string{"9.6", "16", "13"} {
			bin := filepath.Join(dir, version, "bin")
			if err := os.MkdirAll(bin, 0o755); err != nil {
				t.Fatal(err)
			}
			for _, program := range []string{"initdb", "postgres"} {
				if err := os.WriteFile(filepath.Join(bin, program), nil, 0o755); err != nil {
					t.Fatal(err)
				}
			}
		}
		got, err := findPostgresBinDir(filepath.Join(dir, "no-pg_config"), filepath.Join(dir, "*", "bin"))
		if want := filepath.Join(dir, "16", "bin"); got != want || err != nil {
			t.Errorf("got %q, %v, want %q, nil", got, err, want)
		}
	})
}

func TestFreePort(t *testing.T) {
	port := FreePort(t)
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatalf("listening on the free port %d: %v", port, err)
	}
	l.Close()
}

func TestDatabaseName(t *testing.T) {
	tests := []struct {
		name, testName string
	}{
		{"plain", "TestStore"},
		{"subtest with odd characters", "TestStore/create-\"x\" ü/#01"},
		{"long", "TestAVeryLongTestNameThatGoesOnAndOnPastPostgresIdentifierLimits/and/more/subtests"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := databaseName(tc.testName)
			if len(got) > 63 {
				t.Errorf("databaseName(%q) = %q, %d bytes, want at most 63", tc.testName, got, len(got))
			}
			for _, r := range got {
				if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') {
					t.Errorf("databaseName(%q) = %q, has %q, want only [a-z0-9_]", tc.testName, got, r)
					break
				}
			}
			if again := databaseName(tc.testName); again == got {
				t.Errorf("databaseName(%q) gave %q twice, want distinct names", tc.testName, got)
			}
		})
	}
}

func TestCompareVersions(t *testing.T) {
	tests := []struct {
		a, b string
		want int // sign
	}{
		{"15", "9.6", 1},
		{"9.6", "15", -1},
		{"16", "16", 0},
		{"10", "9", 1},
	}
	for _, tc := range tests {
		got := compareVersions(tc.a, tc.b)
		if sign(got) != tc.want {
			t.Errorf("compareVersions(%q, %q) = %d, want sign %d", tc.a, tc.b, got, tc.want)
		}
	}
}

func sign(n int) int {
	switch {
	case n > 0:
		return 1
	case n < 0:
		return -1
	}
	return 0
}
