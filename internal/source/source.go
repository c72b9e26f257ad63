// Package source defines the contract every transport (files, Kafka,
// Kinesis) implements.
package source

import (
	"context"
	"errors"

	"github.com/cdcflow/cdcflow/internal/change"
)

// ErrEndOfInput is returned by Read when a finite source has no more records.
var ErrEndOfInput = errors.New("end of input")

// AckFunc is called exactly once per batch returned by Read. ack(ctx, nil)
// means every record of the batch is durably applied (or dead-lettered) and
// the source may commit its position. ack(ctx, err) means the batch was not
// applied: the source must redeliver from its last committed position and
// never skip.
type AckFunc func(ctx context.Context, err error) error

// Source delivers raw records in stream order per partition.
//
// Read blocks until records are available, ctx is done, or the input ends
// (ErrEndOfInput). It is called from one goroutine. Acks may arrive from
// another goroutine, in the order the batches were read.
type Source interface {
	Read(ctx context.Context) ([]change.Raw, AckFunc, error)
	Close(ctx context.Context) error
}

// Resumer is a source that starts from checkpoints stored by a sink. Resume
// is called once, before the first Read.
type Resumer interface {
	Resume(ctx context.Context, cps []change.Checkpoint) error
}

// Bounded is a source whose Read blocks while MaxInFlight batches are
// unacknowledged. A pipeline holding that many unacknowledged batches gets
// no more records until it applies and acknowledges some, so it applies its
// pending batch at once instead of waiting for its max-wait timer.
type Bounded interface {
	MaxInFlight() int
}

// CanResumer is implemented by a Resumer some of whose streams cannot resume
// (stdin): the pipeline neither resumes nor filters by a stored checkpoint of
// a stream for which CanResume reports false.
type CanResumer interface {
	CanResume(source string) bool
}
