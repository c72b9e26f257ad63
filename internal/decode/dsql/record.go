package dsql

// header is what one pass over a record finds: the bounds of every field the
// decoder uses. The whole record is validated in the same pass.
type header struct {
	typ, op, before, after, source, tsNs, tsMs tok

	// Inside source.
	srcTsNs, srcTsMs, schema, table, txID, cluster tok

	// Inside chunked (main record of an oversized change).
	chunked, chunkID, fragments, field tok

	// Top level of a fragment.
	fChunkID, fIndex, fData tok

	beforeM, afterM []member // members of before/after when they are objects
	keyBuf          []byte   // scratch for unescaping member names
}

// name returns a member's name, unescaped into scratch space when needed.
func (h *header) name(d []byte, m member) []byte {
	if !m.esc {
		return d[m.ks:m.ke]
	}
	h.keyBuf = appendUnescaped(h.keyBuf[:0], d[m.ks:m.ke])
	return h.keyBuf
}

func (h *header) reset() {
	bm, am, kb := h.beforeM[:0], h.afterM[:0], h.keyBuf[:0]
	*h = header{beforeM: bm, afterM: am, keyBuf: kb}
}

// parse validates data as one JSON object and records its fields. A syntax
// error is returned as *syntaxError; a valid document that is not an object
// yields errNotObject.
func (h *header) parse(data []byte) error {
	h.reset()
	i := skipWS(data, 0)
	if i < len(data) && data[i] != '{' {
		if _, err := scanValue(data, i, 0); err != nil {
			return err
		}
		return errNotObject
	}
	it := objectIter{d: data, i: i}
	for it.next() {
		name := h.name(data, it.key)
		var err error
		switch string(name) { // converting in the switch does not allocate
		case nameBefore:
			h.before, h.beforeM, err = h.image(&it, h.beforeM[:0])
		case nameAfter:
			h.after, h.afterM, err = h.image(&it, h.afterM[:0])
		case nameSource:
			err = h.parseSource(&it)
		case nameChunked:
			err = h.parseChunked(&it)
		default:
			if !it.skip() {
				return it.err
			}
			switch string(name) {
			case nameType:
				h.typ = it.val
			case nameOp:
				h.op = it.val
			case nameTsNs:
				h.tsNs = it.val
			case nameTsMs:
				h.tsMs = it.val
			case nameChunkID:
				h.fChunkID = it.val
			case nameIndex:
				h.fIndex = it.val
			case nameData:
				h.fData = it.val
			}
		}
		if err != nil {
			return err
		}
	}
	if it.err != nil {
		return it.err
	}
	if j := skipWS(data, it.i); j < len(data) {
		return errAt(j, "data after the top-level value")
	}
	return nil
}

// image records an image member: its members when it is an object.
func (h *header) image(it *objectIter, ms []member) (tok, []member, error) {
	if it.val.kind != kindObject {
		return it.val, ms, nil
	}
	t := it.val
	ms, end, err := scanMembers(it.d, t.s, it.depth+1, ms)
	t.e = end
	it.val.e = end
	return t, ms, err
}

func (h *header) parseSource(it *objectIter) error {
	h.srcTsNs, h.srcTsMs, h.schema, h.table, h.txID, h.cluster = tok{}, tok{}, tok{}, tok{}, tok{}, tok{}
	h.source = it.val
	if it.val.kind != kindObject {
		return nil
	}
	in := objectIter{d: it.d, i: it.val.s, depth: it.depth + 1}
	for in.next() {
		if !in.skip() {
			break
		}
		switch string(h.name(in.d, in.key)) {
		case nameTsNs:
			h.srcTsNs = in.val
		case nameTsMs:
			h.srcTsMs = in.val
		case nameSchema:
			h.schema = in.val
		case nameTable:
			h.table = in.val
		case nameTxID:
			h.txID = in.val
		case nameCluster:
			h.cluster = in.val
		}
	}
	if in.err != nil {
		return in.err
	}
	h.source.e, it.val.e = in.i, in.i
	return nil
}

func (h *header) parseChunked(it *objectIter) error {
	h.chunkID, h.fragments, h.field = tok{}, tok{}, tok{}
	h.chunked = it.val
	if it.val.kind != kindObject {
		return nil
	}
	in := objectIter{d: it.d, i: it.val.s, depth: it.depth + 1}
	for in.next() {
		if !in.skip() {
			break
		}
		switch string(h.name(in.d, in.key)) {
		case nameChunkID:
			h.chunkID = in.val
		case nameFragments:
			h.fragments = in.val
		case nameField:
			h.field = in.val
		}
	}
	if in.err != nil {
		return in.err
	}
	h.chunked.e, it.val.e = in.i, in.i
	return nil
}

// notObjectError reports a valid JSON document that is not an object.
type notObjectError struct{}

func (notObjectError) Error() string { return "record is not a JSON object" }

var errNotObject error = notObjectError{}
