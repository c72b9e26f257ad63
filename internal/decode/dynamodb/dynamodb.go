package dynamodb

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"

	"github.com/cdcflow/cdcflow/internal/decode/jsonscan"

	"github.com/cdcflow/cdcflow/internal/change"
)

// Detect reports cheaply whether data looks like a DynamoDB stream record in
// either shape: a JSON object with top-level jsonscan.Members eventName, dynamodb (an
// object) and eventSource "aws:dynamodb". Only top-level jsonscan.Members decide: a
// row of another format may hold a stream record in a column. It does not
// validate the record; Decode does.
func Detect(data []byte) bool {
	i := jsonscan.SkipWS(data, 0)
	if i >= len(data) || data[i] != '{' {
		return false
	}
	if !bytes.Contains(data, []byte(`"aws:dynamodb"`)) || !bytes.Contains(data, []byte(`"eventName"`)) {
		return false // the cheap test first: most records of other formats stop here
	}
	var name, ddb, src bool
	for m := jsonscan.NewMembers(data[i:]); m.Next(); {
		switch string(m.Name()) {
		case "eventName":
			name = true
		case "dynamodb":
			ddb = len(m.Val) > 0 && m.Val[0] == '{'
		case "eventSource":
			src = string(m.Val) == `"aws:dynamodb"`
		}
	}
	return name && ddb && src
}

// streamRecord holds the spans of the jsonscan.Members Decode reads, as written.
type streamRecord struct {
	eventName, eventSource, arn, tableName, ddb []byte
	haveName                                    bool

	created, precision, keys, newImage, oldImage, seq, viewType []byte
	haveCreated                                                 bool
}

// Decode appends the event of one DynamoDB stream record to dst: a Lambda
// event record (one element of {"Records":[...]}, already unwrapped) or a
// Kinesis Data Streams for DynamoDB payload.
//
// Typed attribute values become plain JSON; the event's images are new
// buffers, not aliases of r.Data. Every failure is a *change.Poison whose
// Field is the JSON path at fault.
func Decode(dst []change.Event, r change.Raw, keys *change.Keys) ([]change.Event, error) {
	data := r.Data
	if !json.Valid(data) {
		return dst, change.Poisonf(change.ReasonInvalidJSON, "", "record is not valid JSON")
	}
	start := jsonscan.SkipWS(data, 0)
	if data[start] != '{' {
		return dst, change.Poisonf(change.ReasonUnknownFormat, "", "record is %s, not a DynamoDB stream record object", jsonscan.Kind(data[start:]))
	}
	var rec streamRecord
	rec.read(data[start:])

	if !jsonscan.IsNull(rec.eventSource) {
		if src := stringValue(rec.eventSource); src != "aws:dynamodb" {
			return dst, change.Poisonf(change.ReasonUnknownFormat, "eventSource", "eventSource is %s, not \"aws:dynamodb\"", rec.eventSource)
		}
	}
	op, err := rec.op()
	if err != nil {
		return dst, err
	}
	table, err := rec.table()
	if err != nil {
		return dst, err
	}
	if len(rec.ddb) == 0 || rec.ddb[0] != '{' {
		if jsonscan.IsNull(rec.ddb) {
			return dst, change.Poisonf(change.ReasonMissingImage, "dynamodb", "record has no dynamodb object")
		}
		return dst, change.Poisonf(change.ReasonInvalidValue, "dynamodb", "dynamodb must be an object, found %s", jsonscan.Kind(rec.ddb))
	}
	rec.readStream(rec.ddb)

	commitNS, err := rec.commitNS()
	if err != nil {
		return dst, err
	}
	seq, err := rec.sequence()
	if err != nil {
		return dst, err
	}
	if err := rec.checkImages(op); err != nil {
		return dst, err
	}

	// Converted values are never longer than their typed form, so one buffer
	// of this size holds both images and the key values without growing.
	size := len(rec.newImage) + len(rec.oldImage) + len(rec.keys)
	if op == change.Delete && rec.oldImage == nil {
		size += len(rec.keys)
	}
	buf := make([]byte, 0, size)
	ev := change.Event{
		Table:    table,
		Op:       op,
		Order:    change.Order{CommitNS: commitNS, Seq: seq},
		Position: r.Position,
		Raw:      data,
	}
	if rec.newImage != nil && op != change.Delete {
		if buf, ev.After, err = convert(buf, rec.newImage, "dynamodb.NewImage"); err != nil {
			return dst, err
		}
	}
	switch {
	case rec.oldImage != nil:
		buf, ev.Before, err = convert(buf, rec.oldImage, "dynamodb.OldImage")
	case op == change.Delete:
		// A delete always carries its key, even from a KEYS_ONLY or
		// NEW_IMAGE stream that sends no OldImage.
		buf, ev.Before, err = convert(buf, rec.keys, "dynamodb.Keys")
	}
	if err != nil {
		return dst, err
	}
	if ev.KeyColumns, ev.Key, err = recordKey(buf, rec.keys, table, keys); err != nil {
		return dst, err
	}
	return append(dst, ev), nil
}

// read takes the top-level jsonscan.Members of a stream record.
func (rec *streamRecord) read(obj []byte) {
	m := jsonscan.NewMembers(obj)
	for m.Next() {
		switch string(m.Name()) {
		case "eventName":
			rec.eventName, rec.haveName = m.Val, true
		case "eventSource":
			rec.eventSource = m.Val
		case "eventSourceARN":
			rec.arn = m.Val
		case "tableName":
			rec.tableName = m.Val
		case "dynamodb":
			rec.ddb = m.Val
		}
	}
}

// readStream takes the jsonscan.Members of the dynamodb object.
func (rec *streamRecord) readStream(obj []byte) {
	m := jsonscan.NewMembers(obj)
	for m.Next() {
		switch string(m.Name()) {
		case "ApproximateCreationDateTime":
			rec.created, rec.haveCreated = m.Val, true
		case "ApproximateCreationDateTimePrecision":
			rec.precision = m.Val
		case "Keys":
			rec.keys = m.Val
		case "NewImage":
			rec.newImage = m.Val
		case "OldImage":
			rec.oldImage = m.Val
		case "SequenceNumber":
			rec.seq = m.Val
		case "StreamViewType":
			rec.viewType = m.Val
		}
	}
	// A null image is an absent image.
	if jsonscan.IsNull(rec.newImage) {
		rec.newImage = nil
	}
	if jsonscan.IsNull(rec.oldImage) {
		rec.oldImage = nil
	}
	if jsonscan.IsNull(rec.keys) {
		rec.keys = nil
	}
}

func (rec *streamRecord) op() (change.Op, error) {
	if !rec.haveName || jsonscan.IsNull(rec.eventName) {
		return "", change.Poisonf(change.ReasonMissingOp, "eventName", "eventName is missing")
	}
	if rec.eventName[0] != '"' {
		return "", change.Poisonf(change.ReasonInvalidOp, "eventName", "eventName must be a string, found %s", jsonscan.Kind(rec.eventName))
	}
	switch name := jsonscan.StringContent(rec.eventName); string(name) {
	case "INSERT":
		return change.Insert, nil
	case "MODIFY":
		return change.Update, nil
	case "REMOVE":
		return change.Delete, nil
	default:
		return "", change.Poisonf(change.ReasonInvalidOp, "eventName", "unknown eventName %q (want INSERT, MODIFY or REMOVE)", name)
	}
}

// table returns the table name: tableName (Kinesis shape) or the name inside
// eventSourceARN (Lambda shape).
func (rec *streamRecord) table() (string, error) {
	if !jsonscan.IsNull(rec.tableName) {
		if rec.tableName[0] != '"' {
			return "", change.Poisonf(change.ReasonInvalidValue, "tableName", "tableName must be a string, found %s", jsonscan.Kind(rec.tableName))
		}
		if t := string(jsonscan.StringContent(rec.tableName)); t != "" {
			return t, nil
		}
		if jsonscan.IsNull(rec.arn) {
			return "", change.Poisonf(change.ReasonMissingTable, "tableName", "tableName is empty")
		}
	}
	if jsonscan.IsNull(rec.arn) {
		return "", change.Poisonf(change.ReasonMissingTable, "eventSourceARN", "record has neither eventSourceARN nor tableName")
	}
	if rec.arn[0] != '"' {
		return "", change.Poisonf(change.ReasonInvalidValue, "eventSourceARN", "eventSourceARN must be a string, found %s", jsonscan.Kind(rec.arn))
	}
	arn := string(jsonscan.StringContent(rec.arn))
	t, ok := tableFromARN(arn)
	if !ok {
		return "", change.Poisonf(change.ReasonMissingTable, "eventSourceARN", "no table name in eventSourceARN %q (want arn:aws:dynamodb:REGION:ACCOUNT:table/NAME/stream/LABEL)", arn)
	}
	return t, nil
}

// tableFromARN returns NAME from arn:PARTITION:dynamodb:REGION:ACCOUNT:table/NAME/....
func tableFromARN(arn string) (string, bool) {
	rest, ok := strings.CutPrefix(arn, "arn:")
	if !ok {
		return "", false
	}
	_, rest, _ = strings.Cut(rest, ":") // partition
	service, rest, _ := strings.Cut(rest, ":")
	if service != "dynamodb" {
		return "", false
	}
	_, rest, _ = strings.Cut(rest, ":")  // region
	_, rest, ok = strings.Cut(rest, ":") // account
	if !ok {
		return "", false
	}
	rest, ok = strings.CutPrefix(rest, "table/")
	if !ok {
		return "", false
	}
	name, _, _ := strings.Cut(rest, "/")
	return name, name != ""
}

// commitNS reads ApproximateCreationDateTime. Its unit is
// ApproximateCreationDateTimePrecision when present; otherwise seconds for
// the Lambda (DynamoDB Streams) shape and milliseconds for the Kinesis shape,
// which predates the precision field with millisecond values.
func (rec *streamRecord) commitNS() (int64, error) {
	const field = "dynamodb.ApproximateCreationDateTime"
	if !rec.haveCreated || jsonscan.IsNull(rec.created) {
		return 0, change.Poisonf(change.ReasonMissingTime, field, "ApproximateCreationDateTime is missing")
	}
	shift, unit := 9, "seconds" // decimal digits from the unit to nanoseconds
	if jsonscan.IsNull(rec.arn) && !jsonscan.IsNull(rec.tableName) {
		shift, unit = 6, "milliseconds"
	}
	if !jsonscan.IsNull(rec.precision) {
		switch p := stringValue(rec.precision); p {
		case "MILLISECOND":
			shift, unit = 6, "milliseconds"
		case "MICROSECOND":
			shift, unit = 3, "microseconds"
		default:
			return 0, change.Poisonf(change.ReasonInvalidValue, "dynamodb.ApproximateCreationDateTimePrecision",
				"unknown precision %s (want MILLISECOND or MICROSECOND)", rec.precision)
		}
	}
	switch c := rec.created[0]; {
	case c == '-' || isDigit(c):
		ns, err := epochNS(rec.created, shift)
		if err != nil {
			return 0, change.Poisonf(change.ReasonInvalidValue, field, "%s %s: %v", unit, rec.created, err)
		}
		return ns, nil
	case c == '"':
		ns, err := parseTime(jsonscan.StringContent(rec.created))
		if err != nil {
			return 0, change.Poisonf(change.ReasonInvalidValue, field, "%v", err)
		}
		return ns, nil
	}
	return 0, change.Poisonf(change.ReasonInvalidValue, field, "ApproximateCreationDateTime must be a number, found %s", jsonscan.Kind(rec.created))
}

// sequence returns SortableDecimal(SequenceNumber), or "" without one.
func (rec *streamRecord) sequence() (string, error) {
	if jsonscan.IsNull(rec.seq) {
		return "", nil
	}
	digits := rec.seq
	if digits[0] == '"' {
		digits = jsonscan.StringContent(digits)
	}
	if len(digits) > 0 && isDigit(digits[0]) {
		if s, ok := change.SortableDecimal(string(digits)); ok {
			return s, nil
		}
	}
	return "", change.Poisonf(change.ReasonInvalidValue, "dynamodb.SequenceNumber", "SequenceNumber %s is not a decimal sequence number", rec.seq)
}

// checkImages rejects records whose images cannot make an event.
func (rec *streamRecord) checkImages(op change.Op) error {
	for _, img := range []struct {
		v     []byte
		field string
	}{{rec.newImage, "dynamodb.NewImage"}, {rec.oldImage, "dynamodb.OldImage"}, {rec.keys, "dynamodb.Keys"}} {
		if img.v != nil && img.v[0] != '{' {
			return change.Poisonf(change.ReasonInvalidValue, img.field, "must be an object of attributes, found %s", jsonscan.Kind(img.v))
		}
	}
	if rec.keys == nil {
		return change.Poisonf(change.ReasonMissingKey, "dynamodb.Keys", "record has no Keys")
	}
	if op != change.Delete && rec.newImage == nil {
		view := "not given in the record"
		if !jsonscan.IsNull(rec.viewType) {
			view = stringValue(rec.viewType)
		}
		return change.Poisonf(change.ReasonMissingImage, "dynamodb.NewImage",
			"%s record has no NewImage (StreamViewType %s): the stream must send new images; set its StreamViewType to NEW_IMAGE or NEW_AND_OLD_IMAGES",
			stringValue(rec.eventName), view)
	}
	return nil
}

// convert appends the plain JSON of the item obj to buf and returns it with
// the appended image. Errors name the attribute under base.
func convert(buf, obj []byte, base string) ([]byte, []byte, error) {
	start := len(buf)
	buf, err := appendItem(buf, obj, 0)
	if err != nil {
		return buf, nil, within(err, base)
	}
	return buf, buf[start:len(buf):len(buf)], nil
}

// configured reports whether the user named key columns for table. Only
// then do they replace the key attributes the record carries: the default
// key ("id") of change.Keys means nothing for DynamoDB, whose records name
// their own keys.
func configured(keys *change.Keys, table string) bool {
	if keys == nil {
		return false
	}
	cols, ok := keys.Tables[table]
	return ok && len(cols) > 0
}

// recordKey returns the key columns and record_id. Values come from Keys.
// Without configured columns the key columns are Keys' attribute names sorted
// by name: DynamoDB does not keep the order of Keys, so sorting makes the
// record_id of one item the same in every record.
func recordKey(buf, keysObj []byte, table string, keys *change.Keys) ([]string, string, error) {
	var cols []string
	var valBuf [4]json.RawMessage
	vals := valBuf[:0]
	if configured(keys, table) {
		cols = keys.For("", table)
		for _, c := range cols {
			v, ok := jsonscan.Lookup(keysObj, c)
			if !ok {
				return nil, "", change.Poisonf(change.ReasonMissingKey, "dynamodb.Keys."+c, "key attribute %s is not in Keys", c)
			}
			start := len(buf)
			var err error
			if buf, err = appendAttr(buf, v, 0); err != nil {
				return nil, "", within(err, "dynamodb.Keys."+c)
			}
			vals = append(vals, buf[start:len(buf):len(buf)])
		}
	} else {
		m := jsonscan.NewMembers(keysObj)
	next:
		for m.Next() {
			name := string(m.Name())
			start := len(buf)
			var err error
			if buf, err = appendAttr(buf, m.Val, 0); err != nil {
				return nil, "", within(err, "dynamodb.Keys."+name)
			}
			v := json.RawMessage(buf[start:len(buf):len(buf)])
			for i, c := range cols {
				if c == name { // a repeated member: the last one wins
					vals[i] = v
					continue next
				}
			}
			cols = append(cols, name)
			vals = append(vals, v)
		}
		if len(cols) == 0 {
			return nil, "", change.Poisonf(change.ReasonMissingKey, "dynamodb.Keys", "Keys has no attributes")
		}
		// Insertion sort: Keys has one or two attributes.
		for i := 1; i < len(cols); i++ {
			for j := i; j > 0 && cols[j] < cols[j-1]; j-- {
				cols[j], cols[j-1] = cols[j-1], cols[j]
				vals[j], vals[j-1] = vals[j-1], vals[j]
			}
		}
	}
	id, err := change.RecordID(cols, vals)
	if err != nil {
		var p *change.Poison
		if errors.As(err, &p) {
			if p.Field != "" {
				p.Field = "dynamodb.Keys." + p.Field
			} else {
				p.Field = "dynamodb.Keys"
			}
		}
		return nil, "", err
	}
	if id == "" {
		// Only a single empty string gives an empty record_id; sinks could
		// not tell it from no key at all.
		return nil, "", change.Poisonf(change.ReasonMissingKey, "dynamodb.Keys."+cols[0], "key attribute %s is an empty string", cols[0])
	}
	return cols, id, nil
}

// stringValue returns the text of a JSON string value, or the value as
// written when it is not a string (for messages and comparisons).
func stringValue(v []byte) string {
	if len(v) > 0 && v[0] == '"' {
		return string(jsonscan.StringContent(v))
	}
	return string(v)
}
