// Package change is cdcflow's normalized change model: every decoder produces
// Events, every sink consumes them.
//
// Invariants:
//   - An Event's order is total and comparable with Compare: first the commit
//     order key (Order.Key), then the stream position. Go code and SQL sorts
//     agree because the SQL side sorts on the same Order.Key string.
//   - Before and After are nil or one valid JSON object each; they may alias
//     the bytes a transport delivered, so an Event must not outlive its Raw
//     unless the caller copies it (Event.Clone).
//   - Key is the record_id: a single-column key's value as text (strings
//     unquoted, numbers as written), a composite key as the compact JSON
//     array of the values in key-column order.
package change
