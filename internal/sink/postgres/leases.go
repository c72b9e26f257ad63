package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/sqlgen"
)

// Tables of the lease table, created in the sink's schema by
// (*Sink).LeaseTable.
const (
	LeasesTable      = "_cdc_leases"       // one row per (stream, shard): owner, epoch, expires_at, finished
	LeaseOwnersTable = "_cdc_lease_owners" // one row per (stream, owner): the owner's heartbeat
)

// leaseCallTimeout bounds one lease-table statement that has no TTL to
// bound it.
const leaseCallTimeout = 10 * time.Second

// Lease is one shard's row in the lease table. Its fields are those of
// kinesis.Lease, in the same order, so one converts to the other
// (kinesis.Lease(l)); this package does not import the source.
type Lease struct {
	Stream, Shard string
	Owner         string // "" when nobody holds it (released, or finished)
	Epoch         int64  // incremented by every successful AcquireLease: the fencing token
	Expired       bool   // by the database clock, when listed: the holder stopped renewing
	Finished      bool   // the shard was read to its end and all of it applied
}

// LeaseTable is a table of partition leases (Kinesis shards) in the sink's
// schema, shared by the daemons that split a stream: it implements the
// kinesis.Leaser contract with the kinesis.Lease type replaced by Lease.
//
// Every decision is made by the database clock (clock_timestamp()), never
// by the callers' clocks, and every method is one statement, so it is
// atomic: two owners never both hold a shard. Every successful
// AcquireLease increments the shard's epoch, also when its owner takes it
// again after losing it, so a batch read under any earlier take is fenced
// by Apply (see (*Sink).Apply and change.Checkpoint.LeaseEpoch).
//
// A LeaseTable has its own connection, so renewals are not queued behind a
// long Apply; it is re-established on the next call after it breaks. Its
// methods are safe for concurrent use (they serialize on a mutex).
type LeaseTable struct {
	s      *Sink // for the connection config, the redactor and the schema
	mu     sync.Mutex
	conn   *pgx.Conn
	closed bool
}

// LeaseTable creates the lease tables if they do not exist (serialized
// with other writers by the sink's schema lock) and returns a LeaseTable on
// a connection of its own. Close it before the sink.
func (s *Sink) LeaseTable(ctx context.Context) (*LeaseTable, error) {
	lt := &LeaseTable{s: s}
	err := lt.do(ctx, 0, "create lease tables", func(ctx context.Context, conn *pgx.Conn) error {
		return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", s.lockKey("init")); err != nil {
				return fmt.Errorf("lock schema: %w", err)
			}
			for _, ddl := range leaseDDL() {
				if _, err := tx.Exec(ctx, ddl); err != nil {
					return err
				}
			}
			return nil
		})
	})
	if err != nil {
		lt.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	return lt, nil
}

func leaseDDL() []string {
	return []string{
		`CREATE TABLE IF NOT EXISTS ` + sqlgen.QuoteIdent(LeasesTable) + ` (
	stream     TEXT NOT NULL,
	shard      TEXT NOT NULL,
	owner      TEXT NOT NULL DEFAULT '',
	epoch      BIGINT NOT NULL DEFAULT 0,
	expires_at TIMESTAMPTZ NOT NULL,
	finished   BOOLEAN NOT NULL DEFAULT false,
	updated_at TIMESTAMPTZ NOT NULL,
	PRIMARY KEY (stream, shard))`,
		`CREATE TABLE IF NOT EXISTS ` + sqlgen.QuoteIdent(LeaseOwnersTable) + ` (
	stream     TEXT NOT NULL,
	owner      TEXT NOT NULL,
	expires_at TIMESTAMPTZ NOT NULL,
	PRIMARY KEY (stream, owner))`,
	}
}

// do runs fn on the connection, connecting first when there is none, with
// a deadline of timeout (leaseCallTimeout when 0). A connection error
// drops the connection for the next call. Errors name what and are
// scrubbed of secrets.
func (lt *LeaseTable) do(ctx context.Context, timeout time.Duration, what string, fn func(context.Context, *pgx.Conn) error) error {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	s := lt.s
	if lt.closed {
		return fmt.Errorf("postgres lease table: %s after close", what)
	}
	if timeout <= 0 {
		timeout = leaseCallTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if lt.conn == nil || lt.conn.IsClosed() {
		conn, err := pgx.ConnectConfig(ctx, s.config.Copy())
		if err != nil {
			return s.red.err(fmt.Errorf("%s in postgres %s: connect: %w", what, s.target, err))
		}
		lt.conn = conn
	}
	if err := fn(ctx, lt.conn); err != nil {
		if connectionLost(err) || ctx.Err() != nil {
			lt.disconnect()
		}
		return s.red.err(fmt.Errorf("%s in postgres %s: %w", what, s.target, err))
	}
	return nil
}

func (lt *LeaseTable) disconnect() {
	if lt.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = lt.conn.Close(ctx)
		cancel()
		lt.conn = nil
	}
}

// Close closes the lease table's connection.
func (lt *LeaseTable) Close(context.Context) error {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	lt.closed = true
	lt.disconnect()
	return nil
}

// secs is a TTL as the seconds make_interval takes.
func secs(ttl time.Duration) float64 { return ttl.Seconds() }

// The statements. Parameters: $1 stream, $2 shard, $3 owner, $4 epoch, and
// the TTL in seconds last.
var (
	acquireSQL = `WITH taken AS (
	INSERT INTO ` + sqlgen.QuoteIdent(LeasesTable) + ` AS l (stream, shard, owner, epoch, expires_at, finished, updated_at)
	VALUES ($1, $2, $3, 1, clock_timestamp() + make_interval(secs => $4), false, clock_timestamp())
	ON CONFLICT (stream, shard) DO UPDATE
	SET owner = EXCLUDED.owner, epoch = l.epoch + 1,
		expires_at = clock_timestamp() + make_interval(secs => $4), updated_at = clock_timestamp()
	WHERE NOT l.finished AND (l.owner = '' OR l.owner = EXCLUDED.owner OR l.expires_at <= clock_timestamp())
	RETURNING owner, epoch, finished, true AS ok)
SELECT owner, epoch, finished, ok FROM taken
UNION ALL
SELECT owner, epoch, finished, false FROM ` + sqlgen.QuoteIdent(LeasesTable) + `
WHERE stream = $1 AND shard = $2 AND NOT EXISTS (SELECT 1 FROM taken)`

	renewSQL = `UPDATE ` + sqlgen.QuoteIdent(LeasesTable) + `
SET expires_at = clock_timestamp() + make_interval(secs => $5), updated_at = clock_timestamp()
WHERE stream = $1 AND shard = $2 AND owner = $3 AND epoch = $4 AND NOT finished`

	releaseSQL = `UPDATE ` + sqlgen.QuoteIdent(LeasesTable) + `
SET owner = '', expires_at = clock_timestamp(), updated_at = clock_timestamp()
WHERE stream = $1 AND shard = $2 AND owner = $3 AND epoch = $4 AND NOT finished`

	// A finished lease keeps its owner and epoch: late checkpoints and dead
	// letters of the shard from the owner that read it to its end (pieces of
	// a DSQL record held past the shard's end) still pass the fence, and
	// nobody can take a finished lease.
	finishSQL = `UPDATE ` + sqlgen.QuoteIdent(LeasesTable) + `
SET finished = true, expires_at = clock_timestamp(), updated_at = clock_timestamp()
WHERE stream = $1 AND shard = $2 AND owner = $3 AND epoch = $4`

	listSQL = `SELECT shard, CASE WHEN finished THEN '' ELSE owner END, epoch,
	owner <> '' AND NOT finished AND expires_at <= clock_timestamp(), finished
FROM ` + sqlgen.QuoteIdent(LeasesTable) + ` WHERE stream = $1 ORDER BY shard`

	// The heartbeat also forgets owners silent for a day (an owner id is
	// host name and process id by default: one per process that ever ran).
	heartbeatSQL = `WITH gone AS (
	DELETE FROM ` + sqlgen.QuoteIdent(LeaseOwnersTable) + `
	WHERE stream = $1 AND owner <> $2 AND expires_at < clock_timestamp() - interval '1 day')
INSERT INTO ` + sqlgen.QuoteIdent(LeaseOwnersTable) + ` AS o (stream, owner, expires_at)
VALUES ($1, $2, clock_timestamp() + make_interval(secs => $3))
ON CONFLICT (stream, owner) DO UPDATE SET expires_at = clock_timestamp() + make_interval(secs => $3)`

	ownersSQL = `SELECT owner FROM ` + sqlgen.QuoteIdent(LeaseOwnersTable) + `
WHERE stream = $1 AND expires_at > clock_timestamp() ORDER BY owner`
)

func checkTTL(what string, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("postgres lease table: %s: ttl must be positive, got %s", what, ttl)
	}
	return nil
}

// AcquireLease gives owner the shard's lease until now+ttl (by the database
// clock) when it is free, expired or already owner's, and not finished; a
// first take creates the row with epoch 1 and every take increments the
// epoch. ok is false, with the current row, when another owner holds a
// live lease or the shard is finished.
func (lt *LeaseTable) AcquireLease(ctx context.Context, stream, shard, owner string, ttl time.Duration) (Lease, bool, error) {
	l := Lease{Stream: stream, Shard: shard}
	if err := checkTTL("acquire lease", ttl); err != nil {
		return l, false, err
	}
	if owner == "" {
		return l, false, errors.New("postgres lease table: acquire lease: owner must not be empty")
	}
	var ok bool
	err := lt.do(ctx, ttl, fmt.Sprintf("acquire lease of %s[%s]", stream, shard), func(ctx context.Context, conn *pgx.Conn) error {
		err := conn.QueryRow(ctx, acquireSQL, stream, shard, owner, secs(ttl)).Scan(&l.Owner, &l.Epoch, &l.Finished, &ok)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // taken by a transaction our snapshot does not see yet: not ours
		}
		return err
	})
	if err != nil {
		return Lease{Stream: stream, Shard: shard}, false, err
	}
	return l, ok, nil
}

// RenewLease extends l until now+ttl; false when l.Owner no longer holds it
// at l.Epoch (or it is finished).
func (lt *LeaseTable) RenewLease(ctx context.Context, l Lease, ttl time.Duration) (bool, error) {
	if err := checkTTL("renew lease", ttl); err != nil {
		return false, err
	}
	var n int64
	err := lt.do(ctx, ttl, fmt.Sprintf("renew lease of %s[%s]", l.Stream, l.Shard), func(ctx context.Context, conn *pgx.Conn) error {
		tag, err := conn.Exec(ctx, renewSQL, l.Stream, l.Shard, l.Owner, l.Epoch, secs(ttl))
		n = tag.RowsAffected()
		return err
	})
	return n == 1, err
}

// ReleaseLease frees l if l.Owner still holds it at l.Epoch; a later Apply
// of a batch read under l is fenced.
func (lt *LeaseTable) ReleaseLease(ctx context.Context, l Lease) error {
	return lt.do(ctx, 0, fmt.Sprintf("release lease of %s[%s]", l.Stream, l.Shard), func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, releaseSQL, l.Stream, l.Shard, l.Owner, l.Epoch)
		return err
	})
}

// FinishLease marks the shard finished if l.Owner still holds it at
// l.Epoch. A finished lease is never acquired again; it keeps its owner
// and epoch, so that owner's late checkpoints of the shard are still
// stored.
func (lt *LeaseTable) FinishLease(ctx context.Context, l Lease) error {
	return lt.do(ctx, 0, fmt.Sprintf("finish lease of %s[%s]", l.Stream, l.Shard), func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, finishSQL, l.Stream, l.Shard, l.Owner, l.Epoch)
		return err
	})
}

// Leases lists the stream's leases, by shard id. Expired is decided by the
// database clock; a finished lease lists no owner.
func (lt *LeaseTable) Leases(ctx context.Context, stream string) ([]Lease, error) {
	var out []Lease
	err := lt.do(ctx, 0, "list leases of "+stream, func(ctx context.Context, conn *pgx.Conn) error {
		out = out[:0]
		rows, err := conn.Query(ctx, listSQL, stream)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			l := Lease{Stream: stream}
			if err := rows.Scan(&l.Shard, &l.Owner, &l.Epoch, &l.Expired, &l.Finished); err != nil {
				return err
			}
			out = append(out, l)
		}
		return rows.Err()
	})
	return out, err
}

// Heartbeat records that owner reads the stream until now+ttl, and forgets
// owners of the stream silent for a day.
func (lt *LeaseTable) Heartbeat(ctx context.Context, stream, owner string, ttl time.Duration) error {
	if err := checkTTL("heartbeat", ttl); err != nil {
		return err
	}
	return lt.do(ctx, ttl, fmt.Sprintf("heartbeat of %s on %s", owner, stream), func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, heartbeatSQL, stream, owner, secs(ttl))
		return err
	})
}

// Owners lists, sorted, the owners of the stream whose heartbeat has not
// expired.
func (lt *LeaseTable) Owners(ctx context.Context, stream string) ([]string, error) {
	var out []string
	err := lt.do(ctx, 0, "list owners of "+stream, func(ctx context.Context, conn *pgx.Conn) error {
		out = out[:0]
		rows, err := conn.Query(ctx, ownersSQL, stream)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	return out, err
}

// Checkpoints returns the stored checkpoints of a stream, read on the lease
// table's connection: a source that just took a lease loads where the
// shard's previous owner stopped without waiting for an Apply in progress.
func (lt *LeaseTable) Checkpoints(ctx context.Context, stream string) ([]change.Checkpoint, error) {
	var out []change.Checkpoint
	err := lt.do(ctx, 0, "read checkpoints of "+stream, func(ctx context.Context, conn *pgx.Conn) error {
		rows, err := conn.Query(ctx, sqlgen.SelectCheckpoints(dialect, true), stream)
		if err != nil {
			return err
		}
		out, err = scanCheckpoints(rows)
		return err
	})
	return out, err
}

// leaseKey is the lease a checkpoint says its batch was read under.
type leaseKey struct {
	owner string
	epoch int64
}

// fenceLeases enforces change.Checkpoint.LeaseEpoch in the batch's
// transaction: for every partition with a checkpoint whose LeaseEpoch > 0 it
// reads the lease row FOR SHARE (so an AcquireLease of another owner waits
// for this transaction, and then sees its checkpoints) and, when the row is
// missing or no longer at (LeaseOwner, LeaseEpoch), drops the partition's
// events, dead letters and checkpoints from the batch. It returns b itself
// when nothing is fenced, else a filtered copy, and the fenced partitions
// (Source + "/" + Partition, sorted).
func (s *Sink) fenceLeases(ctx context.Context, tx pgx.Tx, b *change.Batch) (*change.Batch, []string, error) {
	want := map[partKey]leaseKey{}
	bad := map[partKey]bool{} // two checkpoints of a partition under different leases
	for _, c := range slices.Concat(b.Checkpoints, b.Fences) {
		if c.LeaseEpoch <= 0 {
			continue
		}
		k, l := partKey{c.Source, c.Partition}, leaseKey{c.LeaseOwner, c.LeaseEpoch}
		if old, ok := want[k]; ok && old != l {
			bad[k] = true
		}
		want[k] = l
	}
	if len(want) == 0 {
		return b, nil, nil
	}
	streams := make([]string, 0, len(want))
	shards := make([]string, 0, len(want))
	for k := range want {
		streams = append(streams, cleanText(k.source))
		shards = append(shards, cleanText(k.partition))
	}
	rows, err := tx.Query(ctx, `SELECT l.stream, l.shard, l.owner, l.epoch FROM `+sqlgen.QuoteIdent(LeasesTable)+` l
WHERE (l.stream, l.shard) IN (SELECT * FROM unnest($1::text[], $2::text[]))
ORDER BY l.stream, l.shard FOR SHARE OF l`, streams, shards)
	if err != nil {
		return nil, nil, fmt.Errorf("lock leases of %d partitions: %w", len(want), err)
	}
	held := map[partKey]bool{}
	for rows.Next() {
		var k partKey
		var l leaseKey
		if err := rows.Scan(&k.source, &k.partition, &l.owner, &l.epoch); err != nil {
			rows.Close()
			return nil, nil, fmt.Errorf("lock leases: %w", err)
		}
		if w, ok := want[k]; ok && w == l && !bad[k] {
			held[k] = true
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("lock leases: %w", err)
	}
	fenced := map[partKey]bool{}
	var names []string
	for k := range want {
		if !held[k] {
			fenced[k] = true
			names = append(names, k.source+"/"+k.partition)
		}
	}
	if len(fenced) == 0 {
		return b, nil, nil
	}
	sort.Strings(names)
	out := &change.Batch{Park: b.Park, DedupePositions: b.DedupePositions} // parked pieces are kept: parking twice is harmless
	for _, e := range b.Events {
		if e.Parked || !fenced[keyOf(e.Position)] { // a parked set is stored by chunk id
			out.Events = append(out.Events, e)
		}
	}
	for _, d := range b.Dead {
		if !fenced[keyOf(d.Position)] {
			out.Dead = append(out.Dead, d)
		}
	}
	for _, c := range b.Checkpoints {
		if !fenced[partKey{c.Source, c.Partition}] {
			out.Checkpoints = append(out.Checkpoints, c)
		}
	}
	s.opts.Logger.Debug("lease lost: events, dead letters and checkpoints of fenced partitions not stored", "partitions", names,
		"events", len(b.Events)-len(out.Events), "dead_letters", len(b.Dead)-len(out.Dead))
	return out, names, nil
}
