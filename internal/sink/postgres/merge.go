package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/sink"
	"github.com/cdcflow/cdcflow/internal/sqlgen"
)

// group is the events of one batch for one (table, record_id).
type group struct {
	t      *tableState
	key    string
	events []*planned
	winner *planned
}

// putRow is a merged row to write: bookkeeping from pe, values from fields.
type putRow struct {
	pe      *planned
	fields  []field
	deleted bool // soft delete carrying the row's last values
}

// delRow is a delete that wins: it becomes a tombstone and, with merge,
// removes (or marks) the merged row.
type delRow struct {
	table string
	pe    *planned
	merge bool
}

// deleteStage is the staging table of the batch's winning deletes.
const deleteStage = sqlgen.ReservedPrefix + "stage_deletes"

// merge applies the batch's latest event per key to the merged tables, when
// it is newer than the stored row or tombstone, and counts every logged
// event as Applied, Duplicates or Stale. The decision is made in Go from the
// stored orders read in this transaction; the statements repeat it in SQL.
func (s *Sink) merge(ctx context.Context, tx pgx.Tx, p *batchPlan, res *change.ApplyResult, newStaged map[string]bool) error {
	type gkey struct {
		t   *tableState
		key string
	}
	groups := map[gkey]*group{}
	perTable := map[*tableState][]*group{}
	for i := range p.events {
		pe := &p.events[i]
		k := gkey{pe.t, pe.e.Key}
		g := groups[k]
		if g == nil {
			g = &group{t: pe.t, key: pe.e.Key, winner: pe}
			groups[k] = g
			perTable[pe.t] = append(perTable[pe.t], g)
		} else if change.Compare(pe.e, g.winner.e) > 0 {
			g.winner = pe
		}
		g.events = append(g.events, pe)
	}
	var dels []delRow
	var touched []*tableState
	for _, t := range p.order {
		gs := perTable[t]
		if len(gs) == 0 {
			continue
		}
		stored, err := s.storedOrders(ctx, tx, t, gs)
		if err != nil {
			return err
		}
		soft := s.soft(t.name)
		var puts []putRow
		hasDels := false
		for _, g := range gs {
			sk := stored[g.key]
			st := max(sk.row, sk.tomb)
			apply := st == "" || g.winner.order > st
			for _, pe := range g.events {
				switch {
				case apply && pe == g.winner:
					res.Applied++
				case pe.order == st || (apply && change.SameChange(pe.e, g.winner.e)):
					res.Duplicates++
				default:
					res.Stale++
				}
			}
			if !apply {
				continue
			}
			switch {
			case g.winner.e.Op != change.Delete:
				puts = append(puts, putRow{pe: g.winner, fields: g.winner.fields})
			case soft:
				// Keep the last values the row had: those of the batch's
				// latest put when it is newer than the stored row, else the
				// stored ones.
				if prev := latestPut(g, sk.row); prev != nil {
					puts = append(puts, putRow{pe: g.winner, fields: prev.fields, deleted: true})
					dels = append(dels, delRow{t.name, g.winner, false})
				} else {
					dels = append(dels, delRow{t.name, g.winner, true})
					hasDels = true
				}
			default:
				dels = append(dels, delRow{t.name, g.winner, true})
				hasDels = true
			}
		}
		if err := s.writeUpserts(ctx, tx, t, puts, newStaged); err != nil {
			return err
		}
		if hasDels {
			touched = append(touched, t)
		}
	}
	return s.writeDeletes(ctx, tx, dels, touched, newStaged)
}

// latestPut returns the newest non-delete event of g that is newer than the
// stored row's order, or nil.
func latestPut(g *group, stored string) *planned {
	var best *planned
	for _, pe := range g.events {
		if pe.e.Op != change.Delete && pe.order > stored && (best == nil || change.Compare(pe.e, best.e) > 0) {
			best = pe
		}
	}
	return best
}

// storedKey is what the database holds for one key: the commit order of its
// merged row and of its tombstone ("" when absent).
type storedKey struct{ row, tomb string }

// storedOrders reads, for the keys of gs, the commit orders of their stored
// rows and tombstones, in one query.
func (s *Sink) storedOrders(ctx context.Context, tx pgx.Tx, t *tableState, gs []*group) (map[string]storedKey, error) {
	out := map[string]storedKey{}
	if !t.registered {
		return out, nil // created by this batch: nothing stored
	}
	keys := make([]string, len(gs))
	for i, g := range gs {
		keys[i] = g.key
	}
	rows, err := tx.Query(ctx, sqlgen.StoredOrdersOf(dialect, t.name, t.merged), keys, t.name)
	if err != nil {
		return nil, fmt.Errorf("read stored orders of %s: %w", t.name, err)
	}
	defer rows.Close()
	for rows.Next() {
		var k string
		var row, tomb *string
		if err := rows.Scan(&k, &row, &tomb); err != nil {
			return nil, fmt.Errorf("read stored orders of %s: %w", t.name, err)
		}
		var sk storedKey
		if row != nil {
			sk.row = *row
		}
		if tomb != nil {
			sk.tomb = *tomb
		}
		out[k] = sk
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read stored orders of %s: %w", t.name, err)
	}
	return out, nil
}

// stage creates (once per connection) the staging table name with cols.
func (s *Sink) stage(ctx context.Context, tx pgx.Tx, name string, cols []sqlgen.Column, newStaged map[string]bool) error {
	if s.staged[name] || newStaged[name] {
		return nil
	}
	if _, err := tx.Exec(ctx, sqlgen.CreateStaging(dialect, name, cols)); err != nil {
		return fmt.Errorf("create staging table: %w", err)
	}
	newStaged[name] = true
	return nil
}

var bookkeeping = []sqlgen.Column{
	{Name: sqlgen.ColRecordID, Type: sqlgen.TVarchar},
	{Name: sqlgen.ColCommitOrder, Type: sqlgen.TVarchar},
	{Name: sqlgen.ColCommitTimestamp, Type: sqlgen.Type{Kind: sqlgen.TimestampTZ}},
	{Name: sqlgen.ColOp, Type: sqlgen.TVarchar},
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

// writeUpserts stages the winning puts of t with COPY and merges them into
// its merged table.
func (s *Sink) writeUpserts(ctx context.Context, tx pgx.Tx, t *tableState, puts []putRow, newStaged map[string]bool) error {
	if len(puts) == 0 {
		return nil
	}
	cols := append([]sqlgen.Column(nil), bookkeeping...)
	if t.hasDeleted {
		cols = append(cols, sqlgen.Column{Name: sqlgen.ColDeleted, Type: sqlgen.TBoolean})
	}
	cols = append(cols, t.columns()...)
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.Name
	}
	name := sqlgen.StagingName(t.name, cols)
	if err := s.stage(ctx, tx, name, cols, newStaged); err != nil {
		return fmt.Errorf("merge into %s: %w", t.name, err)
	}
	vals := make([][]byte, len(t.cols))
	r := newRowReader(len(puts), func(i int, b []byte) ([]byte, error) {
		pr := &puts[i]
		pe := pr.pe
		b = appendInt16(b, int16(len(cols)))
		b = appendText(b, pe.e.Key)
		b = appendText(b, pe.order)
		b = appendTimestampNS(b, pe.e.Order.CommitNS)
		b = appendText(b, string(pe.e.Op))
		if t.hasDeleted {
			b = append(appendInt32(b, 1), boolByte(pr.deleted))
		}
		clear(vals)
		for _, f := range pr.fields {
			vals[f.col.index] = f.raw
		}
		for ci, c := range t.cols {
			var err error
			if b, err = appendValue(b, c.typ, vals[ci], c.pinned); err != nil {
				// checkImage guarantees a fit; reaching this is a bug, and
				// retrying cannot fix it.
				return b, fmt.Errorf("%w: event at %s column %q: %v", sink.ErrPermanent, pe.e.Position, c.name, err)
			}
		}
		return b, nil
	})
	if _, err := tx.Conn().PgConn().CopyFrom(ctx, r, copySQL(sqlgen.Staged(name), names)); err != nil {
		if r.err != nil {
			err = r.err
		}
		return fmt.Errorf("stage %d rows for %s: %w", len(puts), t.name, err)
	}
	if _, err := tx.Exec(ctx, sqlgen.UpsertStaged(dialect, t.name, names, name), t.name); err != nil {
		return fmt.Errorf("merge %d rows into %s: %w", len(puts), t.name, err)
	}
	return nil
}

// writeDeletes stages the winning deletes of every table with one COPY,
// removes (or marks) the merged rows of the touched tables and records the
// tombstones.
func (s *Sink) writeDeletes(ctx context.Context, tx pgx.Tx, dels []delRow, touched []*tableState, newStaged map[string]bool) error {
	if len(dels) == 0 {
		return nil
	}
	if err := s.stage(ctx, tx, deleteStage, sqlgen.DeleteStagingColumns, newStaged); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	names := make([]string, len(sqlgen.DeleteStagingColumns))
	for i, c := range sqlgen.DeleteStagingColumns {
		names[i] = c.Name
	}
	r := newRowReader(len(dels), func(i int, b []byte) ([]byte, error) {
		d := &dels[i]
		b = appendInt16(b, int16(len(names)))
		b = appendText(b, d.table)
		b = appendText(b, d.pe.e.Key)
		b = appendText(b, d.pe.order)
		b = appendTimestampNS(b, d.pe.e.Order.CommitNS)
		return append(appendInt32(b, 1), boolByte(d.merge)), nil
	})
	if _, err := tx.Conn().PgConn().CopyFrom(ctx, r, copySQL(sqlgen.Staged(deleteStage), names)); err != nil {
		return fmt.Errorf("stage %d deletes: %w", len(dels), err)
	}
	for _, t := range touched {
		q := sqlgen.DeleteStaged(dialect, t.name, deleteStage)
		if s.soft(t.name) {
			q = sqlgen.SoftDeleteStaged(dialect, t.name, deleteStage)
		}
		if _, err := tx.Exec(ctx, q, t.name); err != nil {
			return fmt.Errorf("delete from %s: %w", t.name, err)
		}
	}
	if _, err := tx.Exec(ctx, sqlgen.UpsertTombstonesStaged(dialect, deleteStage)); err != nil {
		return fmt.Errorf("store %d tombstones: %w", len(dels), err)
	}
	return nil
}
