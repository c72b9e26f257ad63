package postgres

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/cdcflow/cdcflow/internal/pgtest"
	"github.com/cdcflow/cdcflow/internal/sink"
	"github.com/cdcflow/cdcflow/internal/sink/sinktest"
	"github.com/cdcflow/cdcflow/internal/sqlgen"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var (
	dbOnce   sync.Once
	dbURL    string
	schemaID atomic.Int64
)

// testURL returns the URL of the database the package's tests share; each
// test works in its own schema.
func testURL(t testing.TB) string {
	t.Helper()
	dbOnce.Do(func() { dbURL = pgtest.Start(t) })
	if dbURL == "" {
		t.Fatal("no test database (an earlier test failed to start the server)")
	}
	return dbURL
}

// newSchema returns a fresh schema name.
func newSchema() string { return "s" + strconv.FormatInt(schemaID.Add(1), 10) }

// openDB opens a database/sql handle whose search_path is schema.
func openDB(t testing.TB, url, schema string) *sql.DB {
	t.Helper()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["search_path"] = sqlgen.QuoteIdent(schema)
	db := stdlib.OpenDB(*cfg)
	t.Cleanup(func() { db.Close() })
	return db
}

func harness() sinktest.Harness {
	var mu sync.Mutex
	dbs := map[string]*sql.DB{}
	return sinktest.Harness{
		Dialect: "postgres",
		NewStore: func(t *testing.T) string {
			testURL(t)
			return newSchema()
		},
		Open: func(t *testing.T, store string, cfg sinktest.Config) sink.Sink {
			t.Helper()
			opts := Options{URL: testURL(t), Schema: store, DeadLetterTable: true, SoftDelete: cfg.SoftDelete,
				// The suite re-applies raw batches and expects them logged
				// again, as a sink that does not drop stored positions does.
				CanResume: func(string) bool { return false }}
			for table, cols := range cfg.Columns {
				if opts.Tables == nil {
					opts.Tables = map[string]TableOptions{}
				}
				opts.Tables[table] = TableOptions{Columns: cols}
			}
			s, err := Open(context.Background(), opts)
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			mu.Lock()
			if dbs[store] == nil {
				dbs[store] = openDB(t, testURL(t), store)
			}
			mu.Unlock()
			return s
		},
		DB: func(t *testing.T, s sink.Sink) *sql.DB {
			mu.Lock()
			defer mu.Unlock()
			return dbs[s.(*Sink).opts.Schema]
		},
	}
}

func TestConformance(t *testing.T) {
	sinktest.Run(t, harness())
}

// openTest opens a sink on a fresh schema of the test database.
func openTest(t testing.TB, opts Options) *Sink {
	t.Helper()
	if opts.URL == "" {
		opts.URL = testURL(t)
	}
	if opts.Schema == "" {
		opts.Schema = newSchema()
	}
	s, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

func scalar[T any](t testing.TB, db *sql.DB, query string, args ...any) T {
	t.Helper()
	var v T
	if err := db.QueryRowContext(context.Background(), query, args...).Scan(&v); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return v
}

func (s *Sink) testDB(t testing.TB) *sql.DB { return openDB(t, s.opts.URL, s.opts.Schema) }

func q(name string) string { return sqlgen.QuoteIdent(name) }

func logCount(t testing.TB, db *sql.DB) int {
	t.Helper()
	return scalar[int](t, db, "SELECT count(*) FROM "+q(sqlgen.EventsTable))
}

func must[T any](t testing.TB) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func fmtRows(t testing.TB, db *sql.DB, query string, args ...any) []string {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), query, args...)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out []string
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(vals))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		line := ""
		for i, v := range vals {
			if i > 0 {
				line += "|"
			}
			if v.Valid {
				line += v.String
			} else {
				line += "<NULL>"
			}
		}
		out = append(out, line)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

var _ = fmt.Sprintf
