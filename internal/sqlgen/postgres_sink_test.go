package sqlgen

import (
	"strings"
	"testing"
)

func TestChunkRows(t *testing.T) {
	for _, width := range []int{1, 2, 14, 1000, MaxParams, MaxParams + 1} {
		n := ChunkRows(width)
		if n < 1 || (width <= MaxParams && n*width > MaxParams) || (width <= MaxParams && (n+1)*width <= MaxParams) {
			t.Errorf("ChunkRows(%d) = %d", width, n)
		}
	}
}

func TestUpsertValuesRows(t *testing.T) {
	got := UpsertValuesRows(Postgres, "tab", []string{"k", "v"}, 1, 2)
	want := `INSERT INTO "tab" ("k", "v") VALUES ($1, $2), ($3, $4) ON CONFLICT ("k") DO UPDATE SET "v" = excluded."v"`
	if got != want {
		t.Errorf("UpsertValuesRows =\n%s\nwant\n%s", got, want)
	}
}

func TestStagingName(t *testing.T) {
	a := StagingName("orders", []Column{{Name: "id", Type: TBigInt}})
	b := StagingName("orders", []Column{{Name: "id", Type: TVarchar}})
	c := StagingName("orders", []Column{{Name: "id", Type: TBigInt}})
	if a == b || a != c {
		t.Errorf("StagingName: %s %s %s; want a change of type to change the name, and nothing else", a, b, c)
	}
	if !strings.HasPrefix(a, ReservedPrefix) || len(a) > MaxIdentLen {
		t.Errorf("StagingName = %q: want the reserved prefix and at most %d bytes", a, MaxIdentLen)
	}
}

// TestPostgresSinkStatementsQuote checks that names reach the statements
// quoted and that table names are parameters where they are compared.
func TestPostgresSinkStatementsQuote(t *testing.T) {
	table := `we"ird`
	for name, q := range map[string]string{
		"upsert":      UpsertStaged(Postgres, table, []string{ColRecordID, ColCommitOrder, "a\"b"}, "_cdc_stage_x"),
		"delete":      DeleteStaged(Postgres, table, "_cdc_stage_x"),
		"soft delete": SoftDeleteStaged(Postgres, table, "_cdc_stage_x"),
		"stored":      StoredOrdersOf(Postgres, table, true),
		"add column":  AddColumnIfNotExists(Postgres, table, Column{Name: `c"1`, Type: TJSON}),
		"fillfactor":  SetFillfactor(table, 80),
		"drop view":   DropView(table),
	} {
		if !strings.Contains(q, `"we""ird`) {
			t.Errorf("%s: table name not quoted: %s", name, q)
		}
		if strings.Contains(q, `'we"ird'`) {
			t.Errorf("%s: table name as a literal instead of a parameter: %s", name, q)
		}
	}
	if q := UpsertStaged(Postgres, "t", []string{ColRecordID, ColCommitOrder}, "s"); !strings.Contains(q, "tb.table_name = $1") ||
		!strings.Contains(q, "tb.commit_order >= s.\"_cdc_commit_order\"") || !strings.Contains(q, `WHERE excluded."_cdc_commit_order" > "t"."_cdc_commit_order"`) {
		t.Errorf("UpsertStaged lacks its guards: %s", q)
	}
	if q := CreateStaging(Postgres, "_cdc_stage_x", DeleteStagingColumns); !strings.Contains(q, `"commit_order" TEXT COLLATE "C"`) || !strings.Contains(q, "ON COMMIT DELETE ROWS") {
		t.Errorf("CreateStaging: %s", q)
	}
}
