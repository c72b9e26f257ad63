package pgtest

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { Main(m) }

func query(t *testing.T, url, q string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	var s string
	if err := conn.QueryRow(ctx, q).Scan(&s); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return s
}

func TestStartFreshDatabases(t *testing.T) {
	a, b := Start(t), Start(t)
	if a == b {
		t.Fatalf("two calls returned the same database %s", a)
	}
	if got := query(t, a, "SHOW fsync"); got != "on" {
		t.Errorf("fsync = %s, want on", got)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE TABLE only_in_a (x int)"); err != nil {
		t.Fatal(err)
	}
	if got := query(t, b, "SELECT count(*)::text FROM pg_class WHERE relname = 'only_in_a'"); got != "0" {
		t.Errorf("database b sees a's table")
	}
}

func TestStopRestart(t *testing.T) {
	u := Start(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)"); err != nil {
		t.Fatal(err)
	}
	Stop(t)
	if err := conn.Ping(ctx); err == nil {
		t.Fatal("ping succeeded while the server is stopped")
	}
	if _, err := pgx.Connect(ctx, u); err == nil {
		t.Fatal("connect succeeded while the server is stopped")
	}
	Restart(t)
	if got := query(t, u, "SELECT x::text FROM kept"); got != "42" {
		t.Errorf("after restart kept.x = %s, want 42", got)
	}
	Restart(t) // while running: stop and start
	if got := query(t, u, "SELECT x::text FROM kept"); got != "42" {
		t.Errorf("after second restart kept.x = %s, want 42", got)
	}
}

// TestExternalURL exercises the CDCFLOW_TEST_PG_URL path against the
// private server: a database per call, named in the returned URL.
func TestExternalURL(t *testing.T) {
	Start(t) // the private server
	s, err := get()
	if err != nil {
		t.Fatal(err)
	}
	ext := &server{external: s.adminURL()}
	if err := ext.createDB("ext_db"); err != nil {
		t.Fatal(err)
	}
	u := ext.url("ext_db")
	if got := query(t, u, "SELECT current_database()"); got != "ext_db" {
		t.Errorf("external URL %s reaches database %s", u, got)
	}
}

func TestMissingBinaries(t *testing.T) {
	_, err := findBinDir(t.TempDir()+"/*/bin", t.TempDir()+"/no_pg_config")
	if err == nil || !strings.Contains(err.Error(), "scripts/test.sh") {
		t.Errorf("findBinDir without binaries = %v, want an error saying to run scripts/test.sh", err)
	}
	if d, err := binDir(); err == nil {
		if got, serr := findBinDir(d, "false"); serr != nil || got != d {
			t.Errorf("findBinDir(%s) = %s, %v", d, got, serr)
		}
	}
}
