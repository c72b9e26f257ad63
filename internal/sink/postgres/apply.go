package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/sink"
	"github.com/cdcflow/cdcflow/internal/sqlgen"
)

// planned is one accepted event of a batch.
type planned struct {
	e      *change.Event
	t      *tableState
	fields []field // the After image's non-null values (nil for deletes and LogOnly)
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

// batchPlan is what planning decides about a batch's events.
type batchPlan struct {
	events  []planned
	dead    []rejected
	pending map[string]*tableState // by folded name: planned state of touched tables
	order   []*tableState          // touched tables in first-seen order
	scratch []fieldInfo
	mark    int
}

// partKey names a stream partition.
type partKey struct{ source, partition string }

func keyOf(p change.Position) partKey { return partKey{p.Source, p.Partition} }

// errStaleSchema means another writer changed a table's registry since this
// sink read it: Apply reloads the registry and plans the batch again.
var errStaleSchema = errors.New("table registry changed by another writer")

// Apply stores the batch in one transaction: event log rows, merged-table
// changes, tombstones, dead letters and checkpoints. Events and dead letters
// at or before the stored checkpoint of their partition are dropped first
// (see the package doc). Errors wrap sink.ErrPermanent when the data is at
// fault; every other error is retryable.
func (s *Sink) Apply(ctx context.Context, b *change.Batch) (change.ApplyResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return change.ApplyResult{}, errors.New("postgres sink: apply after close")
	}
	if err := ctx.Err(); err != nil {
		return change.ApplyResult{}, err
	}
	if b == nil {
		b = &change.Batch{}
	}
	for attempt := 1; ; attempt++ {
		res, err := s.applyOnce(ctx, b)
		if err == nil {
			return res, nil
		}
		if errors.Is(err, errStaleSchema) && attempt < 4 {
			if rerr := s.reload(ctx); rerr == nil {
				if rerr = s.reconcile(ctx); rerr == nil {
					continue
				}
				err = rerr
			} else {
				err = rerr
			}
		}
		return change.ApplyResult{}, s.red.err(classify(fmt.Errorf("apply batch of %d events to postgres %s: %w", len(b.Events), s.target, err)))
	}
}

func (s *Sink) applyOnce(ctx context.Context, b *change.Batch) (change.ApplyResult, error) {
	var res change.ApplyResult
	now := time.Now().UTC()
	var p *batchPlan
	var dead []change.DeadLetter
	newStaged := map[string]bool{}
	skipped := 0
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		stored, err := s.lockPartitions(ctx, tx, b)
		if err != nil {
			return err
		}
		if b, res.Fenced, err = s.fenceLeases(ctx, tx, b); err != nil { // leases.go
			return err
		}
		var events []*change.Event
		events, dead, skipped = s.dropStored(b, stored)
		if events, dead, err = s.dropRecorded(ctx, tx, b.DedupePositions, events, dead, now); err != nil { // record_positions.go
			return err
		}
		events, claimed, err := s.claimChunks(ctx, tx, events, now) // chunks.go
		if err != nil {
			return err
		}
		if err := s.unpark(ctx, tx, claimed); err != nil { // pieces.go
			return err
		}
		if err := s.park(ctx, tx, b.Park, now); err != nil {
			return err
		}
		p = &batchPlan{events: make([]planned, 0, len(events)), pending: map[string]*tableState{}}
		if err := s.writeLog(ctx, tx, p, events, now); err != nil {
			return err
		}
		if !s.opts.LogOnly {
			if err := s.lockTables(ctx, tx, p); err != nil {
				return err
			}
		}
		if len(p.dead) > 0 && !s.opts.DeadLetterTable {
			r := p.dead[0]
			return fmt.Errorf("%w: event at %s (table %q, record_id %q): %s: %s",
				sink.ErrPermanent, r.e.Position, r.table, cleanText(r.e.Key), r.reason, r.detail)
		}
		if err := s.evolve(ctx, tx, p, now); err != nil {
			return err
		}
		if s.opts.DeadLetterTable {
			if err := s.writeDeadLetters(ctx, tx, dead, p.dead, now); err != nil {
				return err
			}
		}
		if !s.opts.LogOnly {
			if err := s.merge(ctx, tx, p, &res, newStaged); err != nil {
				return err
			}
		}
		if err := s.writeCheckpoints(ctx, tx, b.Checkpoints, stored, now); err != nil {
			return err
		}
		if s.beforeCommit != nil {
			return s.beforeCommit(ctx, tx)
		}
		return nil
	})
	if err != nil {
		return change.ApplyResult{}, err
	}
	// Committed: the planned schema is now the stored one.
	for _, t := range p.order {
		t.settle()
		s.tables[dialect.Fold(t.name)] = t
	}
	for name := range newStaged {
		s.staged[name] = true
	}
	if skipped > 0 {
		s.opts.Logger.Debug("dropped events and dead letters stored by an earlier apply", "count", skipped)
	}
	res.Logged = len(p.events)
	for _, pe := range p.events {
		if res.Tables == nil {
			res.Tables = map[string]int{}
		}
		res.Tables[pe.t.name]++
	}
	if s.opts.DeadLetterTable {
		for _, d := range dead {
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

// lockPartitions takes a transaction-scoped advisory lock on every partition
// the batch touches (its events', dead letters' and checkpoints'), in a fixed
// order, then reads and locks their stored checkpoints. Two writers applying
// batches of one partition thus run one after the other, and the second sees
// what the first stored.
func (s *Sink) lockPartitions(ctx context.Context, tx pgx.Tx, b *change.Batch) (map[partKey]change.Checkpoint, error) {
	parts := map[partKey]bool{}
	for i := range b.Events {
		if !b.Events[i].Parked { // stored by chunk id, whatever its partition
			parts[keyOf(b.Events[i].Position)] = true
		}
	}
	for i := range b.Dead {
		parts[keyOf(b.Dead[i].Position)] = true
	}
	for _, c := range b.Checkpoints {
		parts[partKey{c.Source, c.Partition}] = true
	}
	if len(parts) == 0 {
		return nil, nil
	}
	keys := make([]int64, 0, len(parts))
	sources := make([]string, 0, len(parts))
	partitions := make([]string, 0, len(parts))
	for k := range parts {
		keys = append(keys, s.lockKey("partition", k.source, k.partition))
		sources = append(sources, cleanText(k.source))
		partitions = append(partitions, cleanText(k.partition))
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	if _, err := tx.Exec(ctx, sqlgen.AdvisoryLocks(dialect), keys); err != nil {
		return nil, fmt.Errorf("lock %d partitions: %w", len(keys), err)
	}
	rows, err := tx.Query(ctx, sqlgen.LockCheckpoints(dialect), sources, partitions)
	if err != nil {
		return nil, fmt.Errorf("read checkpoints: %w", err)
	}
	cps, err := scanCheckpoints(rows)
	if err != nil {
		return nil, fmt.Errorf("read checkpoints: %w", err)
	}
	out := make(map[partKey]change.Checkpoint, len(cps))
	for _, c := range cps {
		out[partKey{c.Source, c.Partition}] = c
	}
	return out, nil
}

// dropStored returns the batch's events and dead letters that are not
// covered by the stored checkpoint of a resumable partition, and how many
// were dropped.
func (s *Sink) dropStored(b *change.Batch, stored map[partKey]change.Checkpoint) ([]*change.Event, []change.DeadLetter, int) {
	events := make([]*change.Event, 0, len(b.Events))
	dead := b.Dead
	covered := func(p change.Position, reason string) bool {
		if len(stored) == 0 {
			return false
		}
		cp, ok := stored[keyOf(p)]
		if !ok || !s.opts.CanResume(p.Source) || !atOrBefore(p, cp.Applied) {
			return false
		}
		// Pieces held when the checkpoint was written were not stored: their
		// fragment dead letters must be kept (see change.Checkpoint).
		if cp.Held && (reason == change.ReasonFragmentTimeout || reason == change.ReasonFragmentLimit) &&
			change.ComparePosition(p, cp.Resume) >= 0 {
			return false
		}
		return true
	}
	skipped := 0
	for i := range b.Events {
		// A reassembled DSQL event is stored at most once by its chunk id
		// (claimChunks), not by position: with shards split between
		// processes, its completing piece may lie before a checkpoint that
		// another process stored while it held the set's other pieces.
		if b.Events[i].ChunkID == "" && covered(b.Events[i].Position, "") {
			skipped++
			continue
		}
		events = append(events, &b.Events[i])
	}
	if len(stored) > 0 && len(b.Dead) > 0 {
		dead = make([]change.DeadLetter, 0, len(b.Dead))
		for _, d := range b.Dead {
			if covered(d.Position, d.Reason) {
				skipped++
				continue
			}
			dead = append(dead, d)
		}
	}
	return events, dead, skipped
}

// atOrBefore reports whether position p is at or before applied. An applied
// position without an envelope index covers every index of its record.
func atOrBefore(p, applied change.Position) bool {
	if !applied.Indexed {
		p.Index, p.Indexed = 0, false
	}
	return change.ComparePosition(p, applied) <= 0
}

// tableName maps an event to its merged table name.
func (s *Sink) tableName(e *change.Event) string {
	if s.opts.TableNaming == NamingSchemaTable && e.Schema != "" {
		return e.Schema + "_" + e.Table
	}
	return e.Table
}

// planEvent validates one event, evolves the planned schema of its table,
// and records it as accepted (returning true) or rejected. No I/O.
func (s *Sink) planEvent(p *batchPlan, e *change.Event) bool {
	name := s.tableName(e)
	reject := func(reason, format string, args ...any) bool {
		p.dead = append(p.dead, rejected{e: e, table: name, reason: reason, detail: fmt.Sprintf(format, args...)})
		return false
	}
	if !e.Op.Valid() {
		return reject(change.ReasonInvalidOp, "operation %q is not c, u, d or r", string(e.Op))
	}
	t, err := s.tableFor(p, name, e)
	if err != nil {
		return reject(ReasonInvalidIdentifier, "table: %v", err)
	}
	if f, why := invalidText(e); f != "" {
		return reject(change.ReasonInvalidValue, "%s %s", f, why)
	}
	pe := planned{e: e, t: t, order: e.Order.Key()}
	if e.Op == change.Delete {
		if e.Before != nil {
			if err := sqlgen.Fields(e.Before, func(string, []byte) error { return nil }); err != nil {
				return reject(change.ReasonInvalidValue, "before image: %v", err)
			}
			if hasNulEscape(e.Before) {
				return reject(change.ReasonInvalidValue, "before image holds \\u0000, which PostgreSQL jsonb and text cannot store")
			}
		}
		p.events = append(p.events, pe)
		return true
	}
	if hasNulEscape(e.After) {
		return reject(change.ReasonInvalidValue, "after image holds \\u0000, which PostgreSQL jsonb and text cannot store")
	}
	p.mark++
	p.scratch, err = s.checkImage(t, e.After, p.mark, p.scratch[:0])
	if err != nil {
		var c *conflict
		if errors.As(err, &c) {
			return reject(c.reason, "%s", c.detail)
		}
		return reject(change.ReasonInvalidValue, "after image: %v", err)
	}
	pe.fields = s.commitImage(t, p.scratch, !s.opts.LogOnly)
	p.events = append(p.events, pe)
	return true
}

// invalidText names the first text field of e that PostgreSQL text cannot
// hold, and why.
func invalidText(e *change.Event) (string, string) {
	for _, f := range []struct{ name, v string }{
		{"record_id", e.Key}, {"schema", e.Schema}, {"tx_id", e.TxID}, {"order seq", e.Order.Seq},
	} {
		if !utf8.ValidString(f.v) {
			return f.name, "is not valid UTF-8"
		}
		if strings.IndexByte(f.v, 0) >= 0 {
			return f.name, "holds a NUL character, which PostgreSQL text cannot store"
		}
	}
	return "", ""
}

// hasNulEscape reports whether the JSON text doc holds the escape \u0000
// (jsonb rejects it, and text cannot hold NUL).
func hasNulEscape(doc []byte) bool {
	const esc = `\u0000`
	from := 0
	for {
		i := bytes.Index(doc[from:], []byte(esc))
		if i < 0 {
			return false
		}
		i += from
		n := 0 // backslashes right before i: an even count means doc[i] starts an escape
		for j := i - 1; j >= 0 && doc[j] == '\\'; j-- {
			n++
		}
		if n%2 == 0 {
			return true
		}
		from = i + 1
	}
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
	var fresh map[string]bool // names of new columns in this image
	i := -1
	err := sqlgen.Fields(img, func(name string, raw []byte) error {
		i++
		col := t.lookupAt(i, name)
		if col != nil {
			if col.mark == mark {
				return &conflict{ReasonInvalidIdentifier, fmt.Sprintf("column %q appears twice", name)}
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
		if soft && name == sqlgen.ColDeleted {
			return &conflict{ReasonInvalidIdentifier, fmt.Sprintf("column %q is reserved for soft deletes", name)}
		}
		folded := dialect.Fold(name)
		if fresh[folded] {
			return &conflict{ReasonInvalidIdentifier, fmt.Sprintf("column %q appears twice", name)}
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
// columns and, with keep, returns the event's non-null fields.
func (s *Sink) commitImage(t *tableState, infos []fieldInfo, keep bool) []field {
	var fields []field
	if keep {
		fields = make([]field, 0, len(infos))
	}
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
		if keep && len(fi.raw) > 0 && fi.raw[0] != 'n' {
			fields = append(fields, field{col: col, raw: fi.raw})
		}
	}
	return fields
}

// logReader streams the accepted events of a batch as a binary COPY of the
// event log, planning each event as it goes.
type logReader struct {
	s      *Sink
	p      *batchPlan
	events []*change.Event
	next   int
	now    int64 // ingested_at, µs since the PostgreSQL epoch
	buf    []byte
	off    int
	done   bool
}

func (r *logReader) Read(dst []byte) (int, error) {
	if r.off > 0 { // keep the buffer small: move what is left to its start
		n := copy(r.buf, r.buf[r.off:])
		r.buf, r.off = r.buf[:n], 0
	}
	if !r.done {
		r.fill(len(dst))
	}
	if r.off == len(r.buf) {
		return 0, io.EOF
	}
	n := copy(dst, r.buf[r.off:])
	r.off += n
	return n, nil
}

// fill encodes events until the buffer holds at least want bytes or the
// events run out (then it appends the trailer).
func (r *logReader) fill(want int) {
	for len(r.buf)-r.off < want {
		if r.next >= len(r.events) {
			r.buf = append(r.buf, copyTrailer...)
			r.done = true
			return
		}
		e := r.events[r.next]
		r.next++
		if !r.s.planEvent(r.p, e) {
			continue
		}
		r.buf = encodeLogRow(r.buf, e, r.p.events[len(r.p.events)-1].order, r.now)
	}
}

// encodeLogRow appends e as a row of sqlgen.PostgresLogColumns.
func encodeLogRow(b []byte, e *change.Event, order string, now int64) []byte {
	b = appendInt16(b, 13)
	b = appendText(b, e.Table)
	b = appendText(b, string(e.Op))
	b = appendText(b, e.Key)
	b = appendJSONB(b, e.Image())
	b = appendTimestampNS(b, e.Order.CommitNS)
	b = appendInt8(b, now)
	b = appendTextOrNull(b, e.Schema)
	b = appendInt8(b, e.Order.CommitNS)
	b = appendTextOrNull(b, e.Order.Seq)
	b = appendTextOrNull(b, e.TxID)
	b = appendVarText(b, func(b []byte) []byte { return appendPosition(b, e.Position) })
	b = appendText(b, order)
	b = appendVarText(b, func(b []byte) []byte { return appendStreamOrder(b, e.Position) })
	return b
}

// writeLog plans the events and COPYs the accepted ones into the event log.
func (s *Sink) writeLog(ctx context.Context, tx pgx.Tx, p *batchPlan, events []*change.Event, now time.Time) error {
	if len(events) == 0 {
		return nil
	}
	r := &logReader{s: s, p: p, events: events, now: now.UnixMicro() - pgEpochMicros,
		buf: append(make([]byte, 0, 128<<10), copyHeader...)}
	sql := copySQL(sqlgen.QuoteIdent(sqlgen.EventsTable), sqlgen.PostgresLogColumns())
	if _, err := tx.Conn().PgConn().CopyFrom(ctx, r, sql); err != nil {
		return fmt.Errorf("copy %d events into %s: %w", len(p.events), sqlgen.EventsTable, err)
	}
	return nil
}

// evolve brings the schema to the planned state of the batch's tables. For
// each table that needs DDL or registry writes it first takes the table's
// advisory lock and checks that the registry is still what this sink
// planned from (errStaleSchema otherwise).
func (s *Sink) evolve(ctx context.Context, tx pgx.Tx, p *batchPlan, now time.Time) error {
	var dirty []*tableState
	for _, t := range p.order {
		if t.dirty() {
			dirty = append(dirty, t)
		}
	}
	if len(dirty) == 0 {
		return nil
	}
	sort.Slice(dirty, func(i, j int) bool { return dirty[i].name < dirty[j].name })
	for _, t := range dirty {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", s.lockKey("table", t.name)); err != nil {
			return fmt.Errorf("lock table %s: %w", t.name, err)
		}
		if err := s.checkRegistry(ctx, tx, t.name); err != nil {
			return err
		}
	}
	for _, t := range p.order {
		if !t.dirty() {
			continue
		}
		for _, st := range schemaDDL(t, s.opts.LogOnly, s.soft(t.name), now) {
			if _, err := tx.Exec(ctx, st.sql, st.args...); err != nil {
				return fmt.Errorf("evolve table %s: %w", t.name, err)
			}
		}
	}
	return nil
}

// checkRegistry compares the stored registry of table with what the sink
// knows of it.
func (s *Sink) checkRegistry(ctx context.Context, tx pgx.Tx, table string) error {
	known := s.tables[dialect.Fold(table)]
	var n int
	if err := tx.QueryRow(ctx, "SELECT count(*) FROM "+sqlgen.QuoteIdent(sqlgen.TablesTable)+" WHERE table_name = $1", table).Scan(&n); err != nil {
		return fmt.Errorf("read registry of %s: %w", table, err)
	}
	if (n > 0) != (known != nil) {
		return fmt.Errorf("table %s: %w", table, errStaleSchema)
	}
	rows, err := tx.Query(ctx, sqlgen.SelectColumnsOf(dialect), table)
	if err != nil {
		return fmt.Errorf("read registry of %s: %w", table, err)
	}
	defer rows.Close()
	i := 0
	for rows.Next() {
		var col, typ string
		var pinned bool
		var ordinal int32
		if err := rows.Scan(&col, &typ, &pinned, &ordinal); err != nil {
			return fmt.Errorf("read registry of %s: %w", table, err)
		}
		if known == nil || i >= len(known.cols) {
			return fmt.Errorf("table %s: %w", table, errStaleSchema)
		}
		c := known.cols[i]
		if c.name != col || c.typ.String() != typ || c.pinned != pinned || c.index != int(ordinal) {
			return fmt.Errorf("table %s column %s: %w", table, col, errStaleSchema)
		}
		i++
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read registry of %s: %w", table, err)
	}
	if known != nil && i != len(known.cols) {
		return fmt.Errorf("table %s: %w", table, errStaleSchema)
	}
	return nil
}

// writeDeadLetters COPYs the batch's dead letters and the rejected events
// into cdc_dead_letters.
func (s *Sink) writeDeadLetters(ctx context.Context, tx pgx.Tx, batch []change.DeadLetter, rej []rejected, now time.Time) error {
	n := len(batch) + len(rej)
	if n == 0 {
		return nil
	}
	row := make([]any, len(sqlgen.DeadLetterColumns))
	i := 0
	src := pgx.CopyFromFunc(func() ([]any, error) {
		if i >= n {
			return nil, nil
		}
		var reason, detail, format string
		var pos change.Position
		var table, recordID any
		var raw []byte
		if i < len(batch) {
			d := &batch[i]
			reason, detail, format, pos, raw = d.Reason, d.Detail, d.Format, d.Position, d.Raw
		} else {
			r := &rej[i-len(batch)]
			reason, detail, pos, raw = r.reason, r.detail, r.e.Position, r.e.Raw
			if r.table != "" {
				table = cleanText(r.table)
			}
			recordID = cleanText(r.e.Key)
		}
		i++
		row[0], row[1], row[2] = cleanText(reason), cleanText(detail), cleanText(format)
		row[3], row[4], row[5], row[6] = cleanText(pos.String()), cleanText(pos.Source), cleanText(pos.Partition), cleanText(pos.Offset)
		row[7], row[8] = table, recordID
		if raw != nil {
			row[9] = raw
		} else {
			row[9] = nil
		}
		row[10] = now
		return row, nil
	})
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{sqlgen.DeadLettersTable}, sqlgen.DeadLetterColumns, src); err != nil {
		return fmt.Errorf("copy %d dead letters into %s: %w", n, sqlgen.DeadLettersTable, err)
	}
	return nil
}

// writeCheckpoints upserts the batch's checkpoints, in chunks under the
// parameter cap. A checkpoint of a resumable partition older than the
// stored one is not written: a lagging writer never moves it back.
func (s *Sink) writeCheckpoints(ctx context.Context, tx pgx.Tx, cps []change.Checkpoint, stored map[partKey]change.Checkpoint, now time.Time) error {
	if len(cps) == 0 {
		return nil
	}
	last := map[partKey]int{}
	var keep []change.Checkpoint
	for _, c := range cps {
		k := partKey{c.Source, c.Partition}
		if st, ok := stored[k]; ok && s.opts.CanResume(c.Source) && change.ComparePosition(c.Applied, st.Applied) < 0 {
			continue
		}
		if i, dup := last[k]; dup {
			keep[i] = c // one row per key and statement: the last wins
			continue
		}
		last[k] = len(keep)
		keep = append(keep, c)
	}
	width := len(sqlgen.CheckpointColumns)
	chunk := sqlgen.ChunkRows(width)
	for from := 0; from < len(keep); from += chunk {
		part := keep[from:min(from+chunk, len(keep))]
		args := make([]any, 0, len(part)*width)
		for _, c := range part {
			args = append(args, cleanText(c.Source), cleanText(c.Partition),
				cleanText(c.Applied.Source), cleanText(c.Applied.Partition), cleanText(c.Applied.Offset), int64(c.Applied.Index), c.Applied.Indexed,
				c.Held,
				cleanText(c.Resume.Source), cleanText(c.Resume.Partition), cleanText(c.Resume.Offset), int64(c.Resume.Index), c.Resume.Indexed,
				now)
		}
		if _, err := tx.Exec(ctx, sqlgen.UpsertValuesRows(dialect, sqlgen.CheckpointsTable, sqlgen.CheckpointColumns, 2, len(part)), args...); err != nil {
			return fmt.Errorf("store %d checkpoints: %w", len(part), err)
		}
	}
	return nil
}

// lockTables takes the transaction-scoped advisory lock of every merged
// table the batch touches, in sorted order, before the merge reads stored
// orders. Partition locks alone do not order two writers whose partitions
// carry the same key: without this, a writer merging an older update could
// read the row before a concurrent newer delete commits and bring the row
// back (write skew). The lock is the one schema evolution takes, so merges
// of one table are serialized while log writes still run in parallel.
func (s *Sink) lockTables(ctx context.Context, tx pgx.Tx, p *batchPlan) error {
	names := make([]string, 0, len(p.order))
	for _, t := range p.order {
		names = append(names, t.name)
	}
	sort.Strings(names)
	for _, name := range names {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", s.lockKey("table", name)); err != nil {
			return fmt.Errorf("lock table %s: %w", name, err)
		}
	}
	return nil
}
