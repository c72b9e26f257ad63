package dsql

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/cdcflow/cdcflow/internal/change"
)

// Format is the DeadLetter.Format of everything this package rejects.
const Format = "dsql"

// SkipDuplicatePiece is the change.Skip reason of a chunked main record or
// fragment that is already held, or whose set has already completed.
const SkipDuplicatePiece = "duplicate_fragment"

// The Skip values Decode returns. They are shared; callers must not modify them.
var (
	skipPending   = &change.Skip{Reason: change.SkipFragment}
	skipDuplicate = &change.Skip{Reason: SkipDuplicatePiece}
)

// Decoder decodes DSQL CDC records and reassembles oversized ones. It is not
// safe for concurrent use: one Decoder serves one pipeline goroutine.
type Decoder struct {
	Keys *change.Keys // key columns per table; nil means change.DefaultKey
	Asm  *Assembler   // pieces of oversized records waiting for their set

	// UnknownOps counts emitted events whose op was not c, u or d (applied
	// as upserts of after, as the DSQL documentation asks).
	UnknownOps int64
	// DuplicatePieces counts chunked main records and fragments dropped as
	// duplicates (already held, or their set already completed).
	DuplicatePieces int64

	h        header
	imgM     []member          // members of a reassembled image
	vals     []json.RawMessage // key values, reused
	buf      []byte            // scratch for Seq/TxID and unescaping
	idBuf    []byte            // scratch for an escaped chunk_id
	intern   map[string]string // schema and table names
	lastName [2]string         // the two names interned last
	lastTx   string
}

// NewDecoder returns a Decoder that holds at most maxBytes of oversized-record
// pieces and dead-letters sets incomplete after timeout.
func NewDecoder(keys *change.Keys, maxBytes int64, timeout time.Duration) *Decoder {
	return &Decoder{Keys: keys, Asm: NewAssembler(maxBytes, timeout), intern: map[string]string{}}
}

// Decode appends the events of one record to dst.
//
// A full record yields one event whose Before, After and Raw alias r.Data. A
// chunked main record or a fragment is copied and held; the piece that
// completes its set yields the reassembled event (Position of that piece, Raw
// of the main record, the image owned by the event).
//
// Errors: *change.Poison for a record that must be dead-lettered by the
// caller (with r's bytes and position); *change.Skip with reason
// change.SkipFragment for a piece held until its set completes, or
// SkipDuplicatePiece for a dropped duplicate piece. Pieces of other sets
// evicted to stay under the memory bound are collected by TakeDead, which
// the caller drains after each Decode.
func (d *Decoder) Decode(dst []change.Event, r change.Raw, now time.Time) ([]change.Event, error) {
	h := &d.h
	if err := h.parse(r.Data); err != nil {
		return dst, jsonPoison(err)
	}
	typ, err := recordType(r.Data, h)
	if err != nil {
		return dst, err
	}
	switch typ {
	case typeChunked:
		return d.decodeMain(dst, r, now)
	case typeFragment:
		return d.decodeFragment(dst, r, now)
	}
	dst = append(dst, change.Event{})
	ev := &dst[len(dst)-1]
	unknown, err := d.build(r.Data, h, "", nil, ev)
	if err != nil {
		*ev = change.Event{}
		return dst[:len(dst)-1], err
	}
	if unknown {
		d.UnknownOps++
	}
	ev.Raw, ev.Position = r.Data, r.Position
	return dst, nil
}

// TakeDead returns the dead letters produced by evictions during Decode and
// forgets them.
func (d *Decoder) TakeDead() []change.DeadLetter { return d.Asm.TakeDead() }

// Expire dead-letters the held sets whose first piece arrived more than the
// timeout before now.
func (d *Decoder) Expire(now time.Time) []change.DeadLetter { return d.Asm.Expire(now) }

// Drain dead-letters every incomplete set; call it at end of input.
func (d *Decoder) Drain() []change.DeadLetter { return d.Asm.Drain() }

// OldestHeld returns the lowest position of a piece held in one partition;
// the pipeline must not acknowledge that partition past it.
func (d *Decoder) OldestHeld(source, partition string) (change.Position, bool) {
	return d.Asm.OldestHeld(source, partition)
}

// Park hands over the pieces of the sets whose first piece arrived before
// before: they leave the decoder without a dead letter, so OldestHeld no
// longer counts them. The caller stores them where
// another process can complete their sets (sink.PieceStore).
func (d *Decoder) Park(before time.Time) []change.Piece { return d.Asm.Park(before) }

// HeldSince returns when the first piece of the oldest held set arrived;
// false when nothing is held.
func (d *Decoder) HeldSince() (time.Time, bool) {
	if d.Asm.head == nil {
		return time.Time{}, false
	}
	return d.Asm.head.first, true
}

// RememberCompleted records chunk ids of sets completed (and stored) before
// this decoder started, as if it had completed them: a later piece of one
// is dropped as a duplicate instead of being held. Held sets with such an
// id are dropped too.
func (d *Decoder) RememberCompleted(ids []string) { d.Asm.RememberCompleted(ids) }

// Reset forgets every held piece and every remembered chunk id without
// dead-lettering anything. Call it only when the source rewinds to its last
// checkpoint: the held pieces come again because checkpoints never pass
// them, and sets completed in batches that were not stored must be allowed
// to complete again.
func (d *Decoder) Reset() { d.Asm.Reset() }

func jsonPoison(err error) *change.Poison {
	if errors.Is(err, errNotObject) {
		return &change.Poison{Reason: change.ReasonInvalidEnvelope, Detail: err.Error()}
	}
	return &change.Poison{Reason: change.ReasonInvalidJSON, Detail: "record is not valid JSON: " + err.Error()}
}

// recordType returns typeFull, typeChunked or typeFragment.
func recordType(data []byte, h *header) (string, error) {
	switch h.typ.kind {
	case kindNone, kindNull:
		return typeFull, nil
	case kindString:
		switch string(stringValue(data, h.typ)) {
		case typeFull:
			return typeFull, nil
		case typeChunked:
			return typeChunked, nil
		case typeFragment:
			return typeFragment, nil
		}
	}
	return "", change.Poisonf(change.ReasonInvalidEnvelope, nameType, "record type %s is not %q, %q or %q",
		clip(h.typ.raw(data)), typeFull, typeChunked, typeFragment)
}

// build fills ev from the record in data (parsed into h), except Raw and
// Position. For the main record of an oversized change, chunkField names the
// image that comes in fragments and image is that image once reassembled; a
// nil image only validates the envelope (the image and maybe the key are
// checked on completion). It reports whether the op was unknown.
func (d *Decoder) build(data []byte, h *header, chunkField string, image []byte, ev *change.Event) (bool, error) {
	op, unknown, err := d.op(data, h)
	if err != nil {
		return false, err
	}
	switch h.source.kind {
	case kindObject:
	case kindNone, kindNull:
		return false, change.Poisonf(change.ReasonInvalidEnvelope, nameSource, "record has no source object")
	default:
		return false, change.Poisonf(change.ReasonInvalidEnvelope, nameSource, "source must be an object, got %s", clip(h.source.raw(data)))
	}
	table, err := d.name(data, h.table, "source.table")
	if err != nil {
		return false, err
	}
	if table == "" {
		if h.table.kind == kindString {
			return false, change.Poisonf(change.ReasonMissingTable, "source.table", "source.table is empty")
		}
		return false, change.Poisonf(change.ReasonMissingTable, "source.table", "record has no source.table")
	}
	schema, err := d.name(data, h.schema, "source.schema")
	if err != nil {
		return false, err
	}
	commit, ok, err := timestamp(data, h.srcTsNs, "source.ts_ns", 1)
	if err == nil && !ok {
		commit, ok, err = timestamp(data, h.srcTsMs, "source.ts_ms", 1e6)
	}
	if err != nil {
		return false, err
	}
	if !ok {
		return false, change.Poisonf(change.ReasonMissingTime, "source.ts_ns", "record has neither source.ts_ns nor source.ts_ms")
	}
	emitted, hasSeq, err := timestamp(data, h.tsNs, nameTsNs, 1)
	if err == nil && !hasSeq {
		emitted, hasSeq, err = timestamp(data, h.tsMs, nameTsMs, 1e6)
	}
	if err != nil {
		return false, err
	}
	var tx []byte
	switch h.txID.kind {
	case kindNone, kindNull:
	case kindString:
		tx = h.txID.inner(data)
		if h.txID.esc {
			tx = appendUnescaped(d.idBuf[:0], tx)
			d.idBuf = tx
		}
	default:
		return false, change.Poisonf(change.ReasonInvalidValue, "source.txId", "source.txId must be a string, got %s", clip(h.txID.raw(data)))
	}

	before, err := imageOf(data, h.before, nameBefore)
	if err != nil {
		return false, err
	}
	after, err := imageOf(data, h.after, nameAfter)
	if err != nil {
		return false, err
	}
	beforeD, afterD := data, data
	beforeM, afterM := h.beforeM, h.afterM
	pending := ""
	switch {
	case chunkField != "" && image == nil:
		pending = chunkField
	case chunkField != "":
		ms, end, err := scanMembers(image, skipWS(image, 0), 0, d.imgM[:0])
		d.imgM = ms
		if err == nil && skipWS(image, end) < len(image) {
			err = errAt(skipWS(image, end), "data after the image")
		}
		if err != nil {
			if j := skipWS(image, 0); j < len(image) && image[j] != '{' {
				return false, change.Poisonf(change.ReasonInvalidJSON, chunkField, "reassembled %s is not a JSON object", chunkField)
			}
			return false, change.Poisonf(change.ReasonInvalidJSON, chunkField, "reassembled %s is not valid JSON: %v", chunkField, err)
		}
		if chunkField == nameAfter {
			after, afterD, afterM = image, image, ms
		} else {
			before, beforeD, beforeM = image, image, ms
		}
	}

	keyField, keyImg, keyD, keyM := nameAfter, after, afterD, afterM
	if op == change.Delete {
		keyField, keyImg, keyD, keyM = nameBefore, before, beforeD, beforeM
	}
	if keyImg == nil && pending != keyField {
		if op == change.Delete {
			return false, change.Poisonf(change.ReasonMissingImage, nameBefore, "delete has no before image")
		}
		return false, change.Poisonf(change.ReasonMissingImage, nameAfter, "op %q has no after image", string(op))
	}
	cols := d.Keys.For(schema, table)
	key := ""
	if pending != keyField {
		if key, err = d.recordID(keyD, keyM, keyField, cols, op, schema, table); err != nil {
			return false, err
		}
	}

	ev.Schema, ev.Table, ev.Op = schema, table, op
	ev.KeyColumns, ev.Key = cols, key
	ev.Before, ev.After = before, after
	ev.Order = change.Order{CommitNS: commit}
	ev.Order.Seq, ev.TxID = d.seqAndTx(emitted, hasSeq, tx)
	return unknown, nil
}

func (d *Decoder) op(data []byte, h *header) (change.Op, bool, error) {
	switch h.op.kind {
	case kindNone, kindNull:
		return "", false, change.Poisonf(change.ReasonMissingOp, nameOp, "record has no op")
	case kindString:
	default:
		return "", false, change.Poisonf(change.ReasonInvalidOp, nameOp, "op must be a string, got %s", clip(h.op.raw(data)))
	}
	switch string(stringValue(data, h.op)) {
	case "":
		return "", false, change.Poisonf(change.ReasonMissingOp, nameOp, "op is empty")
	case "c":
		return change.Insert, false, nil
	case "u":
		return change.Update, false, nil
	case "d":
		return change.Delete, false, nil
	}
	// DSQL: treat any unrecognised op as an upsert of after.
	return change.Insert, true, nil
}

// name returns a string field (schema or table), interned: a stream names
// few tables, so this saves an allocation per event.
func (d *Decoder) name(data []byte, t tok, field string) (string, error) {
	switch t.kind {
	case kindNone, kindNull:
		return "", nil
	case kindString:
	default:
		return "", change.Poisonf(change.ReasonInvalidValue, field, "%s must be a string, got %s", field, clip(t.raw(data)))
	}
	b := stringValue(data, t)
	if string(b) == d.lastName[0] {
		return d.lastName[0], nil
	}
	if string(b) == d.lastName[1] {
		return d.lastName[1], nil
	}
	if s, ok := d.intern[string(b)]; ok {
		d.lastName[0], d.lastName[1] = s, d.lastName[0]
		return s, nil
	}
	if len(d.intern) >= 4096 {
		clear(d.intern)
	}
	s := string(b)
	d.intern[s] = s
	d.lastName[0], d.lastName[1] = s, d.lastName[0]
	return s, nil
}

// seqAndTx returns Order.Seq and TxID with at most one allocation: both are
// slices of one string unless the transaction id repeats the previous one.
func (d *Decoder) seqAndTx(emitted int64, hasSeq bool, tx []byte) (string, string) {
	buf := d.buf[:0]
	if hasSeq {
		buf = change.AppendSortableUint(buf, uint64(emitted))
	}
	n := len(buf)
	sameTx := string(tx) == d.lastTx
	if !sameTx {
		buf = append(buf, tx...)
	}
	d.buf = buf
	if len(buf) == 0 {
		if sameTx {
			return "", d.lastTx
		}
		return "", ""
	}
	s := string(buf)
	if sameTx {
		return s, d.lastTx
	}
	d.lastTx = s[n:]
	return s[:n], d.lastTx
}

// timestamp parses a non-negative integer field and multiplies it by scale.
// ok is false when the field is absent or null.
func timestamp(data []byte, t tok, field string, scale int64) (int64, bool, error) {
	switch t.kind {
	case kindNone, kindNull:
		return 0, false, nil
	case kindNumber:
	default:
		return 0, false, change.Poisonf(change.ReasonInvalidValue, field, "%s must be a number, got %s", field, clip(t.raw(data)))
	}
	n, err := parseCount(t.raw(data), math.MaxInt64/scale)
	if err != nil {
		return 0, false, change.Poisonf(change.ReasonInvalidValue, field, "%s %s: %v", field, t.raw(data), err)
	}
	return n * scale, true, nil
}

// parseCount parses a JSON number that must be a non-negative integer no
// greater than limit.
func parseCount(b []byte, limit int64) (int64, error) {
	if len(b) > 0 && b[0] == '-' {
		return 0, errors.New("is negative")
	}
	var n uint64
	for _, c := range b {
		if c-'0' > 9 {
			return 0, errors.New("is not an integer")
		}
		n = n*10 + uint64(c-'0') // cannot wrap for up to 19 digits
	}
	if len(b) > 19 || n > uint64(limit) {
		return 0, errors.New("is out of range")
	}
	return int64(n), nil
}

func imageOf(data []byte, t tok, field string) ([]byte, error) {
	switch t.kind {
	case kindNone, kindNull:
		return nil, nil
	case kindObject:
		return t.raw(data), nil
	}
	return nil, change.Poisonf(change.ReasonInvalidValue, field, "%s must be an object or null, got %s", field, clip(t.raw(data)))
}

// recordID builds the key from the image's members.
func (d *Decoder) recordID(data []byte, ms []member, field string, cols []string, op change.Op, schema, table string) (string, error) {
	vals := d.vals[:0]
	for _, c := range cols {
		found := -1
		for i := range ms { // the last duplicate wins, as in encoding/json
			if memberNameIs(data, ms[i], c) {
				found = i
			}
		}
		if found < 0 {
			d.vals = vals
			return "", d.missingKey(data, ms, field, c, cols, op, schema, table)
		}
		vals = append(vals, data[ms[found].vs:ms[found].ve])
	}
	d.vals = vals
	key, err := change.RecordID(cols, vals)
	clear(vals)
	if err != nil {
		var p *change.Poison
		if errors.As(err, &p) && p.Field != "" {
			p.Field = field + "." + p.Field
		}
		return "", err
	}
	return key, nil
}

func (d *Decoder) missingKey(data []byte, ms []member, field, col string, cols []string, op change.Op, schema, table string) error {
	qual := table
	if schema != "" {
		qual = schema + "." + table
	}
	if op != change.Delete {
		return change.Poisonf(change.ReasonMissingKey, field+"."+col,
			"key column %s is missing from %s of %s (key columns %v); if the table's key differs, set tables.%s.key",
			col, field, qual, cols, table)
	}
	have := make([]string, 0, len(ms))
	for _, m := range ms {
		have = append(have, string(appendUnescaped(nil, data[m.ks:m.ke])))
	}
	return change.Poisonf(change.ReasonMissingKey, field+"."+col,
		"key column %s is missing from before of a delete on %s: a delete carries only the primary key columns, here [%s]; set tables.%s.key to [%s]",
		col, qual, strings.Join(have, ", "), table, strings.Join(have, ", "))
}

// chunkID returns the canonical id of a set: a string's content or a
// number's text. The result may alias data or scratch space.
func (d *Decoder) chunkID(data []byte, t tok, field string) ([]byte, error) {
	var id []byte
	switch t.kind {
	case kindString:
		id = t.inner(data)
		if t.esc {
			d.idBuf = appendUnescaped(d.idBuf[:0], id)
			id = d.idBuf
		}
	case kindNumber:
		id = t.raw(data)
	case kindNone, kindNull:
		return nil, change.Poisonf(change.ReasonFragmentInvalid, field, "%s is missing", field)
	default:
		return nil, change.Poisonf(change.ReasonFragmentInvalid, field, "%s must be a string or number, got %s", field, clip(t.raw(data)))
	}
	if len(id) == 0 {
		return nil, change.Poisonf(change.ReasonFragmentInvalid, field, "%s is empty", field)
	}
	if len(id) > maxChunkIDLen {
		return nil, change.Poisonf(change.ReasonFragmentInvalid, field, "%s is longer than %d bytes", field, maxChunkIDLen)
	}
	return id, nil
}

// count parses a small non-negative integer field bounded by limit.
func count(data []byte, t tok, field string, lo, hi int64) (int, error) {
	if t.kind != kindNumber {
		if t.kind == kindNone || t.kind == kindNull {
			return 0, change.Poisonf(change.ReasonFragmentInvalid, field, "%s is missing", field)
		}
		return 0, change.Poisonf(change.ReasonFragmentInvalid, field, "%s must be an integer, got %s", field, clip(t.raw(data)))
	}
	n, err := parseCount(t.raw(data), math.MaxInt64)
	if err != nil {
		return 0, change.Poisonf(change.ReasonFragmentInvalid, field, "%s %s %v", field, t.raw(data), err)
	}
	if n < lo || n > hi {
		return 0, change.Poisonf(change.ReasonFragmentInvalid, field, "%s %d is outside %d..%d", field, n, lo, hi)
	}
	return int(n), nil
}

func (d *Decoder) decodeMain(dst []change.Event, r change.Raw, now time.Time) ([]change.Event, error) {
	data, h := r.Data, &d.h
	if h.chunked.kind != kindObject {
		return dst, change.Poisonf(change.ReasonFragmentInvalid, nameChunked, "chunked record has no %s object", nameChunked)
	}
	id, err := d.chunkID(data, h.chunkID, "chunked.chunk_id")
	if err != nil {
		return dst, err
	}
	n, err := count(data, h.fragments, "chunked.fragments", 1, maxFragments)
	if err != nil {
		return dst, d.failID(id, err)
	}
	var field string
	var inline tok
	switch {
	case h.field.kind == kindString && string(stringValue(data, h.field)) == nameAfter:
		field, inline = nameAfter, h.after
	case h.field.kind == kindString && string(stringValue(data, h.field)) == nameBefore:
		field, inline = nameBefore, h.before
	default:
		return dst, d.failID(id, change.Poisonf(change.ReasonFragmentInvalid, "chunked.field",
			"chunked.field %s is not %q or %q", clip(h.field.raw(data)), nameAfter, nameBefore))
	}
	if inline.present() {
		return dst, d.failID(id, change.Poisonf(change.ReasonFragmentInvalid, field,
			"chunked record carries %s inline although chunked.field says it comes in fragments", field))
	}
	var ev change.Event
	if _, err := d.build(data, h, field, nil, &ev); err != nil {
		return dst, d.failID(id, err)
	}
	s, cur, err := d.Asm.add(pieceIn{id: id, main: true, n: n, field: field}, r, now)
	return d.settle(dst, s, cur, err)
}

func (d *Decoder) decodeFragment(dst []change.Event, r change.Raw, now time.Time) ([]change.Event, error) {
	data, h := r.Data, &d.h
	id, err := d.chunkID(data, h.fChunkID, nameChunkID)
	if err != nil {
		return dst, err
	}
	index, err := count(data, h.fIndex, nameIndex, 0, maxFragments-1)
	if err != nil {
		return dst, err
	}
	if h.fData.kind != kindString {
		return dst, change.Poisonf(change.ReasonFragmentInvalid, nameData, "fragment %s must be a string, got %s", nameData, clip(h.fData.raw(data)))
	}
	p := pieceIn{id: id, index: index, dataS: h.fData.s + 1, dataE: h.fData.e - 1, esc: h.fData.esc}
	s, cur, err := d.Asm.add(p, r, now)
	return d.settle(dst, s, cur, err)
}

// failID dead-letters the held pieces of set id because a record of the
// set is poison, and returns that poison.
func (d *Decoder) failID(id []byte, err error) error {
	var p *change.Poison
	if errors.As(err, &p) {
		d.Asm.failID(id, p.Reason, fmt.Sprintf("chunk_id %s: main record was dead-lettered: %v", id, p))
	}
	return err
}

// settle turns the outcome of Assembler.add into Decode's results: a held
// piece, a duplicate, or a completed set to rebuild into one event.
func (d *Decoder) settle(dst []change.Event, s *set, cur *piece, err error) ([]change.Event, error) {
	if err != nil {
		if err == skipDuplicate {
			d.DuplicatePieces++
		}
		return dst, err
	}
	if s == nil {
		return dst, skipPending
	}
	image := s.image()
	h := &d.h
	if err := h.parse(s.main.raw); err != nil { // validated on arrival; cannot fail
		return dst, d.Asm.failSet(s, cur, jsonPoison(err))
	}
	dst = append(dst, change.Event{})
	ev := &dst[len(dst)-1]
	unknown, err := d.build(s.main.raw, h, s.field, image, ev)
	if err != nil {
		*ev = change.Event{}
		p, ok := err.(*change.Poison)
		if !ok {
			p = &change.Poison{Reason: change.ReasonFragmentInvalid, Detail: err.Error()}
		}
		p.Detail = fmt.Sprintf("chunk_id %s: %s", s.id, p.Detail)
		return dst[:len(dst)-1], d.Asm.failSet(s, cur, p)
	}
	if unknown {
		d.UnknownOps++
	}
	ev.Raw, ev.Position, ev.ChunkID = s.main.raw, cur.pos, s.id
	d.Asm.completed(s)
	return dst, nil
}

// clip returns JSON text for an error message, shortened.
func clip(b []byte) string {
	const max = 64
	if len(b) == 0 {
		return "nothing"
	}
	if len(b) > max {
		return string(b[:max]) + "..."
	}
	return string(b)
}

// stringValue returns a string token's content, unescaped (allocating) only
// when it holds escapes.
func stringValue(data []byte, t tok) []byte {
	if t.esc {
		return appendUnescaped(nil, t.inner(data))
	}
	return t.inner(data)
}
