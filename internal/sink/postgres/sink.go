package postgres

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

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

// Sink is a PostgreSQL warehouse: an append-only event log, a current-state
// view and a merged table per source table, tombstones, dead letters and
// checkpoints, all written in one transaction per Apply.
//
// Apply, Checkpoints and Close serialize on a mutex and share one
// connection, which is re-established on the next call after it breaks
// (a server restart, a network error).
type Sink struct {
	mu            sync.Mutex
	opts          Options
	cfg           map[string]tableConfig // by folded table name
	config        *pgx.ConnConfig
	red           redactor
	target        string // user@host:port/database, for messages
	conn          *pgx.Conn
	everConnected bool
	staged        map[string]bool // staging tables that exist on conn
	tables        map[string]*tableState
	closed        bool

	// beforeCommit, when set by tests, runs after every write of a batch and
	// before COMMIT; an error makes Apply roll back.
	beforeCommit func(ctx context.Context, tx pgx.Tx) error
}

// Open connects to the database, creates the schema and the sink's base
// objects (in one transaction, serialized with other writers by an advisory
// lock), and loads what it knows of merged tables.
func Open(ctx context.Context, opts Options) (*Sink, error) {
	cfg, err := opts.resolve()
	if err != nil {
		return nil, fmt.Errorf("postgres sink options: %w", err)
	}
	red := newRedactor(opts.URL)
	config, err := pgx.ParseConfig(opts.URL)
	if err != nil {
		// The parse error quotes the connection string; only its kind is kept.
		return nil, errors.New("postgres sink options: url: cannot be parsed as a postgres:// URL or key=value connection string (its text is withheld: it may hold a password)")
	}
	config.RuntimeParams["search_path"] = sqlgen.QuoteIdent(opts.Schema) + ", pg_temp"
	config.RuntimeParams["TimeZone"] = "UTC"
	// Statements are prepared once per connection but planned for each
	// batch's values: a generic plan cannot know that an array holds 10k
	// keys and picks nested loops over whole tables.
	config.RuntimeParams["plan_cache_mode"] = "force_custom_plan"
	if config.RuntimeParams["application_name"] == "" {
		config.RuntimeParams["application_name"] = "cdcflow"
	}
	s := &Sink{opts: opts, cfg: cfg, config: config, red: red,
		target: fmt.Sprintf("%s@%s:%d/%s", config.User, config.Host, config.Port, config.Database)}
	if err := s.init(ctx); err != nil {
		s.disconnect()
		return nil, red.err(fmt.Errorf("open postgres sink %s schema %q: %w", s.target, opts.Schema, err))
	}
	return s, nil
}

// String describes the sink without secrets.
func (s *Sink) String() string {
	return "postgres sink " + s.target + " schema " + strconv.Quote(s.opts.Schema)
}

// connect returns the open connection, connecting when there is none.
func (s *Sink) connect(ctx context.Context) (*pgx.Conn, error) {
	if s.conn != nil && !s.conn.IsClosed() {
		return s.conn, nil
	}
	s.disconnect()
	conn, err := pgx.ConnectConfig(ctx, s.config.Copy())
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	if s.everConnected {
		s.opts.Logger.Info("reconnected to postgres", "target", s.target)
	}
	s.everConnected = true
	s.conn = conn
	s.staged = map[string]bool{}
	return conn, nil
}

func (s *Sink) disconnect() {
	if s.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = s.conn.Close(ctx)
		cancel()
		s.conn = nil
	}
}

// lockKey is the advisory-lock key of a name within the sink's schema.
func (s *Sink) lockKey(kind string, parts ...string) int64 {
	h := fnv.New64a()
	h.Write([]byte("cdcflow\x00" + kind + "\x00" + s.opts.Schema))
	for _, p := range parts {
		h.Write([]byte{0})
		h.Write([]byte(p))
	}
	return int64(h.Sum64())
}

// inTx runs fn in a transaction on the connection, reconnecting first if it
// is gone. A connection error drops the connection for the next call.
func (s *Sink) inTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	conn, err := s.connect(ctx)
	if err != nil {
		return err
	}
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{})
	if err != nil {
		if connectionLost(err) {
			s.disconnect()
		}
		return fmt.Errorf("begin: %w", err)
	}
	err = fn(tx)
	if err == nil {
		if err = tx.Commit(ctx); err != nil {
			err = fmt.Errorf("commit: %w", err)
		}
	}
	if err != nil {
		// Roll back even when ctx is done; a failure means the connection
		// is broken, and it is dropped.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		rerr := tx.Rollback(rctx)
		cancel()
		if (rerr != nil && !errors.Is(rerr, pgx.ErrTxClosed)) || conn.IsClosed() {
			s.disconnect()
		}
	}
	return err
}

func (s *Sink) init(ctx context.Context) error {
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", s.lockKey("init")); err != nil {
			return fmt.Errorf("lock schema: %w", err)
		}
		if _, err := tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+sqlgen.QuoteIdent(s.opts.Schema)); err != nil {
			return fmt.Errorf("create schema: %w", err)
		}
		for _, ddl := range sqlgen.BaseDDL(dialect) {
			if _, err := tx.Exec(ctx, ddl); err != nil {
				return fmt.Errorf("create base tables: %w", err)
			}
		}
		if _, err := tx.Exec(ctx, sqlgen.PruneChunks(dialect)); err != nil {
			return fmt.Errorf("prune %s: %w", sqlgen.ChunksTable, err)
		}
		var hasSeq bool
		if err := tx.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", sqlgen.QuoteIdent(sqlgen.EventIDSequence)).Scan(&hasSeq); err != nil {
			return fmt.Errorf("find %s: %w", sqlgen.EventIDSequence, err)
		}
		if !hasSeq {
			// Continue after ids a database prepared by hand may hold.
			if _, err := tx.Exec(ctx, "CREATE SEQUENCE "+sqlgen.QuoteIdent(sqlgen.EventIDSequence)+" AS BIGINT"); err != nil {
				return fmt.Errorf("create %s: %w", sqlgen.EventIDSequence, err)
			}
			if _, err := tx.Exec(ctx, "SELECT setval($1::regclass, max(event_id)) FROM "+sqlgen.QuoteIdent(sqlgen.EventsTable)+" HAVING max(event_id) > 0",
				sqlgen.QuoteIdent(sqlgen.EventIDSequence)); err != nil {
				return fmt.Errorf("start %s: %w", sqlgen.EventIDSequence, err)
			}
			if _, err := tx.Exec(ctx, sqlgen.PostgresEventIDDefault()); err != nil {
				return fmt.Errorf("number %s: %w", sqlgen.EventsTable, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := s.reload(ctx); err != nil {
		return err
	}
	return s.reconcile(ctx)
}

// reload reads the registries into s.tables.
func (s *Sink) reload(ctx context.Context) error {
	conn, err := s.connect(ctx)
	if err != nil {
		return err
	}
	tables, err := loadRegistry(ctx, conn)
	if err != nil {
		if connectionLost(err) {
			s.disconnect()
		}
		return err
	}
	s.tables = tables
	return nil
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
	sort.Slice(changed, func(i, j int) bool { return changed[i].name < changed[j].name })
	now := time.Now().UTC()
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		for _, t := range changed {
			if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", s.lockKey("table", t.name)); err != nil {
				return fmt.Errorf("lock table %s: %w", t.name, err)
			}
			for _, st := range schemaDDL(t, s.opts.LogOnly, s.soft(t.name), now) {
				if _, err := tx.Exec(ctx, st.sql, st.args...); err != nil {
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

// Checkpoints returns the stored checkpoints of source ("" for all), exactly
// as they were applied.
func (s *Sink) Checkpoints(ctx context.Context, source string) ([]change.Checkpoint, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("postgres sink: checkpoints after close")
	}
	out, err := s.readCheckpoints(ctx, source)
	if err != nil {
		return nil, s.red.err(fmt.Errorf("read checkpoints from %s: %w", s.target, err))
	}
	return out, nil
}

func (s *Sink) readCheckpoints(ctx context.Context, source string) ([]change.Checkpoint, error) {
	conn, err := s.connect(ctx)
	if err != nil {
		return nil, err
	}
	var args []any
	if source != "" {
		args = append(args, source)
	}
	rows, err := conn.Query(ctx, sqlgen.SelectCheckpoints(dialect, source != ""), args...)
	if err != nil {
		if connectionLost(err) {
			s.disconnect()
		}
		return nil, err
	}
	out, err := scanCheckpoints(rows)
	if err != nil && connectionLost(err) {
		s.disconnect()
	}
	return out, err
}

func scanCheckpoints(rows pgx.Rows) ([]change.Checkpoint, error) {
	defer rows.Close()
	var out []change.Checkpoint
	for rows.Next() {
		var c change.Checkpoint
		var ai, ri int64
		if err := rows.Scan(&c.Source, &c.Partition,
			&c.Applied.Source, &c.Applied.Partition, &c.Applied.Offset, &ai, &c.Applied.Indexed,
			&c.Held,
			&c.Resume.Source, &c.Resume.Partition, &c.Resume.Offset, &ri, &c.Resume.Indexed); err != nil {
			return nil, err
		}
		c.Applied.Index, c.Resume.Index = int(ai), int(ri)
		out = append(out, c)
	}
	rows.Close()
	return out, rows.Err()
}

// Close closes the connection. It waits for an Apply in progress.
func (s *Sink) Close(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.conn != nil {
		err := s.conn.Close(ctx)
		s.conn = nil
		if err != nil {
			return s.red.err(fmt.Errorf("close postgres sink %s: %w", s.target, err))
		}
	}
	return nil
}
