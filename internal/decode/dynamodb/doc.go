// Package dynamodb decodes DynamoDB change records in the two shapes AWS
// delivers them: a DynamoDB Streams record as a Lambda event carries it (one
// element of {"Records":[...]}, unwrapped by the caller) and the payload of
// Kinesis Data Streams for DynamoDB.
//
// eventName INSERT, MODIFY and REMOVE become ops c, u and d. Typed attribute
// values ({"N":"42"}, {"M":{...}}, ...) become plain JSON: numbers keep their
// exact digits, binary values stay base64 strings, sets become arrays.
//
// Invariants:
//   - Decode never panics and never returns broken JSON: Before and After are
//     nil or a JSON object, written to a new buffer (they do not alias r.Data).
//   - After is NewImage; an INSERT or MODIFY without one (a KEYS_ONLY or
//     OLD_IMAGE stream) is poison. Before is OldImage, or for a REMOVE without
//     one the Keys, so a delete always carries its key.
//   - The key's values come from Keys. Its columns are the table's configured
//     columns (change.Keys.Tables) or else Keys' attribute names sorted by
//     name, because DynamoDB does not keep the order of Keys.
//   - Order.CommitNS is ApproximateCreationDateTime converted exactly from its
//     decimal digits; Order.Seq is SortableDecimal(SequenceNumber), or "" in
//     the Kinesis shape, which has none (ties then fall back to stream
//     position). Schema and TxID are always "".
//   - Every failure is a *change.Poison whose Field is the JSON path at fault,
//     down to the nested attribute ("dynamodb.NewImage.tags[2].color").
package dynamodb
