package duckdb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/sink"
	"github.com/cdcflow/cdcflow/internal/sqlgen"
)

var (
	_ sink.Sink          = (*Sink)(nil)
	_ sink.PositionStore = (*Sink)(nil)
)

// Dead-letter reasons of rows this sink rejects.
const (
	ReasonTypeConflict      = "type_conflict"
	ReasonInvalidIdentifier = "invalid_identifier"
)

// Sink is an embedded DuckDB warehouse: an append-only event log, a
// current-state view and a merged table per source table, tombstones, dead
// letters and checkpoints, all written in one transaction per Apply.
//
// Apply and Close serialize on a mutex; Checkpoints and reads through DB may
// run concurrently and see committed batches only.
type Sink struct {
	mu     sync.Mutex
	opts   Options
	cfg    map[string]tableConfig // by folded table name
	db     atomic.Pointer[sql.DB] // replaced by reopen
	conn   *sql.Conn              // the only connection that writes
	thread *thread                // the OS thread conn is used on
	tables map[string]*tableState
	nextID int64 // event_id of the next logged event
	closed bool

	// Checkpoint policy (maybeCheckpoint).
	walLimit  int64 // checkpoint when the WAL is this large (bytes)
	walSize   int64 // WAL size after the last Apply
	logRows   int   // events logged since the last checkpoint
	ckptError error // the last checkpoint's error, nil once one succeeds
	broken    bool  // the database was invalidated and is not reopened yet

	types map[sqlgen.Type]duckdb.TypeInfo

	// beforeCommit, when set by tests, runs after every write of a batch and
	// before COMMIT; an error makes Apply roll back.
	beforeCommit func() error
}

// Open opens (creating if needed) the database at opts.Path and its base
// tables, in one transaction, and loads what it knows of merged tables.
func Open(ctx context.Context, opts Options) (*Sink, error) {
	cfg, err := opts.resolve()
	if err != nil {
		return nil, fmt.Errorf("duckdb sink options: %w", err)
	}
	walLimit, _ := parseSize(opts.CheckpointThreshold) // validated by resolve
	db, err := sql.Open("duckdb", opts.dsn(walLimit))
	if err != nil {
		return nil, fmt.Errorf("open duckdb %q: %w", opts.Path, err)
	}
	s := &Sink{opts: opts, cfg: cfg, thread: startThread(), walLimit: walLimit, types: map[sqlgen.Type]duckdb.TypeInfo{}}
	s.db.Store(db)
	err = s.thread.run(func() error {
		err := s.init(ctx)
		if err != nil {
			if s.conn != nil {
				s.conn.Close()
			}
			db.Close()
		}
		return err
	})
	if err != nil {
		s.thread.stop()
		return nil, fmt.Errorf("open duckdb %q: %w", opts.Path, err)
	}
	return s, nil
}

func (s *Sink) init(ctx context.Context) error {
	conn, err := s.db.Load().Conn(ctx)
	if err != nil {
		return err
	}
	s.conn = conn
	err = s.inTx(ctx, func() error {
		for _, ddl := range append(sqlgen.BaseDDL(dialect), createKeysTable()) {
			if _, err := conn.ExecContext(ctx, ddl); err != nil {
				return fmt.Errorf("create base tables: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if s.tables, err = loadRegistry(ctx, conn); err != nil {
		return err
	}
	if err := s.pruneChunks(ctx); err != nil {
		return err
	}
	if err := conn.QueryRowContext(ctx, "SELECT COALESCE(max(event_id), 0) + 1 FROM "+sqlgen.QuoteIdent(sqlgen.EventsTable)).Scan(&s.nextID); err != nil {
		return fmt.Errorf("read last event_id: %w", err)
	}
	return s.reconcile(ctx)
}

// reconcile applies the configuration to tables created earlier: pinned
// column types (altering columns that have another type) and soft deletes.
func (s *Sink) reconcile(ctx context.Context) error {
	var changed []*tableState
	for key, t := range s.tables {
		tc := s.cfg[key]
		c := t.clone()
		dirty := false
		for _, col := range c.cols {
			p, isPinned := tc.pinned[dialect.Fold(col.name)]
			switch {
			case isPinned:
				if col.typ != p.typ {
					col.typ, col.retyped, c.viewDirty, dirty = p.typ, true, true, true
				}
				if !col.pinned {
					col.pinned, col.reg, dirty = true, true, true
				}
			case col.pinned:
				col.pinned, col.reg, dirty = false, true, true
			}
		}
		for _, p := range sortedPinned(tc) {
			if c.lookup(p.name) == nil {
				c.addColumn(p.name, p.typ, true)
				dirty = true
			}
		}
		if s.soft(t.name) && !s.opts.LogOnly && !c.hasDeleted {
			if c.lookup(sqlgen.ColDeleted) != nil {
				return fmt.Errorf("table %s: soft_delete needs column %s, which holds source data", t.name, sqlgen.ColDeleted)
			}
			dirty = true
		}
		if dirty {
			changed = append(changed, c)
		}
	}
	if len(changed) == 0 {
		return nil
	}
	now := time.Now().UTC()
	err := s.inTx(ctx, func() error {
		for _, t := range changed {
			for _, st := range schemaDDL(t, s.opts.LogOnly, s.soft(t.name), now) {
				if _, err := s.conn.ExecContext(ctx, st.sql, st.args...); err != nil {
					return fmt.Errorf("apply configuration to table %s: %w", t.name, err)
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, t := range changed {
		t.settle()
		s.tables[dialect.Fold(t.name)] = t
	}
	return nil
}

func sortedPinned(tc tableConfig) []pinnedCol {
	out := make([]pinnedCol, 0, len(tc.pinned))
	for _, p := range tc.pinned {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

func (s *Sink) soft(table string) bool {
	if tc, ok := s.cfg[dialect.Fold(table)]; ok {
		return tc.soft
	}
	return s.opts.SoftDelete
}

// inTx runs fn between BEGIN and COMMIT on the write connection, rolling
// back when fn or COMMIT fails.
func (s *Sink) inTx(ctx context.Context, fn func() error) error {
	if _, err := s.conn.ExecContext(ctx, "BEGIN TRANSACTION"); err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	err := fn()
	if err == nil {
		_, err = s.conn.ExecContext(ctx, "COMMIT")
		if err != nil {
			err = fmt.Errorf("commit: %w", err)
		}
	}
	if err != nil {
		// The rollback must run even when ctx is done; it fails harmlessly
		// when COMMIT already ended the transaction.
		_, _ = s.conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
	}
	return err
}

// DB returns the sink's database handle, for reading (tests, the CLI).
// Writing through it bypasses the sink's bookkeeping. The handle changes
// when the sink reopens the database after a fatal DuckDB error.
func (s *Sink) DB() *sql.DB { return s.db.Load() }

// Checkpoints returns the stored checkpoints of source ("" for all), exactly
// as they were applied.
func (s *Sink) Checkpoints(ctx context.Context, source string) ([]change.Checkpoint, error) {
	var args []any
	if source != "" {
		args = append(args, source)
	}
	rows, err := s.db.Load().QueryContext(ctx, sqlgen.SelectCheckpoints(dialect, source != ""), args...)
	if err != nil {
		return nil, fmt.Errorf("read checkpoints: %w", err)
	}
	var out []change.Checkpoint
	for rows.Next() {
		var c change.Checkpoint
		var ai, ri int64
		if err := rows.Scan(&c.Source, &c.Partition,
			&c.Applied.Source, &c.Applied.Partition, &c.Applied.Offset, &ai, &c.Applied.Indexed,
			&c.Held,
			&c.Resume.Source, &c.Resume.Partition, &c.Resume.Offset, &ri, &c.Resume.Indexed); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read checkpoints: %w", err)
		}
		c.Applied.Index, c.Resume.Index = int(ai), int(ri)
		out = append(out, c)
	}
	if err := closeRows(rows); err != nil {
		return nil, fmt.Errorf("read checkpoints: %w", err)
	}
	return out, nil
}

// Close closes the database. It waits for an Apply in progress.
func (s *Sink) Close(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	err := s.thread.run(func() error {
		var err error
		if s.conn != nil {
			err = s.conn.Close()
		}
		if cerr := s.db.Load().Close(); err == nil {
			err = cerr
		}
		return err
	})
	s.thread.stop()
	if err != nil {
		return fmt.Errorf("close duckdb %q: %w", s.opts.Path, err)
	}
	return nil
}

// Query runs one read-only query against the database file at path, opened
// with access_mode=read_only (so it fails while a writer holds the file), and
// returns the column names and all rows.
func Query(ctx context.Context, path, query string) (cols []string, rows [][]any, err error) {
	if path == "" {
		return nil, nil, errors.New("query duckdb: path is empty")
	}
	if strings.Contains(path, "?") {
		return nil, nil, fmt.Errorf("query duckdb %q: path must not contain '?'", path)
	}
	db, err := sql.Open("duckdb", path+"?access_mode=read_only")
	if err != nil {
		return nil, nil, fmt.Errorf("open duckdb %q read-only: %w", path, err)
	}
	defer db.Close()
	r, err := db.QueryContext(ctx, query)
	if err != nil {
		return nil, nil, fmt.Errorf("query duckdb %q: %w", path, err)
	}
	if cols, err = r.Columns(); err != nil {
		r.Close()
		return nil, nil, fmt.Errorf("query duckdb %q: %w", path, err)
	}
	for r.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := r.Scan(ptrs...); err != nil {
			r.Close()
			return nil, nil, fmt.Errorf("query duckdb %q: %w", path, err)
		}
		rows = append(rows, vals)
	}
	if err := closeRows(r); err != nil {
		return nil, nil, fmt.Errorf("query duckdb %q: %w", path, err)
	}
	return cols, rows, nil
}

// withDriver runs fn with the write connection's driver connection, for appenders.
func (s *Sink) withDriver(fn func(driver.Conn) error) error {
	return s.conn.Raw(func(dc any) error {
		c, ok := dc.(driver.Conn)
		if !ok {
			return fmt.Errorf("duckdb connection is %T, not a driver.Conn", dc)
		}
		return fn(c)
	})
}

// classify wraps err with sink.ErrPermanent when retrying cannot help: the
// data itself does not fit (conversion, range, constraint errors). Catalog,
// I/O and transaction errors stay retryable: an operator can fix those.
func classify(err error) error {
	var de *duckdb.Error
	if errors.As(err, &de) {
		switch de.Type {
		case duckdb.ErrorTypeConversion, duckdb.ErrorTypeOutOfRange, duckdb.ErrorTypeConstraint,
			duckdb.ErrorTypeDecimal, duckdb.ErrorTypeMismatchType, duckdb.ErrorTypeInvalidInput:
			return fmt.Errorf("%w: %w", sink.ErrPermanent, err)
		}
	}
	return err
}

// maybeCheckpoint checkpoints after a committed batch of logged events when
// the WAL has reached walLimit or CheckpointRows events were logged since
// the last checkpoint (see CheckpointRows). The batch is durable in the WAL
// either way: a failed checkpoint is kept in ckptError and tried again
// after the next batch; a checkpoint that invalidates the database fails
// the next Apply, which reopens it.
func (s *Sink) maybeCheckpoint(ctx context.Context, logged int) {
	if s.opts.Path == "" {
		return // in memory: nothing to write
	}
	s.logRows += logged
	var wal int64
	if fi, err := os.Stat(s.opts.Path + ".wal"); err == nil {
		wal = fi.Size()
	}
	if wal < s.walSize {
		// DuckDB checkpointed on its own (its threshold is twice ours: a
		// single large batch).
		s.logRows = logged
	}
	s.walSize = wal
	if s.logRows < CheckpointRows && wal < s.walLimit {
		return
	}
	if _, err := s.conn.ExecContext(ctx, "CHECKPOINT"); err != nil {
		s.ckptError = fmt.Errorf("checkpoint: %w", err)
		if fatal(err) {
			_ = s.reopen(ctx) // on failure, the next Apply tries again
		}
		return
	}
	s.ckptError, s.logRows, s.walSize = nil, 0, 0
}

// fatal reports whether err left DuckDB's database invalidated: DuckDB then
// refuses every statement until the database is closed and opened again.
func fatal(err error) bool {
	var de *duckdb.Error
	return errors.As(err, &de) && (de.Type == duckdb.ErrorTypeFatal || de.Type == duckdb.ErrorTypeInternal)
}

// reopen closes an invalidated database and opens it again (on the sink's
// thread): DuckDB replays the WAL, so every committed batch is there, and
// the sink reloads its schema and event_id counter. Until it succeeds,
// s.broken makes every Apply try again first.
func (s *Sink) reopen(ctx context.Context) error {
	s.broken = true
	if s.conn != nil {
		_ = s.conn.Close()
		s.conn = nil
	}
	_ = s.db.Load().Close()
	db, err := sql.Open("duckdb", s.opts.dsn(s.walLimit))
	if err != nil {
		return fmt.Errorf("reopen duckdb %q: %w", s.opts.Path, err)
	}
	s.db.Store(db)
	if err := s.init(ctx); err != nil {
		return fmt.Errorf("reopen duckdb %q: %w", s.opts.Path, err)
	}
	s.broken, s.logRows, s.walSize = false, 0, 0
	return nil
}
