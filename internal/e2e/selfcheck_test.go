package e2e

import (
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cdcflow/cdcflow/internal/sink/duckdb"
	"github.com/cdcflow/cdcflow/internal/testgen"
)

// TestColumnValue checks the comparator the differential test relies on:
// equal values of different spellings agree, and every real difference is
// reported.
func TestColumnValue(t *testing.T) {
	null := sql.NullString{}
	str := func(s string) sql.NullString { return sql.NullString{String: s, Valid: true} }
	tests := []struct {
		name  string
		typ   string
		want  any
		got   sql.NullString
		equal bool
	}{
		{"null both", "BIGINT", nil, null, true},
		{"null vs value", "BIGINT", nil, str("0"), false},
		{"value vs null", "VARCHAR", "", null, false},
		{"bigint", "BIGINT", json.Number("9007199254740993"), str("9007199254740993"), true},
		{"bigint off by one", "BIGINT", json.Number("9007199254740993"), str("9007199254740992"), false},
		{"decimal scale", "DECIMAL(18,2)", json.Number("12.5"), str("12.50"), true},
		{"decimal negative", "DECIMAL(18,2)", json.Number("-0.05"), str("-0.05"), true},
		{"decimal differs", "DECIMAL(18,2)", json.Number("12.50"), str("12.51"), false},
		{"number vs string", "BIGINT", "1", str("1"), false},
		{"bool", "BOOLEAN", true, str("true"), true},
		{"bool differs", "BOOLEAN", false, str("true"), false},
		{"timestamp instant", "TIMESTAMP", "2024-01-01T00:00:00.5Z", str("2024-01-01 00:00:00.5"), true},
		{"timestamp offset", "TIMESTAMP WITH TIME ZONE", "2024-01-01T01:00:00+01:00", str("2024-01-01 00:00:00+00"), true},
		{"timestamp one microsecond", "TIMESTAMP", "2024-01-01T00:00:00.000001Z", str("2024-01-01 00:00:00"), false},
		{"json member order", "JSON", map[string]any{"a": json.Number("1"), "b": []any{"x", nil}}, str(`{"b":["x",null],"a":1.0}`), true},
		{"json nested differs", "JSON", map[string]any{"a": map[string]any{"b": json.Number("1")}}, str(`{"a":{"b":2}}`), false},
		{"json array order", "JSON", []any{"a", "b"}, str(`["b","a"]`), false},
		{"json string vs number", "JSON", map[string]any{"a": "1"}, str(`{"a":1}`), false},
		{"json null value", "JSON", nil, str("null"), false},
		{"varchar exact", "VARCHAR", "ümlaut \"q\" \\ 🚀\n", str("ümlaut \"q\" \\ 🚀\n"), true},
		{"varchar trailing space", "VARCHAR", "a", str("a "), false},
		{"varchar holding json", "VARCHAR", `{"a":1}`, str(`{"a": 1}`), false},
		{"double is never expected", "DOUBLE", json.Number("1.5"), str("1.5"), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msg := columnValue(tc.typ, tc.want, tc.got)
			if (msg == "") != tc.equal {
				t.Errorf("columnValue(%s, %s, %s) = %q, want equal=%v", tc.typ, canonical(tc.want), showNull(tc.got), msg, tc.equal)
			}
		})
	}
}

// TestDifferentialDetects runs one scenario, then damages copies of its
// database in the ways a bug would and checks that verify reports each one
// under the right check.
func TestDifferentialDetects(t *testing.T) {
	p := params{changes: 120, poison: false}
	seed := int64(7)
	hist := testgen.Generate(seed, historyOptions(seed, p))
	v := variants[3] // dms: full images, every table
	s := newScenario(t, seed, hist, v, p)
	s.soft, s.naming = false, duckdb.NamingTable
	ref, refDead := s.reference(t)
	runs := s.run(t, len(ref)+len(refDead))
	if bad := s.verify(t, ref, refDead, false); len(bad) > 0 {
		t.Fatalf("the undamaged database differs:\n%s\n%v", showRuns(runs), bad)
	}
	firstLog := `(SELECT min(event_id) FROM cdc_events WHERE source_table = 'orders')`
	mutations := []struct {
		name  string
		sql   string
		check string // the check that must report it
	}{
		{"merged value", `UPDATE orders SET total = total + 0.01 WHERE _cdc_record_id = (SELECT min(_cdc_record_id) FROM orders)`, "merged tables"},
		{"merged timestamp by 1µs", `UPDATE orders SET created_at = created_at + INTERVAL 1 MICROSECOND WHERE _cdc_record_id = (SELECT min(_cdc_record_id) FROM orders)`, "merged tables"},
		{"merged JSON member", `UPDATE orders SET shipping = json_object('x', 1) WHERE _cdc_record_id = (SELECT min(_cdc_record_id) FROM orders)`, "merged tables"},
		{"merged row lost", `DELETE FROM customers WHERE _cdc_record_id = (SELECT min(_cdc_record_id) FROM customers)`, "merged tables"},
		{"merged row resurrected", `INSERT INTO order_items (_cdc_record_id, _cdc_commit_order, _cdc_commit_timestamp, _cdc_op) VALUES ('[1,99]', 'T', now(), 'c')`, "merged tables"},
		{"log row duplicated", `INSERT INTO cdc_events SELECT * REPLACE (event_id + 1000000 AS event_id) FROM cdc_events WHERE event_id = ` + firstLog, "cdc_events: one row per delivered record"},
		{"log row lost", `DELETE FROM cdc_events WHERE event_id = ` + firstLog, "cdc_events: one row per delivered record"},
		{"log image changed", `UPDATE cdc_events SET event_data = json_object('x', 1) WHERE event_id = ` + firstLog, "cdc_events: every source change"},
		{"spurious dead letter", `INSERT INTO cdc_dead_letters (reason, position, created_at) VALUES ('invalid_json', 'somewhere:1', now())`, "cdc_dead_letters"},
		{"checkpoint behind", `UPDATE _cdc_checkpoints SET applied_offset = '1'`, "_cdc_checkpoints"},
		{"checkpoint held", `UPDATE _cdc_checkpoints SET held = true`, "_cdc_checkpoints"},
	}
	for _, m := range mutations {
		t.Run(m.name, func(t *testing.T) {
			c := *s
			c.db = copyDB(t, s.db)
			db, err := sql.Open("duckdb", c.db)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := db.ExecContext(context.Background(), m.sql); err != nil {
				db.Close()
				t.Fatalf("mutate: %v", err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			bad := c.verify(t, ref, refDead, false)
			var checks []string
			for _, d := range bad {
				checks = append(checks, d.check)
			}
			found := false
			for _, name := range checks {
				found = found || name == m.check
			}
			if !found {
				t.Errorf("mutation not reported by %q; reports: %v", m.check, strings.Join(checks, "; "))
			}
		})
	}
}

// copyDB copies a closed DuckDB database (and its WAL, if any) to a new
// directory and returns the copy's path.
func copyDB(t *testing.T, path string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(path))
	for _, suffix := range []string{"", ".wal"} {
		in, err := os.Open(path + suffix)
		if os.IsNotExist(err) && suffix != "" {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		out, err := os.Create(dst + suffix)
		if err != nil {
			in.Close()
			t.Fatal(err)
		}
		_, err = io.Copy(out, in)
		in.Close()
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return dst
}
