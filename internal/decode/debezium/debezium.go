package debezium

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"

	"github.com/cdcflow/cdcflow/internal/change"
)

// Reasons this decoder adds to the change.Reason constants.
const (
	// ReasonUnsupportedOp marks a truncate ("t"): it cannot be applied row by
	// row, so it is dead-lettered where people see it instead of skipped.
	ReasonUnsupportedOp = "unsupported_op"
	// SkipMessage counts logical decoding messages (op "m"): not row changes.
	SkipMessage = "message"
)

var (
	skipTombstone = &change.Skip{Reason: change.SkipTombstone}
	skipMessage   = &change.Skip{Reason: SkipMessage}
)

// record is what one scan of a record yields: raw JSON values aliasing the
// input, nil when absent.
type record struct {
	op, before, after, source []byte
	schema, payload           []byte // envelope members (top level only)

	// source members
	table, schemaName, db    []byte
	tsMS, tsUS, tsNS         []byte
	lsn, file, pos, row      []byte
	changeLSN, commitLSN     []byte
	serial, scn, txID, txBID []byte // txBID: transaction.id
}

// Decode appends the event of one Debezium record (a Kafka message value;
// r.Key is the Kafka message key or nil) to dst.
//
// Errors: *change.Poison (the caller dead-letters the record with Format
// decode.FormatDebezium) or *change.Skip (counted, not an error: tombstones use
// change.SkipTombstone, logical decoding messages SkipMessage).
func Decode(dst []change.Event, r change.Raw, keys *change.Keys) ([]change.Event, error) {
	data := trimSpace(r.Data)
	if len(data) == 0 || isNull(data) {
		return dst, skipTombstone
	}
	var top, env record
	if err := scanRecord(data, &top, &env); err != nil {
		return dst, err
	}
	rec, prefix, envelope := &top, "", false
	if top.payload != nil && top.op == nil {
		if isNull(top.payload) {
			return dst, skipTombstone
		}
		if top.payload[0] != '{' {
			return dst, change.Poisonf(change.ReasonInvalidEnvelope, "payload", "payload must be an object, got %s", clip(top.payload))
		}
		rec, prefix, envelope = &env, "payload.", true
	}

	// The operation decides first: what is not a row change is not checked further.
	var op change.Op
	switch {
	case rec.op == nil || isNull(rec.op):
		return dst, change.Poisonf(change.ReasonMissingOp, prefix+"op", "record has no op")
	case string(rec.op) == `"t"`:
		return dst, change.Poisonf(ReasonUnsupportedOp, prefix+"op",
			"truncate of %s cannot be applied row by row; apply it by hand and resume", describeTable(rec))
	case string(rec.op) == `"m"`:
		return dst, skipMessage
	case len(rec.op) == 3 && rec.op[0] == '"' && opOf(rec.op[1]) != "":
		op = opOf(rec.op[1])
	default:
		return dst, change.Poisonf(change.ReasonInvalidOp, prefix+"op", "op must be one of c, u, d, r (or t, m), got %s", clip(rec.op))
	}

	if rec.source == nil || isNull(rec.source) {
		return dst, change.Poisonf(change.ReasonMissingTable, prefix+"source.table", "record has no source block")
	}
	if rec.source[0] != '{' {
		return dst, change.Poisonf(change.ReasonInvalidEnvelope, prefix+"source", "source must be an object, got %s", clip(rec.source))
	}
	table, ok := stringText(rec.table)
	if !ok || len(table) == 0 {
		return dst, change.Poisonf(change.ReasonMissingTable, prefix+"source.table", "source.table is missing or not a non-empty string")
	}
	ev := change.Event{Op: op, Table: intern(table), Position: r.Position, Raw: r.Data}
	switch {
	case rec.schemaName != nil && !isNull(rec.schemaName):
		s, ok := stringText(rec.schemaName)
		if !ok {
			return dst, change.Poisonf(change.ReasonInvalidValue, prefix+"source.schema", "source.schema must be a string, got %s", clip(rec.schemaName))
		}
		ev.Schema = intern(s)
	case rec.db != nil && !isNull(rec.db):
		s, ok := stringText(rec.db)
		if !ok {
			return dst, change.Poisonf(change.ReasonInvalidValue, prefix+"source.db", "source.db must be a string, got %s", clip(rec.db))
		}
		ev.Schema = intern(s)
	}

	var err error
	if ev.Before, err = image(rec.before, prefix+"before"); err != nil {
		return dst, err
	}
	if ev.After, err = image(rec.after, prefix+"after"); err != nil {
		return dst, err
	}
	if op == change.Delete && ev.Before == nil {
		return dst, change.Poisonf(change.ReasonMissingImage, prefix+"before", "a delete needs before (set REPLICA IDENTITY or key-only before images)")
	}
	if op != change.Delete && ev.After == nil {
		return dst, change.Poisonf(change.ReasonMissingImage, prefix+"after", "op %s needs after", op)
	}

	var afterCols []column
	if envelope && top.schema != nil && !isNull(top.schema) {
		var beforeCols []column
		beforeCols, afterCols, err = imageSchemas(top.schema, "schema")
		if err != nil {
			return dst, asPoison(err, "schema")
		}
		if ev.Before, err = convertImage(ev.Before, beforeCols, prefix+"before"); err != nil {
			return dst, asPoison(err, prefix+"before")
		}
		if ev.After, err = convertImage(ev.After, afterCols, prefix+"after"); err != nil {
			return dst, asPoison(err, prefix+"after")
		}
	}

	if ev.Order.CommitNS, err = commitNS(rec, prefix); err != nil {
		return dst, err
	}

	// Seq and TxID share one allocation.
	var buf [192]byte
	b, logFirst, err := appendSeq(buf[:0], rec, prefix)
	if err != nil {
		return dst, err
	}
	nSeq := len(b)
	if b, err = appendTxID(b, rec, prefix); err != nil {
		return dst, err
	}
	if len(b) > 0 {
		s := string(b)
		ev.Order.Seq, ev.TxID = s[:nSeq], s[nSeq:]
	}
	ev.Order.LogFirst = logFirst

	if ev.KeyColumns, ev.Key, err = recordKey(r.Key, &ev, keys, afterCols); err != nil {
		return dst, err
	}
	return append(dst, ev), nil
}

// opOf returns the op named by c, or "" when c names none.
func opOf(c byte) change.Op {
	switch c {
	case 'c':
		return change.Insert
	case 'u':
		return change.Update
	case 'd':
		return change.Delete
	case 'r':
		return change.Read
	}
	return ""
}

func describeTable(rec *record) string {
	t, _ := stringText(rec.table)
	if s, ok := stringText(rec.schemaName); ok {
		return string(s) + "." + string(t)
	}
	if s, ok := stringText(rec.db); ok {
		return string(s) + "." + string(t)
	}
	return string(t)
}

// asPoison turns a scanner error into an invalid_json poison; poisons pass.
func asPoison(err error, field string) error {
	var p *change.Poison
	if errors.As(err, &p) {
		return p
	}
	return &change.Poison{Reason: change.ReasonInvalidJSON, Field: field, Detail: err.Error()}
}

// scanRecord validates the whole record and picks out the members Decode
// needs, walking into payload and source in place (each byte is read once).
func scanRecord(data []byte, top, env *record) error {
	it, ok := enter(data, 0, 0)
	if !ok {
		if valid(data) {
			return change.Poisonf(change.ReasonInvalidEnvelope, "", "record must be a JSON object, got %s", clip(data))
		}
		return &change.Poison{Reason: change.ReasonInvalidJSON, Detail: "record is not a JSON object"}
	}
	if err := scanMembers(&it, top, env); err != nil {
		return asPoison(err, "")
	}
	if skipWS(data, it.i) != len(data) {
		return &change.Poison{Reason: change.ReasonInvalidJSON, Detail: errAt(it.i, "data after the record").Error()}
	}
	return nil
}

// scanMembers reads the members of a payload (or of the top level, which
// may be a payload or a schema envelope when env is not nil).
func scanMembers(it *members, rec, env *record) error {
	for it.next() {
		key := it.key
		if it.escaped {
			key = []byte(it.name())
		}
		switch string(key) {
		case "op":
			rec.op = it.value()
		case "before":
			rec.before = it.value()
		case "after":
			rec.after = it.value()
		case "transaction":
			if sub, ok := enter(it.d, it.i, it.depth); ok {
				for sub.next() {
					if v := sub.value(); sub.keyIs("id") {
						rec.txBID = v
					}
				}
				if sub.err != nil {
					return sub.err
				}
				it.i = sub.i
			} else {
				it.value()
			}
		case "source":
			if sub, ok := enter(it.d, it.i, it.depth); ok {
				start := it.i
				if err := scanSource(&sub, rec); err != nil {
					return err
				}
				it.i = sub.i
				rec.source = it.d[start:it.i]
			} else {
				rec.source = it.value()
			}
		case "payload":
			if env == nil {
				it.value()
				break
			}
			if sub, ok := enter(it.d, it.i, it.depth); ok {
				start := it.i
				if err := scanMembers(&sub, env, nil); err != nil {
					return err
				}
				it.i = sub.i
				rec.payload = it.d[start:it.i]
			} else {
				rec.payload = it.value()
			}
		case "schema":
			if env == nil {
				it.value()
				break
			}
			rec.schema = it.value()
		default:
			it.value()
		}
	}
	return it.err
}

func scanSource(it *members, rec *record) error {
	for it.next() {
		v := it.value()
		key := it.key
		if it.escaped {
			key = []byte(it.name())
		}
		switch string(key) {
		case "table":
			rec.table = v
		case "schema":
			rec.schemaName = v
		case "db":
			rec.db = v
		case "ts_ms":
			rec.tsMS = v
		case "ts_us":
			rec.tsUS = v
		case "ts_ns":
			rec.tsNS = v
		case "lsn":
			rec.lsn = v
		case "file":
			rec.file = v
		case "pos":
			rec.pos = v
		case "row":
			rec.row = v
		case "change_lsn":
			rec.changeLSN = v
		case "commit_lsn":
			rec.commitLSN = v
		case "event_serial_no":
			rec.serial = v
		case "scn":
			rec.scn = v
		case "txId":
			rec.txID = v
		}
	}
	return it.err
}

// image checks one row image: nil when absent or null, else an object.
func image(v []byte, field string) (json.RawMessage, error) {
	if v == nil || isNull(v) {
		return nil, nil
	}
	if v[0] != '{' {
		return nil, change.Poisonf(change.ReasonInvalidValue, field, "row image must be an object, got %s", clip(v))
	}
	return v, nil
}

func present(v []byte) bool { return v != nil && !isNull(v) }

// commitNS is the commit time from source.ts_ns, ts_us or ts_ms. The
// envelope's own ts_ms is when the connector processed the change, not when
// it committed, so it is never used.
func commitNS(rec *record, prefix string) (int64, error) {
	var v []byte
	var mul int64
	var field string
	switch {
	case present(rec.tsNS):
		v, mul, field = rec.tsNS, 1, "source.ts_ns"
	case present(rec.tsUS):
		v, mul, field = rec.tsUS, 1000, "source.ts_us"
	case present(rec.tsMS):
		v, mul, field = rec.tsMS, 1000000, "source.ts_ms"
	default:
		return 0, change.Poisonf(change.ReasonMissingTime, prefix+"source.ts_ms", "source has none of ts_ns, ts_us, ts_ms")
	}
	n, ok := parseInt(v)
	if !ok || n < 0 || n > (1<<63-1)/mul {
		return 0, change.Poisonf(change.ReasonInvalidValue, prefix+field, "commit time must be a non-negative integer in range, got %s", clip(v))
	}
	return n * mul, nil
}

// appendSeq appends the log position of the change, encoded so that byte
// order is log order, and reports whether there is one.
func appendSeq(b []byte, rec *record, prefix string) ([]byte, bool, error) {
	switch {
	case present(rec.lsn): // PostgreSQL
		n, ok := parseUint(rec.lsn)
		if !ok {
			return nil, false, change.Poisonf(change.ReasonInvalidValue, prefix+"source.lsn", "lsn must be a non-negative integer, got %s", clip(rec.lsn))
		}
		return change.AppendSortableUint(b, n), true, nil
	case present(rec.file): // MySQL binlog
		file, ok := stringText(rec.file)
		if !ok || len(file) == 0 || !seqSafe(file) || bytes.IndexByte(file, ':') >= 0 {
			return nil, false, change.Poisonf(change.ReasonInvalidValue, prefix+"source.file", "binlog file must be a non-empty string without spaces or ':', got %s", clip(rec.file))
		}
		pos, ok := parseUint(rec.pos)
		if !ok {
			return nil, false, change.Poisonf(change.ReasonInvalidValue, prefix+"source.pos", "binlog pos must be a non-negative integer, got %s", clip(rec.pos))
		}
		var row uint64
		if present(rec.row) {
			if row, ok = parseUint(rec.row); !ok {
				return nil, false, change.Poisonf(change.ReasonInvalidValue, prefix+"source.row", "binlog row must be a non-negative integer, got %s", clip(rec.row))
			}
		}
		b = append(b, file...)
		b = append(b, ':')
		b = change.AppendSortableUint(b, pos)
		b = append(b, ':')
		return change.AppendSortableUint(b, row), true, nil
	case present(rec.commitLSN) || present(rec.changeLSN): // SQL Server, Db2
		commit, ok := hexLSN(rec.commitLSN)
		if !ok {
			return nil, false, change.Poisonf(change.ReasonInvalidValue, prefix+"source.commit_lsn", "commit_lsn must be a fixed-width hex string like 00000027:00000758:0005, got %s", clip(rec.commitLSN))
		}
		b = appendLower(b, commit)
		if present(rec.changeLSN) {
			chg, ok := hexLSN(rec.changeLSN)
			if !ok {
				return nil, false, change.Poisonf(change.ReasonInvalidValue, prefix+"source.change_lsn", "change_lsn must be a fixed-width hex string like 00000027:00000758:0005, got %s", clip(rec.changeLSN))
			}
			b = append(b, ':')
			b = appendLower(b, chg)
			if present(rec.serial) {
				n, ok := parseUint(rec.serial)
				if !ok {
					return nil, false, change.Poisonf(change.ReasonInvalidValue, prefix+"source.event_serial_no", "event_serial_no must be a non-negative integer, got %s", clip(rec.serial))
				}
				b = append(b, ':')
				b = change.AppendSortableUint(b, n)
			}
		}
		return b, true, nil
	case present(rec.scn): // Oracle
		text := rec.scn
		if s, ok := stringText(rec.scn); ok {
			text = s
		}
		enc, ok := change.SortableDecimal(string(text))
		if !ok || len(text) == 0 {
			return nil, false, change.Poisonf(change.ReasonInvalidValue, prefix+"source.scn", "scn must be a decimal integer, got %s", clip(rec.scn))
		}
		return append(b, enc...), true, nil
	}
	return b, false, nil
}

// hexLSN returns the text of an SQL Server style LSN: hex digits and ':'.
func hexLSN(v []byte) ([]byte, bool) {
	s, ok := stringText(v)
	if !ok || len(s) == 0 {
		return nil, false
	}
	for _, c := range s {
		if c != ':' && !hexDigit(c) {
			return nil, false
		}
	}
	return s, true
}

func appendLower(b, s []byte) []byte {
	for _, c := range s {
		if c >= 'A' && c <= 'F' {
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	return b
}

// seqSafe reports whether s may appear in an Order.Seq.
func seqSafe(s []byte) bool {
	for _, c := range s {
		if c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// appendTxID appends source.txId (number or string), else transaction.id.
func appendTxID(b []byte, rec *record, prefix string) ([]byte, error) {
	v, field := rec.txID, "source.txId"
	if !present(v) {
		v, field = rec.txBID, "transaction.id"
	}
	if !present(v) {
		return b, nil
	}
	if s, ok := stringText(v); ok {
		return append(b, s...), nil
	}
	if v[0] == '-' || v[0] >= '0' && v[0] <= '9' {
		return append(b, v...), nil
	}
	return nil, change.Poisonf(change.ReasonInvalidValue, prefix+field, "transaction id must be a number or a string, got %s", clip(v))
}

// keyCols caches key column lists read from Kafka keys, by their names.
var keyCols internTable[[]string]

// recordKey returns the key columns and record_id of ev. A Kafka key, when
// there is one, is the Debezium key struct and decides; otherwise the
// configured columns are read from the event's image.
func recordKey(kafkaKey []byte, ev *change.Event, keys *change.Keys, afterCols []column) ([]string, string, error) {
	var vals [8]json.RawMessage
	values := vals[:0]
	k := trimSpace(kafkaKey)
	if len(k) > 0 && !isNull(k) {
		return keyFromKafka(k, ev, keys, afterCols, values)
	}
	cols := keys.For(ev.Schema, ev.Table)
	if len(cols) == 0 {
		return nil, "", change.Poisonf(change.ReasonMissingKey, "", "no key columns configured for %s", ev.QualifiedTable())
	}
	img, field := ev.After, "after"
	if ev.Op == change.Delete {
		img, field = ev.Before, "before"
	}
	if len(cols) > cap(values) {
		values = make([]json.RawMessage, len(cols))
	}
	values = values[:len(cols)]
	it, _ := enter(img, 0, 0)
	found := 0
	for found < len(cols) && it.next() {
		v := it.value()
		for i, c := range cols {
			if values[i] == nil && it.keyIs(c) {
				values[i] = v
				found++
				break
			}
		}
	}
	if it.err != nil {
		return nil, "", asPoison(it.err, field)
	}
	id, err := change.RecordID(cols, values)
	if err != nil {
		return nil, "", withField(err, field+".")
	}
	if id == "" {
		return nil, "", emptyKey(field, cols)
	}
	return cols, id, nil
}

// emptyKey rejects a record_id of "" (a single empty string): it cannot be
// told from no key at all.
func emptyKey(field string, cols []string) error {
	return change.Poisonf(change.ReasonMissingKey, field+"."+cols[0], "key column %s is an empty string", cols[0])
}

// withField prefixes the Field of a poison from change.RecordID.
func withField(err error, prefix string) error {
	var p *change.Poison
	if errors.As(err, &p) && p.Field != "" {
		p.Field = prefix + p.Field
	}
	return err
}

// keyFromKafka reads the Debezium key struct, with or without its schema
// envelope. Its fields, in order, are the key columns.
func keyFromKafka(k []byte, ev *change.Event, keys *change.Keys, afterCols []column, values []json.RawMessage) ([]string, string, error) {
	it, ok := enter(k, 0, 0)
	if !ok {
		if !valid(k) {
			return nil, "", &change.Poison{Reason: change.ReasonInvalidJSON, Field: "key", Detail: "message key is not valid JSON"}
		}
		return nil, "", change.Poisonf(change.ReasonInvalidValue, "key", "message key must be a JSON object (the Debezium key struct), got %s", clip(k))
	}
	var schema, payload []byte
	n := 0
	for ; it.next(); n++ {
		v := it.value()
		switch {
		case it.keyIs("schema"):
			schema = v
		case it.keyIs("payload"):
			payload = v
		}
	}
	if it.err != nil {
		return nil, "", asPoison(it.err, "key")
	}
	if skipWS(k, it.i) != len(k) {
		return nil, "", &change.Poison{Reason: change.ReasonInvalidJSON, Field: "key", Detail: errAt(it.i, "data after the key").Error()}
	}
	obj, field := k, "key"
	cols := afterCols
	if n == 2 && schema != nil && payload != nil && (payload[0] == '{' || isNull(payload)) {
		if isNull(payload) {
			return nil, "", change.Poisonf(change.ReasonMissingKey, "key.payload", "message key has a null payload")
		}
		obj, field = payload, "key.payload"
		cols = nil
		if present(schema) {
			var err error
			if cols, err = keySchemaColumns(schema); err != nil {
				return nil, "", asPoison(err, "key.schema")
			}
		}
	}

	// Collect names (as a cache signature) and values in key order.
	var sig [256]byte
	names := sig[:0]
	m, _ := enter(obj, 0, 0)
	for m.next() {
		if len(m.key) == 0 {
			return nil, "", change.Poisonf(change.ReasonInvalidValue, field, "message key has a field with an empty name")
		}
		if m.escaped {
			name := m.name()
			if strings.IndexByte(name, 0) >= 0 {
				return nil, "", change.Poisonf(change.ReasonInvalidValue, field, "key column name %q holds a NUL byte", name)
			}
			names = append(names, name...)
		} else {
			names = append(names, m.key...)
		}
		names = append(names, 0)
		c := findColumn(cols, &m)
		v := m.value()
		if c != nil && !isNull(v) {
			conv, err := convertValue(nil, v, c)
			if err != nil {
				return nil, "", change.Poisonf(change.ReasonInvalidValue, field+"."+m.name(), "%s", err.Error())
			}
			v = conv
		}
		values = append(values, v)
	}
	if len(values) == 0 {
		return nil, "", change.Poisonf(change.ReasonMissingKey, field, "message key has no fields")
	}
	colNames := keyColumnList(names, keys.For(ev.Schema, ev.Table))
	id, err := change.RecordID(colNames, values)
	if err != nil {
		return nil, "", withField(err, field+".")
	}
	if id == "" {
		return nil, "", emptyKey(field, colNames)
	}
	return colNames, id, nil
}

// keySchemaColumns reads the convertible fields of a key schema (a struct).
func keySchemaColumns(schema []byte) ([]column, error) {
	it, ok := enter(schema, 0, 0)
	if !ok {
		return nil, nil
	}
	var fields []byte
	for it.next() {
		if v := it.value(); it.keyIs("fields") {
			fields = v
		}
	}
	if it.err != nil {
		return nil, it.err
	}
	return structColumns(fields, "key.schema")
}

// keyColumnList returns the column list named by sig (NUL-terminated names):
// the configured list when it matches, so the common case shares it, else
// a cached list.
func keyColumnList(sig []byte, configured []string) []string {
	if matchesSig(sig, configured) {
		return configured
	}
	if cols, ok := keyCols.get(sig); ok {
		return cols
	}
	var cols []string
	for rest := sig; len(rest) > 0; {
		i := bytes.IndexByte(rest, 0)
		cols = append(cols, string(rest[:i]))
		rest = rest[i+1:]
	}
	keyCols.put(string(sig), cols)
	return cols
}

func matchesSig(sig []byte, cols []string) bool {
	for _, c := range cols {
		if len(sig) < len(c)+1 || string(sig[:len(c)]) != c || sig[len(c)] != 0 {
			return false
		}
		sig = sig[len(c)+1:]
	}
	return len(sig) == 0
}

// Detect reports cheaply whether data looks like a Debezium change event: a
// Kafka Connect schema envelope ({"schema":..,"payload":..}), or a payload
// with op and a source block naming its connector. Other formats with a
// Debezium-like shape (Aurora DSQL) have no source.connector.
func Detect(data []byte) bool {
	data = trimSpace(data)
	it, ok := enter(data, 0, 0)
	if !ok {
		return false
	}
	hasSchema, hasPayload, hasConnector, nested := false, false, false, false
	for it.next() {
		switch {
		case it.keyIs("schema"):
			hasSchema = true
		case it.keyIs("payload"):
			hasPayload = true
			if sub, ok := enter(it.d, it.i, it.depth); ok {
				if nested = detectPayload(&sub); sub.err == nil {
					it.i = sub.i
					continue
				}
				it.err = sub.err
			}
		case it.keyIs("source"):
			if sub, ok := enter(it.d, it.i, it.depth); ok {
				for sub.next() {
					if sub.value(); sub.keyIs("connector") {
						hasConnector = true
					}
				}
				if sub.err == nil {
					it.i = sub.i
					continue
				}
				it.err = sub.err
			}
		}
		if it.err != nil {
			break
		}
		it.value()
	}
	if it.err != nil {
		// Broken JSON: guess from the names, so that a damaged Debezium
		// record is dead-lettered as invalid JSON by this decoder.
		return bytes.Contains(data, []byte(`"schema"`)) && bytes.Contains(data, []byte(`"payload"`)) ||
			bytes.Contains(data, []byte(`"source"`)) && bytes.Contains(data, []byte(`"connector"`))
	}
	// source.connector is Debezium's own mark; op is not required, so a
	// Debezium record without op is dead-lettered as missing_op, not as an
	// unknown format.
	return hasSchema && hasPayload || hasConnector || nested
}

// detectPayload reports whether the object walked by it has a source naming
// its connector.
func detectPayload(it *members) bool {
	hasConnector := false
	for it.next() {
		switch {
		case it.keyIs("source"):
			if sub, ok := enter(it.d, it.i, it.depth); ok {
				for sub.next() {
					if sub.value(); sub.keyIs("connector") {
						hasConnector = true
					}
				}
				if sub.err != nil {
					it.err = sub.err
					return false
				}
				it.i = sub.i
				continue
			}
		}
		it.value()
	}
	return hasConnector
}
