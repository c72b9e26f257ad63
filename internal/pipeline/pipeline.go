package pipeline

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/decode"
	"github.com/cdcflow/cdcflow/internal/sink"
	"github.com/cdcflow/cdcflow/internal/source"
)

// Defaults used when a Config field is zero.
const (
	DefaultBatchMaxEvents  = 10000
	DefaultBatchMaxBytes   = 16 << 20
	DefaultBatchMaxWait    = time.Second
	DefaultMaxAttempts     = 5
	DefaultRetryInitial    = 100 * time.Millisecond
	DefaultRetryMax        = 30 * time.Second
	DefaultShutdownTimeout = 30 * time.Second
	DefaultExpireEvery     = time.Second
	DefaultParkAfter       = 5 * time.Second
	DefaultParkTimeout     = 5 * time.Minute
)

// DeadLetterWriter receives every dead letter before the batch holding it is
// applied; Flush makes them durable. *deadletter.File implements it.
type DeadLetterWriter interface {
	Write(dl []change.DeadLetter) error
	Flush() error
}

// Config is what Run needs. Source, Decoder and Sink are required; zero
// numbers take the Default values.
type Config struct {
	Source      source.Source
	Decoder     *decode.Decoder
	Sink        sink.Sink
	DeadLetters DeadLetterWriter // nil: dead letters go to the sink only

	BatchMaxEvents int           // a batch is applied once it holds this many events + dead letters
	BatchMaxBytes  int64         // ... or this many bytes (raw + before + after); one record's output is never split
	BatchMaxWait   time.Duration // a batch is applied at most this long after its first record

	MaxAttempts  int           // Apply attempts before a batch is bisected
	RetryInitial time.Duration // first backoff; doubles per attempt
	RetryMax     time.Duration // backoff cap

	ShutdownTimeout time.Duration // bound on finishing the in-flight batch after ctx is cancelled
	ExpireEvery     time.Duration // how often held DSQL fragments are checked for timeout

	// With a LeasedSource and a sink.PieceStore, DSQL sets held for
	// ParkAfter are parked in the sink, where any process completes them;
	// parked sets incomplete after ParkTimeout (set it to the decoder's
	// fragment timeout) are dead-lettered by the sink. See park.go.
	ParkAfter   time.Duration
	ParkTimeout time.Duration

	Progress func(Progress) // called after every applied batch, from Run's goroutine
	Logger   *slog.Logger   // nil means slog.Default()
	Metrics  Observer       // nil means none; *metrics.Metrics implements it
}

// Observer is told what a run does, for metrics. Run calls it from its own
// goroutine, never concurrently; its methods must not block and must not
// retain the slices or batch they are given.
//
// Counts follow Summary: Decoded sees the events Summary.Events counts;
// BatchApplied is called once per successful Apply (Summary.Batches), with
// the batch as applied (after bisection, a piece of it) and every dead
// letter it stored; Retry and Bisect match Summary.Retries and Bisects;
// Skipped deltas add up to Summary.Skipped.
type Observer interface {
	// Decoded reports events decoded from the source that were not already
	// stored by an earlier run.
	Decoded(events []change.Event)
	// BatchApplied reports one successful Apply of b, the sink's result, how
	// long the call took, and when it returned.
	BatchApplied(b *change.Batch, res change.ApplyResult, took time.Duration, now time.Time)
	// Retry reports an Apply attempt that failed and will be retried.
	Retry()
	// Bisect reports a batch split to isolate an event the sink rejects.
	Bisect()
	// Skipped reports n more records deliberately skipped for reason.
	Skipped(reason string, n int)
	// Held reports the number of DSQL pieces now held for reassembly.
	Held(n int64)
}

// noObserver is the Observer of a Config without one.
type noObserver struct{}

func (noObserver) Decoded([]change.Event)                                                   {}
func (noObserver) BatchApplied(*change.Batch, change.ApplyResult, time.Duration, time.Time) {}
func (noObserver) Retry()                                                                   {}
func (noObserver) Bisect()                                                                  {}
func (noObserver) Skipped(string, int)                                                      {}
func (noObserver) Held(int64)                                                               {}

// Progress is a snapshot of a run, reported after every batch.
type Progress struct {
	Records  int64           // raw records read
	Events   int64           // events decoded (not counting ones already stored)
	Dead     int64           // dead letters stored
	Applied  int64           // events that changed a merged table
	Batches  int64           // batches applied
	Held     int64           // DSQL pieces held for reassembly
	Elapsed  time.Duration   // since Run started
	Position change.Position // the last record consumed
}

// Summary is what a run did.
type Summary struct {
	Records       int64            // raw records read from the source
	Events        int64            // events decoded, not counting ones already stored
	AlreadyStored int64            // events and dead letters dropped: at or before a stored checkpoint
	Logged        int64            // sum of ApplyResult.Logged
	Applied       int64            // sum of ApplyResult.Applied
	Duplicates    int64            // sum of ApplyResult.Duplicates
	Stale         int64            // sum of ApplyResult.Stale
	Dead          map[string]int64 // dead letters stored, by reason (decoder and sink_rejected)
	Skipped       map[string]int64 // records deliberately skipped, by reason (from the decoder)
	Tables        map[string]int64 // events applied, by schema.table
	Batches       int64            // successful Apply calls
	Retries       int64            // Apply attempts that failed and were retried
	Bisects       int64            // batches split to isolate a rejected event
	Fenced        int64            // partitions of batches not stored because their lease was lost (LeasedSource)
	Interrupted   bool             // the context was cancelled before the input ended
	Elapsed       time.Duration
	EventsPerSec  float64 // Events / Elapsed
}

// DeadTotal returns the number of dead letters stored.
func (s *Summary) DeadTotal() int64 {
	var n int64
	for _, v := range s.Dead {
		n += v
	}
	return n
}

// Run moves records from cfg.Source to cfg.Sink until the source ends
// (source.ErrEndOfInput), ctx is cancelled, or an error that retrying cannot
// fix occurs (a read error, a dead-letter write error, or the shutdown
// deadline passing while the sink is down).
//
// A cancelled ctx is a graceful stop: the in-flight batch is applied and
// acknowledged, and Run returns a nil error if that succeeded. Run always
// closes cfg.Source before returning; the caller closes the sink and the
// dead-letter writer.
func Run(ctx context.Context, cfg Config) (Summary, error) {
	if err := cfg.setDefaults(); err != nil {
		if cfg.Source != nil {
			_ = cfg.Source.Close(context.WithoutCancel(ctx))
		}
		return Summary{}, err
	}
	r := newRunner(cfg)
	return r.run(ctx)
}

func (c *Config) setDefaults() error {
	switch {
	case c.Source == nil:
		return errors.New("pipeline config: Source is nil")
	case c.Decoder == nil:
		return errors.New("pipeline config: Decoder is nil")
	case c.Sink == nil:
		return errors.New("pipeline config: Sink is nil")
	case c.BatchMaxEvents < 0, c.BatchMaxBytes < 0, c.BatchMaxWait < 0, c.MaxAttempts < 0,
		c.RetryInitial < 0, c.RetryMax < 0, c.ShutdownTimeout < 0, c.ExpireEvery < 0, c.ParkAfter < 0, c.ParkTimeout < 0:
		return errors.New("pipeline config: batch, retry and timeout settings must not be negative")
	}
	def := func(v *int64, d int64) {
		if *v == 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if c.BatchMaxEvents == 0 {
		c.BatchMaxEvents = DefaultBatchMaxEvents
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	def(&c.BatchMaxBytes, DefaultBatchMaxBytes)
	defDur(&c.BatchMaxWait, DefaultBatchMaxWait)
	defDur(&c.RetryInitial, DefaultRetryInitial)
	defDur(&c.RetryMax, DefaultRetryMax)
	defDur(&c.ShutdownTimeout, DefaultShutdownTimeout)
	defDur(&c.ExpireEvery, DefaultExpireEvery)
	defDur(&c.ParkAfter, DefaultParkAfter)
	defDur(&c.ParkTimeout, DefaultParkTimeout)
	if c.RetryMax < c.RetryInitial {
		c.RetryMax = c.RetryInitial
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Metrics == nil {
		c.Metrics = noObserver{}
	}
	return nil
}
