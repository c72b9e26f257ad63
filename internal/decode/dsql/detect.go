package dsql

// Detect reports whether data looks like a DSQL CDC record: a JSON object
// whose top-level "type" is "full", "chunked" or "fragment", or whose
// "source" object has ts_ns, txId and cluster (Debezium's source has no
// cluster). It reads only as far as it must, and validates what it reads.
func Detect(data []byte) bool {
	it := objectIter{d: data, i: skipWS(data, 0)}
	for it.next() {
		switch {
		case memberNameIs(data, it.key, nameType):
			if !it.skip() {
				return false
			}
			if it.val.kind == kindString {
				switch string(stringValue(data, it.val)) {
				case typeFull, typeChunked, typeFragment:
					return true
				}
			}
		case memberNameIs(data, it.key, nameSource) && it.val.kind == kindObject:
			in := objectIter{d: data, i: it.val.s, depth: 1}
			var ts, tx, cluster bool
			for in.next() {
				if !in.skip() {
					return false
				}
				ts = ts || memberNameIs(data, in.key, nameTsNs)
				tx = tx || memberNameIs(data, in.key, nameTxID)
				cluster = cluster || memberNameIs(data, in.key, nameCluster)
			}
			if ts && tx && cluster {
				return true
			}
			if in.err != nil {
				return false
			}
			it.val.e = in.i
		default:
			if !it.skip() {
				return false
			}
		}
	}
	return false
}
