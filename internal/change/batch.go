package change

// DeadLetter is a record that could not become an event, or an event a sink
// could not store. It is written to the dead-letter destination and counted
// by Reason; it never stops the pipeline.
type DeadLetter struct {
	Reason   string   // short stable code (see the Reason constants)
	Detail   string   // what was wrong, for people
	Format   string   // the decoder that rejected it ("dsql", "debezium", ...); "" when unknown
	Position Position // where the record sits in its stream
	Raw      []byte   // the record's bytes as delivered
}

// Checkpoint is what a sink stores for one stream partition, in the same
// transaction as the rows of the batch that carries it.
//
// Every record of the partition at or before Applied has been applied,
// dead-lettered or skipped, except records still Held (pieces of a DSQL
// oversized record waiting for the rest of their set). On restart a source
// reads from Resume when Held is true, else from just after Applied; the
// pipeline drops any event or dead letter whose Position is at or before
// Applied, because it was stored already.
type Checkpoint struct {
	Source    string
	Partition string
	Applied   Position
	Held      bool
	Resume    Position // the oldest held record; meaningful only when Held

	// LeaseOwner and LeaseEpoch fence a partition shared through a lease
	// table (Kinesis shards split between daemons). When LeaseEpoch > 0 the
	// sink stores this checkpoint, and the batch's events and dead letters
	// of this partition, only if LeaseOwner still holds the partition's
	// lease at LeaseEpoch, checked in the batch's transaction; otherwise it
	// stores none of them (the lease's new owner re-reads them from the
	// stored checkpoint) and reports the partition in ApplyResult.Fenced.
	LeaseOwner string
	LeaseEpoch int64
}

// Batch is what the pipeline hands a sink in one Apply: events in stream
// order, dead letters, and the checkpoints to store with them.
type Batch struct {
	Events      []Event
	Dead        []DeadLetter
	Checkpoints []Checkpoint
	// Fences are checkpoints used only for their lease (LeaseOwner,
	// LeaseEpoch): the sink fences the batch's partitions by them exactly
	// as by Checkpoints, but stores none of them. The pipeline sets them on
	// the first parts of a bisected batch, which carry no checkpoints.
	Fences []Checkpoint
	// Park holds pieces of oversized DSQL records whose sets did not
	// complete in this process: a sink.PieceStore stores them in the
	// batch's transaction, so the checkpoints may pass them and any process
	// can complete their sets (see sink.PieceStore).
	Park []Piece
	// DedupePositions means the position of each event and dead letter
	// names its source record for good (a DynamoDB Streams sequence number
	// is unique within its stream), and no checkpoint covers it. A sink
	// then stores every such position that has an Offset in the batch's
	// transaction and first drops the events and dead letters whose
	// position an earlier batch stored: a redelivered record is stored once.
	DedupePositions bool
}

// Piece is one piece of an oversized DSQL record (the main record or one
// fragment) parked in the sink.
type Piece struct {
	ChunkID   string
	Index     int // fragment index; -1 for the main record
	Fragments int // the set's fragment count, known from the main record; 0 for a fragment
	Raw       Raw // the record's bytes and position
}

// Len is the number of events and dead letters in b.
func (b *Batch) Len() int { return len(b.Events) + len(b.Dead) }

// ApplyResult counts what a sink did with one batch.
type ApplyResult struct {
	Logged     int            // rows appended to the event log
	Applied    int            // events that changed a merged table
	Duplicates int            // events that were exact duplicates of one already applied
	Stale      int            // events older than the stored row or tombstone: logged, not merged
	Dead       map[string]int // dead letters stored, by reason (including rows the sink rejected)
	Fenced     []string       // partitions (Source + "/" + Partition) not stored: their lease was lost (Checkpoint.LeaseEpoch)
	Tables     map[string]int // events per source table
}

// Add accumulates o into r.
func (r *ApplyResult) Add(o ApplyResult) {
	r.Logged += o.Logged
	r.Applied += o.Applied
	r.Duplicates += o.Duplicates
	r.Stale += o.Stale
	for k, v := range o.Dead {
		if r.Dead == nil {
			r.Dead = map[string]int{}
		}
		r.Dead[k] += v
	}
	r.Fenced = append(r.Fenced, o.Fenced...)
	for k, v := range o.Tables {
		if r.Tables == nil {
			r.Tables = map[string]int{}
		}
		r.Tables[k] += v
	}
}
