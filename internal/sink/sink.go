// Package sink defines the contract every store (DuckDB, PostgreSQL, ...)
// implements.
package sink

import (
	"context"
	"errors"
	"time"

	"github.com/cdcflow/cdcflow/internal/change"
)

// Sink stores batches of change events.
//
// Apply blocks until the batch, its dead letters and its checkpoints are
// durably committed in one transaction, and only then returns a nil error.
// A non-nil error means nothing of the batch is visible; the pipeline retries
// or bisects it. Applying a batch again after a crash never duplicates rows:
// events at or before a stored checkpoint are ignored by the pipeline, and a
// merged table changes only for events newer than its stored row.
//
// Apply is not called concurrently.
type Sink interface {
	Apply(ctx context.Context, b *change.Batch) (change.ApplyResult, error)
	Close(ctx context.Context) error
}

// PositionStore is a sink that stores checkpoints with its rows. Checkpoints
// returns every stored checkpoint of the given stream source ("" for all).
type PositionStore interface {
	Checkpoints(ctx context.Context, source string) ([]change.Checkpoint, error)
}

// ChunkStore is a sink that stores, in the transaction of each event with a
// change.Event.ChunkID, that chunk id: the set of pieces of an oversized
// DSQL record it was reassembled from. After a restart the pipeline hands
// them to the decoder (decode.Decoder.RememberCompleted), so pieces of
// stored sets that are read again (from a checkpoint's Resume position, or
// redelivered late) are dropped as duplicates instead of being held and
// dead-lettered or logged twice.
//
// CompletedChunks returns the ids stored after the id sequence number
// after (0 for all), at most limit of the newest, and the sequence number
// to pass next time.
type ChunkStore interface {
	CompletedChunks(ctx context.Context, after int64, limit int) (ids []string, next int64, err error)
}

// PieceStore is a ChunkStore that parks pieces of oversized DSQL records,
// so that processes reading different partitions of one stream (Kinesis
// shards split by leases) complete sets whose pieces they read apart.
//
// Apply stores change.Batch.Park in the batch's transaction (a piece of a
// set whose chunk id is already stored is not parked), and stores each
// event with a ChunkID at most once: an event whose chunk id is already
// stored is dropped before anything of it is written, and the parked
// pieces of a stored set are deleted. Events marked Parked are neither
// filtered by nor checked against the checkpoints of their Position.
type PieceStore interface {
	ChunkStore
	// CompleteParked returns the chunk ids of at most limit parked sets
	// that hold their main record and all its fragments.
	CompleteParked(ctx context.Context, limit int) ([]string, error)
	// ParkedPieces returns the parked pieces of the sets ids.
	ParkedPieces(ctx context.Context, ids []string) ([]change.Piece, error)
	// ExpireParked removes, in one transaction, every piece of the sets
	// parked for longer than timeout (by the store's clock) and stores them
	// as fragment_timeout dead letters (in the store, whatever its dead
	// letter options: that is where the pieces were). It returns them.
	// Concurrent callers never both return a piece.
	ExpireParked(ctx context.Context, timeout time.Duration) ([]change.DeadLetter, error)
}

// ErrPermanent marks an Apply error that retrying cannot fix (for example an
// event whose value no column type can hold). The pipeline bisects the batch
// to isolate the event and dead-letters it.
var ErrPermanent = errors.New("permanent sink error")
