package dsql

// The field names and type values of the DSQL CDC record format, in one
// table. The published format documents the envelope (type, op, before,
// after, source.*, ts_ms, ts_ns) but not every name used by oversized
// records; the names marked "assumed" follow the shape given in
// docs/formats/dsql.md. If AWS publishes different names, this table is the
// only place to change.
const (
	// Envelope (published).
	nameType   = "type"   // record type: typeFull, typeChunked or typeFragment; absent means full
	nameOp     = "op"     // c, u, d; anything else is an upsert of after
	nameBefore = "before" // row image before the change; deletes carry only the key columns
	nameAfter  = "after"  // row image after the change
	nameSource = "source" // source metadata object
	nameTsMs   = "ts_ms"  // emission time in ms (envelope) or commit time in ms (source)
	nameTsNs   = "ts_ns"  // emission time in ns (envelope) or commit time in ns (source)

	// Inside source (published).
	nameSchema  = "schema"
	nameTable   = "table"
	nameTxID    = "txId"
	nameCluster = "cluster"

	// Record type values (published).
	typeFull     = "full"
	typeChunked  = "chunked"
	typeFragment = "fragment"

	// Oversized records (assumed).
	nameChunked   = "chunked"   // main record: object describing the split image
	nameChunkID   = "chunk_id"  // main record (inside chunked) and fragments: the set's id
	nameFragments = "fragments" // main record (inside chunked): number of fragments N
	nameField     = "field"     // main record (inside chunked): nameAfter or nameBefore
	nameIndex     = "index"     // fragment: 0-based piece number
	nameData      = "data"      // fragment: the piece of the image's JSON text, as a JSON string
)

// Bounds on oversized-record metadata.
const (
	maxFragments   = 100000 // a set of more fragments is invalid
	maxChunkIDLen  = 1024   // a longer chunk_id is invalid (it is remembered after completion)
	recentIDs      = 100000 // completed or failed chunk ids remembered to drop late duplicates
	recentIDsBytes = 8 << 20
)
