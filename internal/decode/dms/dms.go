package dms

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"time"

	"github.com/cdcflow/cdcflow/internal/decode/jsonscan"

	"github.com/cdcflow/cdcflow/internal/change"
)

// Detect reports cheaply whether data looks like an AWS DMS record: a JSON
// object whose top-level "metadata" member is an object that carries a
// "record-type". Only top-level jsonscan.Members decide: a row of another format may
// hold anything in its columns. It does not validate the record; Decode does.
func Detect(data []byte) bool {
	i := jsonscan.SkipWS(data, 0)
	if i >= len(data) || data[i] != '{' {
		return false
	}
	if !bytes.Contains(data, []byte(`"metadata"`)) || !bytes.Contains(data, []byte(`"record-type"`)) {
		return false // the cheap test first: most records of other formats stop here
	}
	meta, ok := jsonscan.Lookup(data[i:], "metadata")
	return ok && len(meta) > 0 && meta[0] == '{' && bytes.Contains(meta, []byte(`"record-type"`))
}

// record holds the spans of one DMS record's jsonscan.Members, as written.
type record struct {
	data, meta, before []byte
	hasBefore          bool
}

// Decode appends the event of one DMS record to dst.
//
// It returns dst unchanged and a *change.Skip for a control record, or a
// *change.Poison naming the field at fault for a record that cannot become an
// event. The event's images alias r.Data.
func Decode(dst []change.Event, r change.Raw, keys *change.Keys) ([]change.Event, error) {
	data := r.Data
	if !json.Valid(data) {
		return dst, change.Poisonf(change.ReasonInvalidJSON, "", "record is not valid JSON")
	}
	start := jsonscan.SkipWS(data, 0)
	if data[start] != '{' {
		return dst, change.Poisonf(change.ReasonUnknownFormat, "", "record is %s, not a DMS JSON object", jsonscan.Kind(data[start:]))
	}
	var rec record
	m := jsonscan.NewMembers(data[start:])
	for m.Next() {
		switch string(m.Name()) {
		case "data":
			rec.data = m.Val
		case "metadata":
			rec.meta = m.Val
		case "before-image":
			rec.before, rec.hasBefore = m.Val, true
		}
	}
	if len(rec.meta) == 0 || rec.meta[0] != '{' {
		return dst, change.Poisonf(change.ReasonUnknownFormat, "metadata", "a DMS record needs a metadata object, found %s", jsonscan.Kind(rec.meta))
	}

	var md metadata
	if err := md.parse(rec.meta); err != nil {
		return dst, err
	}
	if md.control {
		return dst, &change.Skip{Reason: change.SkipControl}
	}

	if jsonscan.IsNull(rec.data) {
		return dst, change.Poisonf(change.ReasonMissingImage, "data", "a DMS %s record needs the row in data", md.operation)
	}
	if rec.data[0] != '{' {
		return dst, change.Poisonf(change.ReasonInvalidValue, "data", "data must be an object, found %s", jsonscan.Kind(rec.data))
	}
	var before []byte
	if rec.hasBefore && !jsonscan.IsNull(rec.before) {
		if rec.before[0] != '{' {
			return dst, change.Poisonf(change.ReasonInvalidValue, "before-image", "before-image must be an object, found %s", jsonscan.Kind(rec.before))
		}
		before = rec.before
	}

	cols := keys.For(md.schema, md.table)
	key, err := recordID(cols, rec.data, md.qualified())
	if err != nil {
		return dst, err
	}

	ev := change.Event{
		Schema:     md.schema,
		Table:      md.table,
		Op:         md.op,
		KeyColumns: cols,
		Key:        key,
		Order:      change.Order{CommitNS: md.commitNS},
		TxID:       md.txID,
		Position:   r.Position,
		Raw:        data,
	}
	if md.op == change.Delete {
		ev.Before = rec.data
		if before != nil {
			ev.Before = before
		}
	} else {
		ev.After = rec.data
		ev.Before = before
	}
	return append(dst, ev), nil
}

// recordID builds the record_id from the key columns of row. The key of a
// delete comes from data too: for DMS deletes data is the deleted row.
func recordID(cols []string, row []byte, table string) (string, error) {
	if len(cols) == 0 {
		return "", change.Poisonf(change.ReasonMissingKey, "", "no key columns configured for table %s", table)
	}
	var buf [4]json.RawMessage
	vals := buf[:0]
	for _, c := range cols {
		v, _ := jsonscan.Lookup(row, c)
		vals = append(vals, v)
	}
	id, err := change.RecordID(cols, vals)
	if err != nil {
		var p *change.Poison
		if errors.As(err, &p) && p.Field != "" {
			p.Field = "data." + p.Field
		}
		return "", err
	}
	if id == "" {
		// Only a single empty string gives an empty record_id; sinks could
		// not tell it from no key at all.
		return "", change.Poisonf(change.ReasonMissingKey, "data."+cols[0], "key column %s is an empty string", cols[0])
	}
	return id, nil
}

// metadata is what Decode takes from a record's metadata object.
type metadata struct {
	control   bool
	operation string // as written, for messages
	op        change.Op
	schema    string
	table     string
	commitNS  int64
	txID      string
}

func (md *metadata) qualified() string {
	if md.schema == "" {
		return md.table
	}
	return md.schema + "." + md.table
}

// parse fills md from the metadata object meta. Control records are
// recognised before anything else is checked, so a control record with an
// odd shape is still skipped rather than dead-lettered.
func (md *metadata) parse(meta []byte) error {
	var recordType, operation, schema, table, ts, txID []byte
	var haveRT, haveOp, haveTS bool
	m := jsonscan.NewMembers(meta)
	for m.Next() {
		switch string(m.Name()) {
		case "record-type":
			recordType, haveRT = m.Val, true
		case "operation":
			operation, haveOp = m.Val, true
		case "schema-name":
			schema = m.Val
		case "table-name":
			table = m.Val
		case "timestamp":
			ts, haveTS = m.Val, true
		case "transaction-id":
			txID = m.Val
		}
	}

	if !haveRT || jsonscan.IsNull(recordType) {
		return change.Poisonf(change.ReasonMissingOp, "metadata.record-type", "metadata.record-type is missing")
	}
	if recordType[0] != '"' {
		return change.Poisonf(change.ReasonInvalidValue, "metadata.record-type", "record-type must be a string, found %s", jsonscan.Kind(recordType))
	}
	switch rt := jsonscan.StringContent(recordType); string(rt) {
	case "control":
		md.control = true
		return nil
	case "data":
	default:
		return change.Poisonf(change.ReasonInvalidOp, "metadata.record-type", "unknown record-type %q (want data or control)", rt)
	}

	if !haveOp || jsonscan.IsNull(operation) {
		return change.Poisonf(change.ReasonMissingOp, "metadata.operation", "metadata.operation is missing")
	}
	if operation[0] != '"' {
		return change.Poisonf(change.ReasonInvalidValue, "metadata.operation", "operation must be a string, found %s", jsonscan.Kind(operation))
	}
	opText := jsonscan.StringContent(operation)
	switch string(opText) {
	case "insert":
		md.op, md.operation = change.Insert, "insert"
	case "update":
		md.op, md.operation = change.Update, "update"
	case "delete":
		md.op, md.operation = change.Delete, "delete"
	case "load":
		md.op, md.operation = change.Read, "load"
	default:
		return change.Poisonf(change.ReasonInvalidOp, "metadata.operation", "unknown operation %q for a data record (want insert, update, delete or load)", opText)
	}

	if jsonscan.IsNull(table) {
		return change.Poisonf(change.ReasonMissingTable, "metadata.table-name", "metadata.table-name is missing")
	}
	if table[0] != '"' {
		return change.Poisonf(change.ReasonInvalidValue, "metadata.table-name", "table-name must be a string, found %s", jsonscan.Kind(table))
	}
	if md.table = string(jsonscan.StringContent(table)); md.table == "" {
		return change.Poisonf(change.ReasonMissingTable, "metadata.table-name", "metadata.table-name is empty")
	}
	if !jsonscan.IsNull(schema) {
		if schema[0] != '"' {
			return change.Poisonf(change.ReasonInvalidValue, "metadata.schema-name", "schema-name must be a string, found %s", jsonscan.Kind(schema))
		}
		md.schema = string(jsonscan.StringContent(schema))
	}

	if !haveTS || jsonscan.IsNull(ts) {
		return change.Poisonf(change.ReasonMissingTime, "metadata.timestamp", "metadata.timestamp is missing")
	}
	if ts[0] != '"' {
		return change.Poisonf(change.ReasonInvalidValue, "metadata.timestamp", "timestamp must be an RFC 3339 string, found %s", jsonscan.Kind(ts))
	}
	ns, err := parseTimestamp(jsonscan.StringContent(ts))
	if err != nil {
		return change.Poisonf(change.ReasonInvalidValue, "metadata.timestamp", "%v", err)
	}
	md.commitNS = ns

	switch {
	case jsonscan.IsNull(txID):
	case txID[0] == '"':
		md.txID = string(jsonscan.StringContent(txID))
	case txID[0] == '-' || (txID[0] >= '0' && txID[0] <= '9'):
		md.txID = string(txID)
	default:
		return change.Poisonf(change.ReasonInvalidValue, "metadata.transaction-id", "transaction-id must be a number or a string, found %s", jsonscan.Kind(txID))
	}
	return nil
}

// The times a CommitNS can hold.
var (
	minTime = time.Unix(0, 0)
	maxTime = time.Unix(0, math.MaxInt64)
)

// parseTimestamp reads an RFC 3339 time with up to nanosecond precision
// ("2019-10-31T22:26:21.957678Z") as nanoseconds since the Unix epoch.
func parseTimestamp(s []byte) (int64, error) {
	t, err := time.Parse(time.RFC3339Nano, string(s))
	if err != nil {
		return 0, errors.New("timestamp " + quote(s) + " is not an RFC 3339 time")
	}
	if t.Before(minTime) || t.After(maxTime) {
		return 0, errors.New("timestamp " + quote(s) + " is outside 1970-01-01..2262-04-11, the range of nanoseconds since the Unix epoch")
	}
	return t.UnixNano(), nil
}

func quote(s []byte) string {
	b, _ := json.Marshal(string(s))
	return string(b)
}
