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
	// blind: the winner is staged whatever is stored, and applied says
	// whether a statement applied it.
	blind, applied bool
}

// putRow is a merged row to write: bookkeeping from pe, values from fields.
type putRow struct {
	pe      *planned
	fields  []field
	deleted bool // soft delete carrying the row's last values
}

// delRow is a delete that wins (or, blind, may win): it becomes a
// tombstone and, with merge, removes (or marks) the merged row.
type delRow struct {
	t     *tableState
	pe    *planned
	merge bool
}

// deleteStage is the staging table of the batch's winning deletes.
const deleteStage = sqlgen.ReservedPrefix + "stage_deletes"

// merge applies the batch's latest event per key to the merged tables, when
// it is newer than the stored row and tombstone, and counts every logged
// event as Applied, Duplicates or Stale.
//
// The statements decide. The winner of a key with a single event in the
// batch is staged blind, whatever is stored; the upsert and the delete
// return the keys they applied, and only the keys they did not apply are
// read afterwards, to tell a duplicate (the stored order is the event's)
// from a stale event: that read sees what was stored before, since the
// statements changed nothing for those keys (a row the upsert inserted past
// a tombstone is removed again first). The keys whose counting or staging
// needs the stored orders before the write (several events in the batch; a
// soft delete, which keeps the row's last values) are read first and
// decided in Go, as the statements would decide; their guards repeat the
// decision. Merges of one table are serialized by its advisory lock
// (lockTables), so what is read is what the statements see.
//
// The upsert relies on a merged row never being older than its key's
// tombstone (a put goes in only past the tombstone, a tombstone only past
// the row): overwriting a row newer than the put needs no tombstone check,
// so only the rows it inserted are checked, afterwards.
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
	blind := map[*tableState]map[string]*group{}
	for _, t := range p.order {
		gs := perTable[t]
		if len(gs) == 0 {
			continue
		}
		soft := s.soft(t.name)
		bt := map[string]*group{}
		var first []*group
		for _, g := range gs {
			if len(g.events) == 1 && (!soft || g.winner.e.Op != change.Delete) {
				g.blind = true
				bt[g.key] = g
			} else {
				first = append(first, g)
			}
		}
		var stored map[string]storedKey
		if t.registered { // else created by this batch: nothing stored
			var err error
			if stored, err = s.storedOrders(ctx, tx, t, first); err != nil {
				return err
			}
		}
		var puts []putRow
		for _, g := range gs {
			if g.blind {
				if g.winner.e.Op == change.Delete {
					dels = append(dels, delRow{t, g.winner, true})
				} else {
					puts = append(puts, putRow{pe: g.winner, fields: g.winner.fields})
				}
				continue
			}
			sk := stored[g.key]
			st := max(sk.row, sk.tomb)
			apply := st == "" || g.winner.order > st
			count(res, g, st, apply)
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
					dels = append(dels, delRow{t, g.winner, false})
				} else {
					dels = append(dels, delRow{t, g.winner, true})
				}
			default:
				dels = append(dels, delRow{t, g.winner, true})
			}
		}
		if err := s.writeUpserts(ctx, tx, t, puts, newStaged, bt); err != nil {
			return err
		}
		blind[t] = bt
	}
	if err := s.writeDeletes(ctx, tx, p.order, dels, newStaged, blind); err != nil {
		return err
	}
	return s.countBlind(ctx, tx, p.order, blind, res)
}

// count counts the events of g, given the stored order st of its key and
// whether its winner applies.
func count(res *change.ApplyResult, g *group, st string, apply bool) {
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
}

// countBlind counts the blind groups: Applied when a statement applied
// their event, else Duplicates or Stale by the stored orders of their keys,
// read now (this transaction did not change them).
func (s *Sink) countBlind(ctx context.Context, tx pgx.Tx, order []*tableState, blind map[*tableState]map[string]*group, res *change.ApplyResult) error {
	for _, t := range order {
		var rest []*group
		for _, g := range blind[t] {
			if g.applied {
				res.Applied++
			} else {
				rest = append(rest, g)
			}
		}
		if len(rest) == 0 {
			continue
		}
		stored, err := s.storedOrders(ctx, tx, t, rest)
		if err != nil {
			return err
		}
		for _, g := range rest {
			sk := stored[g.key]
			count(res, g, max(sk.row, sk.tomb), false)
		}
	}
	return nil
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
	out := make(map[string]storedKey, len(gs))
	if len(gs) == 0 {
		return out, nil
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

// markApplied reads the record ids a statement returns and marks the blind
// groups among them (in bt) applied.
func markApplied(rows pgx.Rows, bt map[string]*group) error {
	return scanKeys(rows, func(key []byte) {
		if g := bt[string(key)]; g != nil {
			g.applied = true
		}
	})
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

// writeUpserts stages the winning puts of t with COPY, merges them into its
// merged table and marks the blind groups (in bt) whose put applied. Rows
// it inserted whose key has a tombstone at least as new are removed again
// (and their groups unmarked): the upsert itself does not probe tombstones.
func (s *Sink) writeUpserts(ctx context.Context, tx pgx.Tx, t *tableState, puts []putRow, newStaged map[string]bool, bt map[string]*group) error {
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
	rows, err := tx.Query(ctx, sqlgen.UpsertStaged(dialect, t.name, names, name))
	var keys, orders []string // of the new rows
	if err == nil {
		keys, orders, err = markUpserted(rows, bt)
	}
	if err != nil {
		return fmt.Errorf("merge %d rows into %s: %w", len(puts), t.name, err)
	}
	if len(keys) == 0 {
		return nil
	}
	// A new row whose key has a tombstone at least as new must not stay.
	var undo []string
	rows, err = tx.Query(ctx, sqlgen.Tombstoned(dialect), t.name, keys, orders)
	if err == nil {
		err = scanKeys(rows, func(key []byte) { undo = append(undo, string(key)) })
	}
	if err == nil && len(undo) > 0 {
		rows, err = tx.Query(ctx, sqlgen.UndoTombstoned(dialect, t.name), t.name, undo)
		n := 0
		if err == nil {
			err = scanKeys(rows, func(key []byte) {
				n++
				if g := bt[string(key)]; g != nil {
					g.applied = false
				}
			})
		}
		if err == nil && n != len(undo) {
			err = fmt.Errorf("removed %d of %d rows past their tombstones", n, len(undo))
		}
	}
	if err != nil {
		return fmt.Errorf("merge %d rows into %s: tombstones of new rows: %w", len(puts), t.name, err)
	}
	return nil
}

// markUpserted reads the (record id, commit order of a new row or NULL) rows
// the upsert returns, marks the blind groups among them (in bt) applied, and
// returns the keys and orders of the new rows.
func markUpserted(rows pgx.Rows, bt map[string]*group) (keys, orders []string, err error) {
	defer rows.Close()
	for rows.Next() {
		raw := rows.RawValues()
		if len(raw) != 2 {
			return nil, nil, fmt.Errorf("upsert returned %d columns, want 2", len(raw))
		}
		if g := bt[string(raw[0])]; g != nil {
			g.applied = true
		}
		if raw[1] != nil {
			keys = append(keys, string(raw[0]))
			orders = append(orders, string(raw[1]))
		}
	}
	return keys, orders, rows.Err()
}

// scanKeys calls fn with the single text column of every row.
func scanKeys(rows pgx.Rows, fn func(key []byte)) error {
	defer rows.Close()
	for rows.Next() {
		raw := rows.RawValues()
		if len(raw) != 1 {
			return fmt.Errorf("returned %d columns, want 1", len(raw))
		}
		fn(raw[0])
	}
	return rows.Err()
}

// writeDeletes stages the winning deletes of every table with one COPY and,
// per table (in order), applies them: without soft deletes one statement
// stores the tombstones, removes the older rows and returns the keys whose
// delete applied (marking the blind groups of blind); with soft deletes the
// rows are marked and the tombstones stored (all decided in Go).
func (s *Sink) writeDeletes(ctx context.Context, tx pgx.Tx, order []*tableState, dels []delRow, newStaged map[string]bool, blind map[*tableState]map[string]*group) error {
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
	has := map[*tableState]bool{}
	for _, d := range dels {
		has[d.t] = true
	}
	r := newRowReader(len(dels), func(i int, b []byte) ([]byte, error) {
		d := &dels[i]
		b = appendInt16(b, int16(len(names)))
		b = appendText(b, d.t.name)
		b = appendText(b, d.pe.e.Key)
		b = appendText(b, d.pe.order)
		b = appendTimestampNS(b, d.pe.e.Order.CommitNS)
		return append(appendInt32(b, 1), boolByte(d.merge)), nil
	})
	if _, err := tx.Conn().PgConn().CopyFrom(ctx, r, copySQL(sqlgen.Staged(deleteStage), names)); err != nil {
		return fmt.Errorf("stage %d deletes: %w", len(dels), err)
	}
	for _, t := range order {
		if !has[t] {
			continue
		}
		if !s.soft(t.name) {
			rows, err := tx.Query(ctx, sqlgen.DeleteStaged(dialect, t.name, deleteStage), t.name)
			if err == nil {
				err = markApplied(rows, blind[t])
			}
			if err != nil {
				return fmt.Errorf("delete from %s: %w", t.name, err)
			}
			continue
		}
		if _, err := tx.Exec(ctx, sqlgen.SoftDeleteStaged(dialect, t.name, deleteStage), t.name); err != nil {
			return fmt.Errorf("delete from %s: %w", t.name, err)
		}
		if _, err := tx.Exec(ctx, sqlgen.UpsertTombstonesStaged(dialect, deleteStage), t.name); err != nil {
			return fmt.Errorf("store tombstones of %s: %w", t.name, err)
		}
	}
	return nil
}
