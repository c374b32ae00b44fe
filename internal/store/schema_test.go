package store_test

import (
	"context"
	"database/sql"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	"mailtrigger/internal/store"
	"mailtrigger/internal/storetest"
)

// TestSchemasAgree: the SQLite and the PostgreSQL migrations build the same
// schema: the same tables, the same columns (types mapped between the two
// databases, nullability), the same primary keys and the same indexes
// (columns, uniqueness, the literals of a partial index's condition, and the
// name of every index made by CREATE INDEX).
func TestSchemasAgree(t *testing.T) {
	ctx := context.Background()
	lite := schemaOf(t, ctx, storetest.Open(t, store.SQLite))
	pg := schemaOf(t, ctx, storetest.Open(t, store.Postgres))
	if len(lite) == 0 {
		t.Fatal("read no schema")
	}
	for _, l := range lite {
		if !slices.Contains(pg, l) && !slices.Contains(pg, asBigint(l)) {
			t.Errorf("only on SQLite: %s", l)
		}
	}
	for _, l := range pg {
		if !slices.Contains(lite, l) && !slices.Contains(lite, strings.Replace(l, " bigint ", " int ", 1)) {
			t.Errorf("only on PostgreSQL: %s", l)
		}
	}
}

// asBigint is column line l with type class int read as bigint: a SQLite
// INTEGER holds 64 bits, so a PostgreSQL bigint may stand for it.
func asBigint(l string) string {
	if !strings.HasPrefix(l, "column ") {
		return l
	}
	return strings.Replace(l, " int ", " bigint ", 1)
}

// schemaOf describes the schema of s, one line per column, primary key and
// index, in terms both databases share, sorted.
func schemaOf(t *testing.T, ctx context.Context, s *store.Store) []string {
	t.Helper()
	db := store.DB(s)
	var out []string
	var err error
	if s.Dialect() == store.SQLite {
		out, err = sqliteSchema(ctx, db)
	} else {
		out, err = postgresSchema(ctx, db)
	}
	if err != nil {
		t.Fatalf("reading %s schema: %v", s.Dialect(), err)
	}
	slices.Sort(out)
	return out
}

// columnLine describes a column; typ is the type's class: SQLite's INTEGER
// (64 bits) may be PostgreSQL's integer or bigint, so both read "int" then,
// while BIGINT, which a PostgreSQL integer could not hold, stays "bigint".
func columnLine(table, column, typ string, notNull bool) string {
	null := "null"
	if notNull {
		null = "not null"
	}
	return fmt.Sprintf("column %s.%s %s %s", table, column, typ, null)
}

func indexLine(table, name string, cols []string, unique bool, where string) string {
	kind := "index"
	if unique {
		kind = "unique index"
	}
	line := fmt.Sprintf("%s %s on %s(%s)", kind, name, table, strings.Join(cols, ", "))
	if where != "" {
		// The two databases spell a condition differently; its literals
		// are what must agree.
		lits := regexp.MustCompile(`'[^']*'`).FindAllString(where, -1)
		slices.Sort(lits)
		line += " where " + strings.Join(lits, " ")
	}
	return line
}

var sqliteTypes = map[string]string{"INTEGER": "int", "BIGINT": "bigint", "TEXT": "text", "BLOB": "bytes",
	"BOOLEAN": "bool", "TIMESTAMP": "time"}

func sqliteSchema(ctx context.Context, db *sql.DB) ([]string, error) {
	tables, err := strings1(ctx, db, `SELECT name FROM sqlite_master WHERE type = 'table'
		AND name NOT LIKE 'sqlite_%' AND name <> 'goose_db_version' ORDER BY name`)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, tb := range tables {
		rows, err := db.QueryContext(ctx, `SELECT name, type, "notnull", pk FROM pragma_table_info($1) ORDER BY cid`, tb)
		if err != nil {
			return nil, err
		}
		var pk []string
		for rows.Next() {
			var name, typ string
			var notNull bool
			var pkn int
			if err := rows.Scan(&name, &typ, &notNull, &pkn); err != nil {
				rows.Close()
				return nil, err
			}
			class, ok := sqliteTypes[strings.ToUpper(typ)]
			if !ok {
				class = "unknown " + typ
			}
			if pkn > 0 {
				notNull = true // PostgreSQL's primary keys are never NULL
				pk = append(pk, fmt.Sprintf("%d:%s", pkn, name))
			}
			out = append(out, columnLine(tb, name, class, notNull))
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
		slices.Sort(pk)
		for i := range pk {
			pk[i] = pk[i][strings.Index(pk[i], ":")+1:]
		}
		out = append(out, fmt.Sprintf("primary key %s(%s)", tb, strings.Join(pk, ", ")))

		type index struct {
			name, origin string
			unique       bool
		}
		var idx []index
		rows, err = db.QueryContext(ctx, `SELECT name, "unique", origin FROM pragma_index_list($1)`, tb)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var i index
			if err := rows.Scan(&i.name, &i.unique, &i.origin); err != nil {
				rows.Close()
				return nil, err
			}
			idx = append(idx, i)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
		for _, i := range idx {
			if i.origin == "pk" {
				continue // the primary key, above
			}
			cols, err := strings1(ctx, db, `SELECT name FROM pragma_index_info($1) ORDER BY seqno`, i.name)
			if err != nil {
				return nil, err
			}
			name, where := "", ""
			if i.origin == "c" { // CREATE INDEX, not a UNIQUE constraint
				name = i.name
				var def sql.NullString
				if err := db.QueryRowContext(ctx, `SELECT sql FROM sqlite_master WHERE type = 'index' AND name = $1`, i.name).Scan(&def); err != nil {
					return nil, err
				}
				if _, w, ok := strings.Cut(def.String, " WHERE "); ok {
					where = w
				}
			}
			out = append(out, indexLine(tb, name, cols, i.unique, where))
		}
	}
	return out, nil
}

var postgresTypes = map[string]string{"integer": "int", "bigint": "bigint", "text": "text", "bytea": "bytes",
	"boolean": "bool", "timestamp with time zone": "time"}

func postgresSchema(ctx context.Context, db *sql.DB) ([]string, error) {
	var out []string
	rows, err := db.QueryContext(ctx, `SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name <> 'goose_db_version'`)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var tb, name, typ, nullable string
		if err := rows.Scan(&tb, &name, &typ, &nullable); err != nil {
			rows.Close()
			return nil, err
		}
		class, ok := postgresTypes[typ]
		if !ok {
			class = "unknown " + typ
		}
		out = append(out, columnLine(tb, name, class, nullable == "NO"))
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows, err = db.QueryContext(ctx, `SELECT t.relname, i.relname, ix.indisprimary, ix.indisunique,
			EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = ix.indexrelid),
			COALESCE(pg_get_expr(ix.indpred, ix.indrelid), ''),
			array_to_string(ARRAY(SELECT a.attname FROM unnest(ix.indkey) WITH ORDINALITY k(attnum, ord)
				JOIN pg_attribute a ON a.attrelid = ix.indrelid AND a.attnum = k.attnum ORDER BY k.ord), ',')
		FROM pg_index ix
		JOIN pg_class i ON i.oid = ix.indexrelid
		JOIN pg_class t ON t.oid = ix.indrelid
		JOIN pg_namespace n ON n.oid = t.relnamespace
		WHERE n.nspname = current_schema() AND t.relname <> 'goose_db_version'`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var tb, name, where, cols string
		var primary, unique, constraint bool
		if err := rows.Scan(&tb, &name, &primary, &unique, &constraint, &where, &cols); err != nil {
			return nil, err
		}
		if primary {
			out = append(out, fmt.Sprintf("primary key %s(%s)", tb, strings.ReplaceAll(cols, ",", ", ")))
			continue
		}
		if constraint {
			name = "" // a UNIQUE constraint's index, named by the database
		}
		out = append(out, indexLine(tb, name, strings.Split(cols, ","), unique, where))
	}
	return out, rows.Err()
}

// strings1 returns the first column of every row of query.
func strings1(ctx context.Context, db *sql.DB, query string, args ...any) ([]string, error) {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}
