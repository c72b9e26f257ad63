package sqlgen

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseType(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Type
		err  string
	}{
		{"bigint", TBigInt, ""},
		{"INT", Type{Kind: Integer}, ""},
		{" double  precision ", TDouble, ""},
		{"numeric(12, 2)", DecimalType(12, 2), ""},
		{"DECIMAL(38)", DecimalType(38, 0), ""},
		{"decimal", DecimalType(18, 3), ""},
		{"text", TVarchar, ""},
		{"jsonb", TJSON, ""},
		{"timestamp with time zone", Type{Kind: TimestampTZ}, ""},
		{"date", Type{Kind: Date}, ""},
		{"DECIMAL(39,2)", Type{}, "precision must be"},
		{"DECIMAL(5,6)", Type{}, "precision must be"},
		{"DECIMAL(a,b)", Type{}, "unknown column type"},
		{"MONEY", Type{}, "unknown column type"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseType(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseType = %v, %v; want %v", got, err, tc.want)
			}
			if back, err := ParseType(got.String()); err != nil || back != got {
				t.Errorf("round trip of %s = %v, %v", got, back, err)
			}
		})
	}
}

func TestInfer(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		want Type
		ok   bool
	}{
		{`null`, Type{}, false},
		{`42`, TBigInt, true},
		{`-9223372036854775808`, TBigInt, true},
		{`9223372036854775808`, DecimalType(38, 0), true},
		{`12.50`, DecimalType(18, 2), true},
		{`0.30000000000000004`, DecimalType(18, 17), true},
		{`123456789012345678.5`, DecimalType(38, 1), true},
		{`1e10`, TDouble, true},
		{`1234567890123456789012345678901234567890`, TDouble, true},
		{`true`, TBoolean, true},
		{`"2024-01-02T03:04:05Z"`, TTimestamp, true},
		{`"2024-01-02T03:04:05.123456+02:00"`, TTimestamp, true},
		{`"2024-01-02 03:04:05"`, TVarchar, true},
		{`"2024-13-02T03:04:05Z"`, TVarchar, true},
		{`"2024-01-02"`, TVarchar, true},
		{`"hello"`, TVarchar, true},
		{`{"a":1}`, TJSON, true},
		{`[1]`, TJSON, true},
	} {
		got, ok := Infer([]byte(tc.raw))
		if got != tc.want || ok != tc.ok {
			t.Errorf("Infer(%s) = %v, %v; want %v, %v", tc.raw, got, ok, tc.want, tc.ok)
		}
		if ok && !Fits(got, []byte(tc.raw)) {
			t.Errorf("Infer(%s) = %v, which does not fit the value", tc.raw, got)
		}
	}
}

func TestWiden(t *testing.T) {
	for _, tc := range []struct{ a, b, want Type }{
		{TBigInt, TBigInt, TBigInt},
		{Type{}, TBoolean, TBoolean},
		{TBigInt, DecimalType(18, 2), DecimalType(38, 2)},
		{DecimalType(18, 2), DecimalType(18, 4), DecimalType(38, 4)},
		{DecimalType(10, 2), DecimalType(10, 4), DecimalType(18, 4)},
		{DecimalType(18, 0), DecimalType(18, 17), DecimalType(38, 17)},
		{DecimalType(38, 20), DecimalType(38, 0), TDouble},
		{DecimalType(18, 2), TDouble, TDouble},
		{TBigInt, TDouble, TDouble},
		{Type{Kind: Integer}, TBigInt, TBigInt},
		{TBoolean, TBigInt, TVarchar},
		{TTimestamp, TVarchar, TVarchar},
		{TTimestamp, TBoolean, TVarchar},
		{TBigInt, TJSON, TJSON},
		{TJSON, TVarchar, TVarchar},
	} {
		if got := Widen(tc.a, tc.b); got != tc.want {
			t.Errorf("Widen(%v, %v) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
		if got := Widen(tc.b, tc.a); got != tc.want {
			t.Errorf("Widen(%v, %v) = %v, want %v (not symmetric)", tc.b, tc.a, got, tc.want)
		}
	}
}

// TestWidenHoldsValues checks the lattice invariant: a value that fits a
// type fits every widening of it.
func TestWidenHoldsValues(t *testing.T) {
	values := []string{`1`, `-7`, `2.25`, `0.001`, `1e3`, `true`, `"2024-01-02T03:04:05Z"`, `"x"`, `{"a":1}`, `[1,2]`, `99999999999999999999`}
	for _, v := range values {
		vt, _ := Infer([]byte(v))
		for _, w := range values {
			wt, _ := Infer([]byte(w))
			j := Widen(vt, wt)
			if !Fits(j, []byte(v)) || !Fits(j, []byte(w)) {
				t.Errorf("Widen(%v, %v) = %v does not hold %s and %s", vt, wt, j, v, w)
			}
		}
	}
}

func TestConvert(t *testing.T) {
	ts := time.Date(2024, 1, 2, 1, 4, 5, 123456000, time.UTC)
	for _, tc := range []struct {
		typ     Type
		raw     string
		lenient bool
		want    any
		err     bool
	}{
		{TBigInt, `42`, false, int64(42), false},
		{TBigInt, `"42"`, false, nil, true},
		{TBigInt, `"42"`, true, int64(42), false},
		{TBigInt, `4.0`, true, int64(4), false},
		{TBigInt, `4.5`, true, nil, true},
		{Type{Kind: Integer}, `3000000000`, true, nil, true},
		{TDouble, `1.5e3`, false, 1500.0, false},
		{TDouble, `"x"`, true, nil, true},
		{DecimalType(10, 2), `12.5`, false, "12.50", false},
		{DecimalType(10, 2), `"12.5"`, true, "12.50", false},
		{DecimalType(10, 2), `12.345`, false, nil, true},
		{DecimalType(10, 2), `12.340`, false, "12.34", false},
		{DecimalType(4, 2), `123.4`, false, nil, true},
		{DecimalType(10, 2), `-0.05`, false, "-0.05", false},
		{DecimalType(10, 2), `1.5e1`, false, "15.00", false},
		{TBoolean, `true`, false, true, false},
		{TBoolean, `"false"`, true, false, false},
		{TBoolean, `1`, true, nil, true},
		{TTimestamp, `"2024-01-02T03:04:05.123456+02:00"`, false, ts, false},
		{TTimestamp, `"2024-01-02 01:04:05.123456"`, false, nil, true},
		{TTimestamp, `"2024-01-02 01:04:05.123456"`, true, ts, false},
		{TTimestamp, `1704157445`, true, nil, true},
		{Type{Kind: Date}, `"2024-02-29"`, true, time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC), false},
		{TVarchar, `"a\"b\u00e9"`, false, `a"bé`, false},
		{TVarchar, `12.50`, false, "12.50", false},
		{TVarchar, `{ "a" : 1 }`, false, `{"a":1}`, false},
		{TJSON, `"s"`, false, json.RawMessage(`"s"`), false},
		{TBigInt, `null`, false, nil, false},
	} {
		got, err := Convert(tc.typ, []byte(tc.raw), tc.lenient)
		if tc.err {
			if !errors.Is(err, ErrNotRepresentable) {
				t.Errorf("Convert(%v, %s, %v) = %v, %v; want ErrNotRepresentable", tc.typ, tc.raw, tc.lenient, got, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("Convert(%v, %s, %v): %v", tc.typ, tc.raw, tc.lenient, err)
			continue
		}
		if d, ok := got.(DecimalValue); ok {
			got = d.String()
		}
		if tm, ok := got.(time.Time); ok {
			if !tm.Equal(tc.want.(time.Time)) || tm.Location() != time.UTC {
				t.Errorf("Convert(%v, %s) = %v, want %v in UTC", tc.typ, tc.raw, tm, tc.want)
			}
			continue
		}
		if j, ok := got.(json.RawMessage); ok {
			got = string(j)
			tc.want = string(tc.want.(json.RawMessage))
		}
		if got != tc.want {
			t.Errorf("Convert(%v, %s, %v) = %#v, want %#v", tc.typ, tc.raw, tc.lenient, got, tc.want)
		}
		if !tc.lenient && !Fits(tc.typ, []byte(tc.raw)) {
			t.Errorf("Fits(%v, %s) = false but strict Convert succeeds", tc.typ, tc.raw)
		}
	}
}

func TestValidateIdent(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"orders", true},
		{"Ordres Ünïcode 名前", true},
		{`quote"d`, true},
		{"", false},
		{strings.Repeat("a", 63), true},
		{strings.Repeat("a", 64), false},
		{"nul\x00", false},
		{"tab\t", false},
		{"del\x7f", false},
		{"c1\u0085", false},
		{"_cdc_x", false},
		{"_CDC_x", false},
		{"\xff", false},
	} {
		if err := ValidateIdent(tc.name); (err == nil) != tc.ok {
			t.Errorf("ValidateIdent(%q) = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
	if err := ValidateTable(strings.Repeat("a", 56)); err == nil {
		t.Error("ValidateTable accepts a name whose view name exceeds 63 bytes")
	}
	if err := ValidateTable("CDC_Events"); err == nil {
		t.Error("ValidateTable accepts the event log's name")
	}
}

func TestQuote(t *testing.T) {
	if got := QuoteIdent(`a"b`); got != `"a""b"` {
		t.Errorf("QuoteIdent = %s", got)
	}
	if got := QuoteLiteral(`it's \n`); got != `'it''s \n'` {
		t.Errorf("QuoteLiteral = %s", got)
	}
	if got := jsonPointer("a/b~c"); got != "/a~1b~0c" {
		t.Errorf("jsonPointer = %s", got)
	}
}

func TestUpsertStatements(t *testing.T) {
	got := UpsertRows(DuckDB, "t", []string{ColRecordID, ColCommitOrder, "v"}, "src")
	want := "INSERT INTO \"t\" (\"_cdc_record_id\", \"_cdc_commit_order\", \"v\")\nSELECT \"_cdc_record_id\", \"_cdc_commit_order\", \"v\" FROM src\n" +
		"ON CONFLICT (\"_cdc_record_id\") DO UPDATE SET \"_cdc_commit_order\" = excluded.\"_cdc_commit_order\", \"v\" = excluded.\"v\"\n" +
		"WHERE excluded.\"_cdc_commit_order\" > \"t\".\"_cdc_commit_order\""
	if got != want {
		t.Errorf("UpsertRows =\n%s\nwant\n%s", got, want)
	}
	if got := DeleteRows(Postgres, "t", "src"); got != `DELETE FROM "t" USING src WHERE "t"."_cdc_record_id" = src."_cdc_record_id" AND "t"."_cdc_commit_order" < src."_cdc_commit_order"` {
		t.Errorf("DeleteRows = %s", got)
	}
	if got := SelectStoredOrders(Postgres, "t"); !strings.Contains(got, `"_cdc_record_id" = ANY(CAST($1 AS TEXT[]))`) {
		t.Errorf("postgres SelectStoredOrders = %s", got)
	}
	if got := UpsertCheckpoint(DuckDB); !strings.Contains(got, "ON CONFLICT (source, partition) DO UPDATE SET applied_source = excluded.applied_source") || !strings.Contains(got, "$14") {
		t.Errorf("UpsertCheckpoint = %s", got)
	}
}
