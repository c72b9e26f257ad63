package postgres

import (
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cdcflow/cdcflow/internal/sqlgen"
)

// TestStageEncoding checks the staging encoder against PostgreSQL itself:
// each value COPYed in binary by appendValue must read back exactly as the
// value sqlgen.Convert produces, bound as a parameter and cast.
func TestStageEncoding(t *testing.T) {
	ctx := ctxb()
	conn, err := pgx.Connect(ctx, testURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "SET TimeZone = 'UTC'"); err != nil {
		t.Fatal(err)
	}
	type tc struct {
		typ    string
		raw    string
		pinned bool
	}
	cases := []tc{
		{"BIGINT", `0`, false}, {"BIGINT", `-1`, false}, {"BIGINT", `9223372036854775807`, false},
		{"BIGINT", `-9223372036854775808`, false}, {"BIGINT", `"42"`, true}, {"BIGINT", `5.0`, true}, {"BIGINT", `" 7 "`, true},
		{"INTEGER", `2147483647`, true}, {"INTEGER", `-2147483648`, true}, {"INTEGER", `"12"`, true}, {"INTEGER", `3.00`, true},
		{"DECIMAL(18,2)", `0`, false}, {"DECIMAL(18,2)", `1.5`, false}, {"DECIMAL(18,2)", `-1.5`, false},
		{"DECIMAL(18,2)", `123456789012345.67`, false}, {"DECIMAL(18,2)", `0.01`, false}, {"DECIMAL(18,2)", `-0.5`, false},
		{"DECIMAL(18,2)", `100`, false}, {"DECIMAL(18,2)", `1.50`, false}, {"DECIMAL(18,2)", `-0`, false}, {"DECIMAL(18,2)", `0.00`, false},
		{"DECIMAL(18,2)", `10000`, false}, {"DECIMAL(18,2)", `10000.01`, false}, {"DECIMAL(18,2)", `"12.50"`, true},
		{"DECIMAL(18,2)", `1e2`, true}, {"DECIMAL(18,2)", `2.5000`, false},
		{"DECIMAL(38,10)", `12345678901234567890.1234567890`, false}, {"DECIMAL(38,10)", `0.0000000001`, false},
		{"DECIMAL(38,10)", `-0.0001`, false},
		{"DECIMAL(10,0)", `9999999999`, true}, {"DECIMAL(18,3)", `"-0.125"`, true},
		{"DOUBLE", `1.5`, false}, {"DOUBLE", `-2e-3`, false}, {"DOUBLE", `1e308`, false}, {"DOUBLE", `0`, false},
		{"BOOLEAN", `true`, false}, {"BOOLEAN", `false`, false},
		{"VARCHAR", `"abc"`, false}, {"VARCHAR", `"é🌍"`, false}, {"VARCHAR", `"with \"escape\" \\ \u00e9"`, false},
		{"VARCHAR", `12.50`, false}, {"VARCHAR", `true`, false}, {"VARCHAR", `{"a": [1, 2]}`, false}, {"VARCHAR", `"tab\tx"`, false}, {"VARCHAR", `""`, false},
		{"TIMESTAMP", `"2024-01-02T03:04:05Z"`, false}, {"TIMESTAMP", `"2024-01-02T03:04:05.123456+02:00"`, false},
		{"TIMESTAMP", `"2024-01-02 03:04:05"`, true}, {"TIMESTAMP", `"1969-07-20T20:17:40.5Z"`, false},
		{"TIMESTAMPTZ", `"2024-01-02T03:04:05.999999-05:00"`, true},
		{"DATE", `"2024-01-02"`, true}, {"DATE", `"1969-12-31"`, true}, {"DATE", `"1900-03-01T10:00:00Z"`, true},
		{"JSON", `{"a":[1,2],"b":"é"}`, false}, {"JSON", `"text"`, false}, {"JSON", `5`, false},
		{"BIGINT", `null`, false}, {"VARCHAR", `null`, false},
	}
	for _, c := range cases {
		t.Run(c.typ+" "+c.raw, func(t *testing.T) {
			typ, err := sqlgen.ParseType(c.typ)
			if err != nil {
				t.Fatal(err)
			}
			pgType := dialect.TypeName(typ)
			tx, err := conn.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx)
			if _, err := tx.Exec(ctx, "CREATE TEMP TABLE enc (v "+pgType+") ON COMMIT DROP"); err != nil {
				t.Fatal(err)
			}
			r := newRowReader(1, func(_ int, b []byte) ([]byte, error) {
				b = appendInt16(b, 1)
				return appendValue(b, typ, []byte(c.raw), c.pinned)
			})
			if _, err := tx.Conn().PgConn().CopyFrom(ctx, r, copySQL("pg_temp.enc", []string{"v"})); err != nil {
				t.Fatalf("copy: %v (encoder: %v)", err, r.err)
			}
			var got *string
			if err := tx.QueryRow(ctx, "SELECT v::text FROM enc").Scan(&got); err != nil {
				t.Fatal(err)
			}
			v, err := sqlgen.Convert(typ, []byte(c.raw), c.pinned)
			if err != nil {
				t.Fatal(err)
			}
			switch x := v.(type) {
			case sqlgen.DecimalValue:
				v = x.String()
			case json.RawMessage:
				v = string(x)
			case time.Time:
				v = x.Format(time.RFC3339Nano)
			case float64:
				v = strconv.FormatFloat(x, 'g', -1, 64)
			case nil:
			default:
				v = fmt.Sprint(x)
			}
			var want *string
			if err := tx.QueryRow(ctx, "SELECT CAST(CAST($1::text AS "+pgType+") AS text)", v).Scan(&want); err != nil {
				t.Fatal(err)
			}
			if (got == nil) != (want == nil) || (got != nil && *got != *want) {
				t.Errorf("staged %s as %s: got %v, want %v", c.raw, pgType, deref(got), deref(want))
			}
		})
	}
}

func deref(s *string) string {
	if s == nil {
		return "<NULL>"
	}
	return *s
}
