package duckdb

import (
	"context"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	duckdb "github.com/duckdb/duckdb-go/v2"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/sink"
	"github.com/cdcflow/cdcflow/internal/sqlgen"
)

// planned is one accepted event of a batch.
type planned struct {
	e      *change.Event
	t      *tableState
	fields []field // the After image's non-null values (nil for deletes)
	order  string  // e.Order.Key()
}

type field struct {
	col *colState
	raw []byte
}

// rejected is an event this sink dead-letters.
type rejected struct {
	e      *change.Event
	table  string
	reason string
	detail string
}

// batchPlan is everything decided in Go before the transaction starts.
type batchPlan struct {
	events  []planned
	dead    []rejected
	pending map[string]*tableState // by folded name: planned state of touched tables
	order   []*tableState          // touched tables in first-seen order
}

// Apply stores the batch in one transaction: event log rows, merged-table
// changes, tombstones, dead letters and checkpoints. See the package doc for
// the merge rules and the counts in the result.
func (s *Sink) Apply(ctx context.Context, b *change.Batch) (change.ApplyResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var res change.ApplyResult
	if s.closed {
		return res, errors.New("duckdb sink: apply after close")
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	if b == nil {
		b = &change.Batch{}
	}
	b, derr := s.dropRecorded(ctx, b) // record_positions.go
	if derr != nil {
		return res, derr
	}
	p := s.plan(b)
	if len(p.dead) > 0 && !s.opts.DeadLetterTable {
		r := p.dead[0]
		return res, fmt.Errorf("%w: event at %s (table %q, record_id %q): %s: %s",
			sink.ErrPermanent, r.e.Position, r.table, r.e.Key, r.reason, r.detail)
	}
	now := time.Now().UTC()
	nextID := s.nextID
	err := s.thread.run(func() error {
		if s.broken {
			if err := s.reopen(ctx); err != nil {
				return err
			}
		}
		err := s.inTx(ctx, func() error {
			for _, t := range p.order {
				for _, st := range schemaDDL(t, s.opts.LogOnly, s.soft(t.name), now) {
					if _, err := s.conn.ExecContext(ctx, st.sql, st.args...); err != nil {
						return fmt.Errorf("evolve table %s: %w", t.name, err)
					}
				}
			}
			if err := s.writeLog(ctx, p.events, &nextID, now); err != nil {
				return err
			}
			if err := s.writeChunks(ctx, b.Events, now); err != nil {
				return err
			}
			if err := s.writeRecordPositions(ctx, b, now); err != nil { // record_positions.go
				return err
			}
			if s.opts.DeadLetterTable {
				if err := s.writeDeadLetters(ctx, b.Dead, p.dead, now); err != nil {
					return err
				}
			}
			if !s.opts.LogOnly {
				if err := s.merge(ctx, p, &res); err != nil {
					return err
				}
			}
			for _, c := range b.Checkpoints {
				if _, err := s.conn.ExecContext(ctx, sqlgen.UpsertCheckpoint(dialect),
					c.Source, c.Partition,
					c.Applied.Source, c.Applied.Partition, c.Applied.Offset, int64(c.Applied.Index), c.Applied.Indexed,
					c.Held,
					c.Resume.Source, c.Resume.Partition, c.Resume.Offset, int64(c.Resume.Index), c.Resume.Indexed,
					now); err != nil {
					return fmt.Errorf("store checkpoint %s[%s]: %w", c.Source, c.Partition, err)
				}
			}
			if s.beforeCommit != nil {
				return s.beforeCommit()
			}
			return nil
		})
		switch {
		case err == nil:
			s.maybeCheckpoint(ctx, len(p.events))
		case fatal(err):
			// The batch is not committed (or, if COMMIT's own checkpoint
			// failed, it is in the WAL, and a redelivery is idempotent):
			// reopen now so the retry finds a working database.
			_ = s.reopen(ctx)
		}
		return err
	})
	if err != nil {
		return change.ApplyResult{}, classify(fmt.Errorf("apply batch of %d events to duckdb %q: %w", len(b.Events), s.opts.Path, err))
	}
	// Committed: the planned schema is now the stored one.
	for _, t := range p.order {
		t.settle()
		s.tables[dialect.Fold(t.name)] = t
	}
	s.nextID = nextID
	res.Logged = len(p.events)
	for _, pe := range p.events {
		if res.Tables == nil {
			res.Tables = map[string]int{}
		}
		res.Tables[pe.t.name]++
	}
	if s.opts.DeadLetterTable {
		for _, d := range b.Dead {
			addDead(&res, d.Reason)
		}
		for _, r := range p.dead {
			addDead(&res, r.reason)
		}
	}
	return res, nil
}

func addDead(r *change.ApplyResult, reason string) {
	if r.Dead == nil {
		r.Dead = map[string]int{}
	}
	r.Dead[reason]++
}

// tableName maps an event to its merged table name.
func (s *Sink) tableName(e *change.Event) string {
	if s.opts.TableNaming == NamingSchemaTable && e.Schema != "" {
		return e.Schema + "_" + e.Table
	}
	return e.Table
}

// plan validates the batch's events, evolves the planned schema of their
// tables, and records which events are dead letters. It does no I/O.
func (s *Sink) plan(b *change.Batch) *batchPlan {
	p := &batchPlan{events: make([]planned, 0, len(b.Events)), pending: map[string]*tableState{}}
	var scratch []fieldInfo
	mark := 0
	for i := range b.Events {
		e := &b.Events[i]
		name := s.tableName(e)
		reject := func(reason, format string, args ...any) {
			p.dead = append(p.dead, rejected{e: e, table: name, reason: reason, detail: fmt.Sprintf(format, args...)})
		}
		if !e.Op.Valid() {
			reject(change.ReasonInvalidOp, "operation %q is not c, u, d or r", string(e.Op))
			continue
		}
		t, err := s.tableFor(p, name, e)
		if err != nil {
			reject(ReasonInvalidIdentifier, "table: %v", err)
			continue
		}
		if f := invalidText(e); f != "" {
			// DuckDB stores invalid UTF-8 without complaint and then
			// returns NULL or fails whole queries: reject it here.
			reject(change.ReasonInvalidValue, "%s is not valid UTF-8", f)
			continue
		}
		pe := planned{e: e, t: t, order: e.Order.Key()}
		if e.Op == change.Delete {
			if e.Before != nil {
				if err := sqlgen.Fields(e.Before, func(string, []byte) error { return nil }); err != nil {
					reject(change.ReasonInvalidValue, "before image: %v", err)
					continue
				}
			}
			p.events = append(p.events, pe)
			continue
		}
		mark++
		scratch, err = s.checkImage(t, e.After, mark, scratch[:0])
		if err != nil {
			var c *conflict
			if errors.As(err, &c) {
				reject(c.reason, "%s", c.detail)
			} else {
				reject(change.ReasonInvalidValue, "after image: %v", err)
			}
			continue
		}
		pe.fields = s.commitImage(t, scratch)
		p.events = append(p.events, pe)
	}
	return p
}

// invalidText names the first text field of e that is not valid UTF-8.
func invalidText(e *change.Event) string {
	switch {
	case !utf8.ValidString(e.Key):
		return "record_id"
	case !utf8.ValidString(e.Schema):
		return "schema"
	case !utf8.ValidString(e.TxID):
		return "tx_id"
	case !utf8.ValidString(e.Order.Seq):
		return "order seq"
	}
	return ""
}

// tableFor returns the planned state of the merged table called name,
// registering it when new. Names that are invalid or collide with another
// table or view are errors.
func (s *Sink) tableFor(p *batchPlan, name string, e *change.Event) (*tableState, error) {
	key := dialect.Fold(name)
	t := p.pending[key]
	if t == nil {
		if err := sqlgen.ValidateTable(name); err != nil {
			return nil, err
		}
		if known := s.tables[key]; known != nil {
			t = known.clone()
		} else {
			if base, ok := strings.CutSuffix(key, sqlgen.ViewSuffix); ok && (s.tables[base] != nil || p.pending[base] != nil) {
				return nil, fmt.Errorf("%q collides with the view of table %q", name, base)
			}
			if s.tables[key+sqlgen.ViewSuffix] != nil || p.pending[key+sqlgen.ViewSuffix] != nil {
				return nil, fmt.Errorf("the view of %q collides with table %q", name, name+sqlgen.ViewSuffix)
			}
			t = newTableState(name)
			t.sourceTable = e.Table
			t.sourceSchema = e.Schema
			t.matchSchema = s.opts.TableNaming == NamingSchemaTable && e.Schema != ""
			t.viewDirty = true
			for _, pc := range sortedPinned(s.cfg[key]) {
				t.addColumn(pc.name, pc.typ, true)
			}
		}
		p.pending[key] = t
		p.order = append(p.order, t)
	}
	if t.sourceTable != e.Table || (t.matchSchema && t.sourceSchema != e.Schema) {
		return nil, fmt.Errorf("%q (from %s) collides with table %q of source table %q", name, e.QualifiedTable(), t.name, t.sourceTable)
	}
	return t, nil
}

// conflict is a row this sink cannot store.
type conflict struct{ reason, detail string }

func (c *conflict) Error() string { return c.reason + ": " + c.detail }

type fieldInfo struct {
	name  string
	raw   []byte
	col   *colState   // nil for a new column
	widen sqlgen.Type // the value's type when col must widen or is new
	grow  bool        // col must widen to Widen(col.typ, widen)
}

// checkImage checks every member of an After image against the planned
// columns of t without changing them: names must be valid and unique, pinned
// columns must hold their values. It collects what would change.
func (s *Sink) checkImage(t *tableState, img []byte, mark int, out []fieldInfo) ([]fieldInfo, error) {
	soft := s.soft(t.name)
	var fresh map[string]bool // folded names of new columns in this image
	i := -1
	err := sqlgen.Fields(img, func(name string, raw []byte) error {
		i++
		col := t.lookupAt(i, name)
		if col != nil {
			if col.mark == mark {
				return &conflict{ReasonInvalidIdentifier, fmt.Sprintf("column %q appears twice (names are case-insensitive)", name)}
			}
			col.mark = mark
			if col.pinned {
				if _, err := sqlgen.Convert(col.typ, raw, true); err != nil {
					return &conflict{ReasonTypeConflict, fmt.Sprintf("column %q is pinned to %s: %v", col.name, col.typ, err)}
				}
				out = append(out, fieldInfo{name: name, raw: raw, col: col})
				return nil
			}
			fi := fieldInfo{name: name, raw: raw, col: col}
			if !sqlgen.Fits(col.typ, raw) {
				fi.widen, _ = sqlgen.Infer(raw)
				fi.grow = true
			}
			out = append(out, fi)
			return nil
		}
		if err := sqlgen.ValidateIdent(name); err != nil {
			return &conflict{ReasonInvalidIdentifier, "column: " + err.Error()}
		}
		if soft && strings.EqualFold(name, sqlgen.ColDeleted) {
			return &conflict{ReasonInvalidIdentifier, fmt.Sprintf("column %q is reserved for soft deletes", name)}
		}
		folded := dialect.Fold(name)
		if fresh[folded] {
			return &conflict{ReasonInvalidIdentifier, fmt.Sprintf("column %q appears twice (names are case-insensitive)", name)}
		}
		if fresh == nil {
			fresh = map[string]bool{}
		}
		fresh[folded] = true
		typ, ok := sqlgen.Infer(raw)
		if !ok {
			return nil // null: no column until a value arrives
		}
		out = append(out, fieldInfo{name: name, raw: raw, widen: typ})
		return nil
	})
	return out, err
}

// commitImage applies the changes checkImage collected to the planned
// columns and returns the event's fields.
func (s *Sink) commitImage(t *tableState, infos []fieldInfo) []field {
	fields := make([]field, 0, len(infos))
	for _, fi := range infos {
		col := fi.col
		switch {
		case col == nil:
			col = t.addColumn(fi.name, fi.widen, false)
		case fi.grow:
			if nt := sqlgen.Widen(col.typ, fi.widen); nt != col.typ {
				col.typ = nt
				col.retyped = !col.added
				t.viewDirty = true
			}
		}
		if len(fi.raw) > 0 && fi.raw[0] != 'n' {
			fields = append(fields, field{col: col, raw: fi.raw})
		}
	}
	return fields
}

// streamOrder renders a position so that byte order is change.ComparePosition's order.
func streamOrder(p change.Position) string {
	return p.Source + "\x01" + p.Partition + "\x01" + p.Sortable()
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// writeLog appends the accepted events to the event log through the
// DuckDB appender, which writes into the open transaction.
func (s *Sink) writeLog(ctx context.Context, events []planned, nextID *int64, now time.Time) error {
	if len(events) == 0 {
		return nil
	}
	return s.withDriver(func(dc driver.Conn) error {
		a, err := duckdb.NewAppender(dc, "", "", sqlgen.EventsTable)
		if err != nil {
			return fmt.Errorf("append to %s: %w", sqlgen.EventsTable, err)
		}
		row := make([]driver.Value, len(sqlgen.EventColumns))
		id := *nextID
		for _, pe := range events {
			e := pe.e
			var data driver.Value
			if img := e.Image(); img != nil {
				data = img
			}
			row[0] = id
			row[1] = e.Table
			row[2] = string(e.Op)
			row[3] = e.Key
			row[4] = data
			row[5] = time.Unix(0, e.Order.CommitNS).UTC().Truncate(time.Microsecond)
			row[6] = now
			row[7] = nullable(e.Schema)
			row[8] = e.Order.CommitNS
			row[9] = nullable(e.Order.Seq)
			row[10] = nullable(e.TxID)
			row[11] = e.Position.String()
			row[12] = pe.order
			row[13] = streamOrder(e.Position)
			if err := a.AppendRow(row...); err != nil {
				a.Close()
				return fmt.Errorf("append event at %s to %s: %w", e.Position, sqlgen.EventsTable, err)
			}
			id++
		}
		if err := a.CloseWithCancel(ctx); err != nil {
			return fmt.Errorf("append to %s: %w", sqlgen.EventsTable, err)
		}
		*nextID = id
		return nil
	})
}

func (s *Sink) writeDeadLetters(ctx context.Context, batch []change.DeadLetter, rej []rejected, now time.Time) error {
	if len(batch)+len(rej) == 0 {
		return nil
	}
	return s.withDriver(func(dc driver.Conn) error {
		a, err := duckdb.NewAppender(dc, "", "", sqlgen.DeadLettersTable)
		if err != nil {
			return fmt.Errorf("append to %s: %w", sqlgen.DeadLettersTable, err)
		}
		add := func(reason, detail, format string, pos change.Position, table, recordID any, raw []byte) error {
			var r any
			if raw != nil {
				r = raw
			}
			if err := a.AppendRow(reason, detail, format, pos.String(), pos.Source, pos.Partition, pos.Offset, table, recordID, r, now); err != nil {
				a.Close()
				return fmt.Errorf("append dead letter at %s to %s: %w", pos, sqlgen.DeadLettersTable, err)
			}
			return nil
		}
		for _, d := range batch {
			if err := add(d.Reason, d.Detail, d.Format, d.Position, nil, nil, d.Raw); err != nil {
				return err
			}
		}
		for _, r := range rej {
			if err := add(r.reason, r.detail, "", r.e.Position, nullable(r.table), r.e.Key, r.e.Raw); err != nil {
				return err
			}
		}
		if err := a.CloseWithCancel(ctx); err != nil {
			return fmt.Errorf("append to %s: %w", sqlgen.DeadLettersTable, err)
		}
		return nil
	})
}

// group is the events of one batch for one (table, record_id).
type group struct {
	t      *tableState
	key    string
	events []*planned
	winner *planned
	stored storedKey // what the database holds for the key
}

// merge applies the batch's latest event per key to the merged tables, when
// it is newer than the stored row or tombstone, and counts every logged
// event as Applied, Duplicates or Stale.
func (s *Sink) merge(ctx context.Context, p *batchPlan, res *change.ApplyResult) error {
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
	if err := s.readStored(ctx, p.order, perTable); err != nil {
		return err
	}
	var tombs []tombstone
	for _, t := range p.order {
		gs := perTable[t]
		if len(gs) == 0 {
			continue
		}
		soft := s.soft(t.name)
		var puts []putRow   // rows to append
		var gone []*planned // winners whose key has an (older) stored row to remove
		var carry []*planned
		for _, g := range gs {
			sk := g.stored
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
			w := g.winner
			if sk.row != "" {
				gone = append(gone, w)
			}
			switch {
			case w.e.Op != change.Delete:
				puts = append(puts, putRow{pe: w, fields: w.fields})
			case soft:
				tombs = append(tombs, tombstone{t.name, w, sk.tomb != ""})
				// Keep the last values the row had: those of the batch's
				// latest put when it is newer than the stored row, else the
				// stored ones (carried over), else none.
				if prev := latestPut(g, sk.row); prev != nil {
					puts = append(puts, putRow{pe: w, fields: prev.fields, deleted: true})
				} else if sk.row != "" {
					carry = append(carry, w)
				} else {
					puts = append(puts, putRow{pe: w, deleted: true})
				}
			default:
				tombs = append(tombs, tombstone{t.name, w, sk.tomb != ""})
			}
		}
		if err := s.writeCarried(ctx, t, carry); err != nil {
			return err
		}
		if err := s.writeDeletes(ctx, t, gone); err != nil {
			return err
		}
		if err := s.writePuts(ctx, t, puts); err != nil {
			return err
		}
	}
	return s.writeTombstones(ctx, tombs)
}

// putRow is a merged row to write: bookkeeping from pe, values from fields.
type putRow struct {
	pe      *planned
	fields  []field
	deleted bool // soft delete carrying the row's last values
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

type tombstone struct {
	table  string
	pe     *planned
	stored bool // the key has an (older) stored tombstone to replace
}

// storedKey is what the database holds for one key: the commit order of its
// merged row and of its tombstone ("" when absent).
type storedKey struct{ row, tomb string }

// readStored fills in the stored orders (row and tombstone) of the groups
// of tables created before this batch. The batch's keys are appended to
// the connection's temporary keysTable, then joined with each merged table
// and with the tombstones: no key list is bound as a parameter (slow to
// bind) and the tombstones are read once for all tables.
func (s *Sink) readStored(ctx context.Context, tables []*tableState, perTable map[*tableState][]*group) error {
	byName := map[string]map[string]*group{}
	n := 0
	for _, t := range tables {
		if !t.registered || len(perTable[t]) == 0 {
			continue // created by this batch: nothing stored
		}
		m := make(map[string]*group, len(perTable[t]))
		for _, g := range perTable[t] {
			m[g.key] = g
		}
		byName[t.name] = m
		n += len(m)
	}
	if n == 0 {
		return nil
	}
	err := s.withDriver(func(dc driver.Conn) error {
		a, err := duckdb.NewAppender(dc, "temp", "main", keysTable)
		if err != nil {
			return err
		}
		for name, m := range byName {
			for key := range m {
				if err := a.AppendRow(name, key); err != nil {
					a.Close()
					return err
				}
			}
		}
		return a.CloseWithCancel(ctx)
	})
	if err != nil {
		return fmt.Errorf("stage the batch's keys: %w", err)
	}
	read := func(query string, set func(table, key, order string), args ...any) error {
		rows, err := s.conn.QueryContext(ctx, query, args...)
		if err != nil {
			return err
		}
		for rows.Next() {
			var table, k, o string
			if err := rows.Scan(&table, &k, &o); err != nil {
				rows.Close()
				return err
			}
			set(table, k, o)
		}
		return closeRows(rows)
	}
	for _, t := range tables {
		m := byName[t.name]
		if m == nil || !t.merged {
			continue
		}
		err := read(selectStored(t.name), func(_, k, o string) {
			if g := m[k]; g != nil {
				g.stored.row = o
			}
		}, t.name)
		if err != nil {
			return fmt.Errorf("read stored rows of %s: %w", t.name, err)
		}
	}
	err = read(selectTombstones(), func(table, k, o string) {
		if g := byName[table][k]; g != nil {
			g.stored.tomb = o
		}
	})
	if err != nil {
		return fmt.Errorf("read tombstones: %w", err)
	}
	if _, err := s.conn.ExecContext(ctx, "DELETE FROM "+keysRelation); err != nil {
		return fmt.Errorf("clear the batch's keys: %w", err)
	}
	return nil
}

const srcRelation = "_cdc_src"

// queryAppend stages rows in a relation named srcRelation with the given
// columns and runs query over it, inside the open transaction.
func (s *Sink) queryAppend(ctx context.Context, query string, names []string, types []sqlgen.Type, n int, row func(i int, dst []driver.Value) error) error {
	infos := make([]duckdb.TypeInfo, len(types))
	for i, t := range types {
		ti, err := s.typeInfo(t)
		if err != nil {
			return err
		}
		infos[i] = ti
	}
	return s.withDriver(func(dc driver.Conn) error {
		a, err := duckdb.NewQueryAppender(dc, query, srcRelation, infos, names)
		if err != nil {
			return err
		}
		vals := make([]driver.Value, len(names))
		for i := 0; i < n; i++ {
			clear(vals)
			if err := row(i, vals); err != nil {
				a.Close()
				return err
			}
			if err := a.AppendRow(vals...); err != nil {
				a.Close()
				return err
			}
		}
		return a.CloseWithCancel(ctx)
	})
}

// typeInfo is the appender type staging values of t. JSON is staged as text
// and parsed by the cast into the JSON column.
func (s *Sink) typeInfo(t sqlgen.Type) (duckdb.TypeInfo, error) {
	if ti, ok := s.types[t]; ok {
		return ti, nil
	}
	var ti duckdb.TypeInfo
	var err error
	switch t.Kind {
	case sqlgen.BigInt:
		ti, err = duckdb.NewTypeInfo(duckdb.TYPE_BIGINT)
	case sqlgen.Integer:
		ti, err = duckdb.NewTypeInfo(duckdb.TYPE_INTEGER)
	case sqlgen.Double:
		ti, err = duckdb.NewTypeInfo(duckdb.TYPE_DOUBLE)
	case sqlgen.Decimal:
		ti, err = duckdb.NewDecimalInfo(uint8(t.Precision), uint8(t.Scale))
	case sqlgen.Boolean:
		ti, err = duckdb.NewTypeInfo(duckdb.TYPE_BOOLEAN)
	case sqlgen.Timestamp:
		ti, err = duckdb.NewTypeInfo(duckdb.TYPE_TIMESTAMP)
	case sqlgen.TimestampTZ:
		ti, err = duckdb.NewTypeInfo(duckdb.TYPE_TIMESTAMP_TZ)
	case sqlgen.Date:
		ti, err = duckdb.NewTypeInfo(duckdb.TYPE_DATE)
	default: // Varchar, JSON
		ti, err = duckdb.NewTypeInfo(duckdb.TYPE_VARCHAR)
	}
	if err != nil {
		return nil, fmt.Errorf("appender type for %s: %w", t, err)
	}
	s.types[t] = ti
	return ti, nil
}

// driverValue converts a sqlgen.Convert result to what the appender takes.
func driverValue(t sqlgen.Type, v any) driver.Value {
	switch x := v.(type) {
	case sqlgen.DecimalValue:
		return duckdb.Decimal{Width: uint8(t.Precision), Scale: uint8(t.Scale), Value: x.Unscaled}
	case json.RawMessage:
		return string(x)
	}
	return v
}

var orderType, textType = sqlgen.TVarchar, sqlgen.TVarchar

// bookkeeping is the staged bookkeeping columns of t's rows and their types.
func bookkeeping(t *tableState) ([]string, []sqlgen.Type) {
	names := []string{sqlgen.ColRecordID, sqlgen.ColCommitOrder, sqlgen.ColCommitTimestamp, sqlgen.ColOp}
	types := []sqlgen.Type{textType, orderType, {Kind: sqlgen.TimestampTZ}, textType}
	if t.hasDeleted {
		names = append(names, sqlgen.ColDeleted)
		types = append(types, sqlgen.TBoolean)
	}
	return names, types
}

// writePuts appends the rows of puts to t's merged table. Their keys have
// no stored row left: writeDeletes removed the older ones.
func (s *Sink) writePuts(ctx context.Context, t *tableState, puts []putRow) error {
	if len(puts) == 0 {
		return nil
	}
	names, types := bookkeeping(t)
	nb := len(names)
	for _, c := range t.cols {
		names = append(names, c.name)
		types = append(types, c.typ)
	}
	err := s.queryAppend(ctx, insertRows(t.name, names, srcRelation), names, types, len(puts), func(i int, row []driver.Value) error {
		pe := puts[i].pe
		row[0], row[1], row[2], row[3] = pe.e.Key, pe.order, commitTime(pe.e), string(pe.e.Op)
		if t.hasDeleted {
			row[4] = puts[i].deleted
		}
		for _, f := range puts[i].fields {
			v, err := sqlgen.Convert(f.col.typ, f.raw, f.col.pinned)
			if err != nil {
				// checkImage guarantees a fit; reaching this is a bug, and
				// retrying cannot fix it.
				return fmt.Errorf("%w: event at %s column %q: %v", sink.ErrPermanent, pe.e.Position, f.col.name, err)
			}
			row[nb+f.col.index] = driverValue(f.col.typ, v)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("merge %d rows into %s: %w", len(puts), t.name, err)
	}
	return nil
}

// writeCarried writes the soft deletes of keys whose stored row keeps its
// values: a copy of the stored row with the delete's bookkeeping. The
// stored row itself goes with writeDeletes.
func (s *Sink) writeCarried(ctx context.Context, t *tableState, dels []*planned) error {
	if len(dels) == 0 {
		return nil
	}
	data := make([]string, len(t.cols))
	for i, c := range t.cols {
		data[i] = c.name
	}
	names, types := bookkeeping(t)
	err := s.queryAppend(ctx, carryRows(t.name, data, srcRelation), names, types, len(dels), func(i int, row []driver.Value) error {
		pe := dels[i]
		row[0], row[1], row[2], row[3], row[4] = pe.e.Key, pe.order, commitTime(pe.e), string(pe.e.Op), true
		return nil
	})
	if err != nil {
		return fmt.Errorf("soft-delete %d rows of %s: %w", len(dels), t.name, err)
	}
	return nil
}

// writeDeletes removes the stored rows of t that the winners in gone
// replace or delete (only rows older than the winner: the Go decision
// repeated in SQL).
func (s *Sink) writeDeletes(ctx context.Context, t *tableState, gone []*planned) error {
	if len(gone) == 0 {
		return nil
	}
	names := []string{sqlgen.ColRecordID, sqlgen.ColCommitOrder}
	query := deleteOlder(t.name, names[:1], sqlgen.ColCommitOrder, srcRelation)
	err := s.queryAppend(ctx, query, names, []sqlgen.Type{textType, orderType}, len(gone), func(i int, row []driver.Value) error {
		row[0], row[1] = gone[i].e.Key, gone[i].order
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete %d rows from %s: %w", len(gone), t.name, err)
	}
	return nil
}

// writeTombstones replaces the older tombstones of tombs' keys and appends
// the new ones.
func (s *Sink) writeTombstones(ctx context.Context, tombs []tombstone) error {
	if len(tombs) == 0 {
		return nil
	}
	types := []sqlgen.Type{textType, textType, orderType, {Kind: sqlgen.TimestampTZ}}
	var replaced []tombstone
	for _, tb := range tombs {
		if tb.stored {
			replaced = append(replaced, tb)
		}
	}
	cols := sqlgen.TombstoneColumns
	if len(replaced) > 0 {
		err := s.queryAppend(ctx, deleteOlder(sqlgen.TombstonesTable, cols[:2], cols[2], srcRelation), cols[:3], types[:3], len(replaced), func(i int, row []driver.Value) error {
			tb := replaced[i]
			row[0], row[1], row[2] = tb.table, tb.pe.e.Key, tb.pe.order
			return nil
		})
		if err != nil {
			return fmt.Errorf("replace %d tombstones: %w", len(replaced), err)
		}
	}
	err := s.queryAppend(ctx, insertRows(sqlgen.TombstonesTable, cols, srcRelation), cols, types, len(tombs), func(i int, row []driver.Value) error {
		tb := tombs[i]
		row[0], row[1], row[2], row[3] = tb.table, tb.pe.e.Key, tb.pe.order, commitTime(tb.pe.e)
		return nil
	})
	if err != nil {
		return fmt.Errorf("store %d tombstones: %w", len(tombs), err)
	}
	return nil
}

func commitTime(e *change.Event) time.Time {
	return time.Unix(0, e.Order.CommitNS).UTC()
}
