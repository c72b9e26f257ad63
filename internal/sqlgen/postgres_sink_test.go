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
		"undo":        UndoTombstoned(Postgres, table),
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
	if q := UpsertStaged(Postgres, "t", []string{ColRecordID, ColCommitOrder}, "s"); !strings.Contains(q, `WHERE excluded."_cdc_commit_order" > "t"."_cdc_commit_order"`) ||
		!strings.HasSuffix(q, `RETURNING "_cdc_record_id", CASE WHEN xmax = 0 THEN "_cdc_commit_order" END`) {
		t.Errorf("UpsertStaged lacks its guard or RETURNING: %s", q)
	}
	if q := Tombstoned(Postgres); !strings.Contains(q, "tb.table_name = $1 AND tb.record_id = k.id) >= k.ord") {
		t.Errorf("Tombstoned: %s", q)
	}
	if q := UndoTombstoned(Postgres, "t"); !strings.Contains(q, `tb.record_id = m."_cdc_record_id") >= m."_cdc_commit_order"`) {
		t.Errorf("UndoTombstoned lacks its guard: %s", q)
	}
	if q := DeleteStaged(Postgres, "t", "s"); !strings.Contains(q, `WHERE m."_cdc_record_id" = s.record_id) < s.commit_order, true)`) ||
		!strings.Contains(q, `WHERE excluded."commit_order" > "_cdc_tombstones"."commit_order"`) ||
		!strings.Contains(q, `m."_cdc_commit_order" < tomb.commit_order`) || !strings.HasSuffix(q, "SELECT record_id FROM tomb") {
		t.Errorf("DeleteStaged lacks its guards or RETURNING: %s", q)
	}
	if q := CreateStaging(Postgres, "_cdc_stage_x", DeleteStagingColumns); !strings.Contains(q, `"commit_order" TEXT COLLATE "C"`) || !strings.Contains(q, "ON COMMIT DELETE ROWS") {
		t.Errorf("CreateStaging: %s", q)
	}
}
