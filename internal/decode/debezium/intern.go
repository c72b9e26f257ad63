package debezium

import (
	"hash/maphash"
	"sync/atomic"
)

// A tiny lock-free cache so that the schema and table names of every event
// (and the key columns read from Kafka keys) are not allocated per event.
// Fixed size, so memory stays bounded whatever names a stream carries; a
// collision only costs an allocation.

const (
	internSlots  = 1024
	internMaxLen = 256 // longer names are not cached
)

var internSeed = maphash.MakeSeed()

type internEntry[T any] struct {
	key string
	val T
}

type internTable[T any] struct {
	slots [internSlots]atomic.Pointer[internEntry[T]]
}

func (t *internTable[T]) slot(h uint64) *atomic.Pointer[internEntry[T]] {
	return &t.slots[h%internSlots]
}

// get returns the value cached under b.
func (t *internTable[T]) get(b []byte) (T, bool) {
	if len(b) <= internMaxLen {
		if e := t.slot(maphash.Bytes(internSeed, b)).Load(); e != nil && e.key == string(b) {
			return e.val, true
		}
	}
	var zero T
	return zero, false
}

// put caches v under key.
func (t *internTable[T]) put(key string, v T) {
	if len(key) <= internMaxLen {
		t.slot(maphash.String(internSeed, key)).Store(&internEntry[T]{key: key, val: v})
	}
}

var names internTable[string]

// intern returns string(b), shared with earlier calls for the same bytes.
func intern(b []byte) string {
	if s, ok := names.get(b); ok {
		return s
	}
	s := string(b)
	names.put(s, s)
	return s
}
