package dsql

import (
	"bytes"
	"fmt"
	"slices"
	"time"

	"github.com/cdcflow/cdcflow/internal/change"
)

// Assembler holds the pieces of oversized records (a chunked main record and
// its fragments) until their set is complete.
//
// Memory is bounded: the bytes of held pieces never exceed the bound given
// to NewAssembler. To admit a piece, whole sets are evicted oldest first (by
// the arrival of their first piece) and dead-lettered with
// change.ReasonFragmentLimit; a piece larger than the bound is rejected at
// once. Sets incomplete after the timeout are dead-lettered by Expire, and
// Drain dead-letters everything at end of input. Chunk ids of recently
// completed or failed sets are remembered (at most 100,000 ids and 8 MiB), so
// a late duplicate piece is dropped, or dead-lettered with its set's reason,
// instead of being held again.
//
// Every held piece is a copy: callers may reuse their buffers. An Assembler
// is not safe for concurrent use.
type Assembler struct {
	maxBytes int64
	timeout  time.Duration

	sets       map[string]*set
	head, tail *set // arrival order of first pieces, oldest first
	held       int64
	count      int
	lastFirst  time.Time
	recent     recentSet
	dead       []change.DeadLetter
}

// NewAssembler returns an Assembler holding at most maxBytes of pieces (at
// least 1) and expiring sets after timeout.
func NewAssembler(maxBytes int64, timeout time.Duration) *Assembler {
	return &Assembler{maxBytes: max(maxBytes, 1), timeout: timeout, sets: map[string]*set{}}
}

// piece is one held record.
type piece struct {
	raw   []byte // copy of the record
	pos   change.Position
	index int    // fragment index; -1 for the main record
	data  []byte // fragment: the data string's escaped content, aliasing raw
	esc   bool
}

// set is the pieces of one oversized record.
type set struct {
	id         string
	main       *piece
	n          int    // fragments, known once main arrived; 0 before
	field      string // nameAfter or nameBefore, known once main arrived
	frags      map[int]*piece
	first      time.Time
	bytes      int64
	prev, next *set
}

// pieceIn describes a piece being added; its bytes are in the change.Raw.
type pieceIn struct {
	id           []byte
	main         bool
	n            int    // main
	field        string // main
	index        int    // fragment
	dataS, dataE int    // fragment: bounds of data's content in the record
	esc          bool
}

// HeldCount returns the number of held pieces.
func (a *Assembler) HeldCount() int { return a.count }

// HeldBytes returns the bytes of held pieces.
func (a *Assembler) HeldBytes() int64 { return a.held }

// TakeDead returns the dead letters of sets evicted by add and forgets them.
func (a *Assembler) TakeDead() []change.DeadLetter {
	d := a.dead
	a.dead = nil
	return d
}

// OldestHeld returns the lowest position (change.ComparePosition) of a piece
// held in one partition. It walks every held piece: their number is bounded
// by the memory bound and is small in practice.
func (a *Assembler) OldestHeld(source, partition string) (change.Position, bool) {
	var best change.Position
	found := false
	consider := func(p *piece) {
		if p.pos.Source == source && p.pos.Partition == partition &&
			(!found || change.ComparePosition(p.pos, best) < 0) {
			best, found = p.pos, true
		}
	}
	for s := a.head; s != nil; s = s.next {
		if s.main != nil {
			consider(s.main)
		}
		for _, p := range s.frags {
			consider(p)
		}
	}
	return best, found
}

// Expire dead-letters, with change.ReasonFragmentTimeout, the sets whose
// first piece arrived more than the timeout before now. Sets expire in
// arrival order: arrival times are made monotonic when recorded.
func (a *Assembler) Expire(now time.Time) []change.DeadLetter {
	var out []change.DeadLetter
	for a.head != nil && now.Sub(a.head.first) > a.timeout {
		s := a.head
		a.fail(s, nil, change.ReasonFragmentTimeout,
			fmt.Sprintf("chunk_id %s: incomplete after %s (%s)", s.id, a.timeout, s.progress()), &out)
	}
	return out
}

// Drain dead-letters every incomplete set (end of input), with
// change.ReasonFragmentTimeout.
func (a *Assembler) Drain() []change.DeadLetter {
	var out []change.DeadLetter
	for a.head != nil {
		s := a.head
		a.fail(s, nil, change.ReasonFragmentTimeout,
			fmt.Sprintf("chunk_id %s: input ended before the set was complete (%s)", s.id, s.progress()), &out)
	}
	return out
}

// RememberCompleted marks ids as completed sets (see
// Decoder.RememberCompleted). A held set with one of the ids is released
// without a dead letter: it was stored.
func (a *Assembler) RememberCompleted(ids []string) {
	for _, id := range ids {
		if s := a.sets[id]; s != nil {
			a.unlink(s)
		}
		a.recent.add(id, "")
	}
}

// Park removes the sets whose first piece arrived before before and returns
// their pieces, main record first, then fragments by index; nothing is
// dead-lettered and the ids are not remembered (see Decoder.Park).
func (a *Assembler) Park(before time.Time) []change.Piece {
	var out []change.Piece
	for a.head != nil && a.head.first.Before(before) {
		s := a.head
		a.unlink(s)
		if s.main != nil {
			out = append(out, change.Piece{ChunkID: s.id, Index: -1, Fragments: s.n,
				Raw: change.Raw{Data: s.main.raw, Position: s.main.pos}})
		}
		for _, i := range s.indexes() {
			p := s.frags[i]
			out = append(out, change.Piece{ChunkID: s.id, Index: i, Raw: change.Raw{Data: p.raw, Position: p.pos}})
		}
	}
	return out
}

// Reset forgets all held pieces and remembered chunk ids, dead-lettering
// nothing (see Decoder.Reset).
func (a *Assembler) Reset() {
	*a = Assembler{maxBytes: a.maxBytes, timeout: a.timeout, sets: map[string]*set{}}
}

// add holds one piece. It returns the set when the piece completes it (the
// set is then no longer held, and cur is the completing piece), skipPending
// when the piece is held, skipDuplicate for a duplicate, or a *change.Poison
// for this piece.
func (a *Assembler) add(in pieceIn, r change.Raw, now time.Time) (s *set, cur *piece, err error) {
	if reason, ok := a.recent.lookup(in.id); ok {
		if reason == "" {
			return nil, nil, skipDuplicate
		}
		return nil, nil, change.Poisonf(reason, "", "chunk_id %s: the rest of this set was already dead-lettered (%s)", in.id, reason)
	}
	s = a.sets[string(in.id)]
	if s != nil {
		switch {
		case in.main && s.main != nil:
			if s.n == in.n && s.field == in.field {
				return nil, nil, skipDuplicate
			}
			return nil, nil, change.Poisonf(change.ReasonFragmentInvalid, nameChunked,
				"chunk_id %s: main record says %d fragments of %s, an earlier one said %d of %s", in.id, in.n, in.field, s.n, s.field)
		case !in.main:
			if old := s.frags[in.index]; old != nil {
				if bytes.Equal(old.data, r.Data[in.dataS:in.dataE]) {
					return nil, nil, skipDuplicate
				}
				return nil, nil, change.Poisonf(change.ReasonFragmentInvalid, nameData,
					"chunk_id %s: fragment %d already held with different data", in.id, in.index)
			}
			if s.main != nil && in.index >= s.n {
				return nil, nil, change.Poisonf(change.ReasonFragmentInvalid, nameIndex,
					"chunk_id %s: fragment index %d is out of range for %d fragments", in.id, in.index, s.n)
			}
		}
	}

	size := int64(len(r.Data))
	if size > a.maxBytes {
		detail := fmt.Sprintf("chunk_id %s: a piece of %d bytes exceeds the fragment memory bound of %d bytes", in.id, size, a.maxBytes)
		if s != nil {
			a.fail(s, nil, change.ReasonFragmentLimit, detail, &a.dead)
		} else {
			a.recent.add(string(in.id), change.ReasonFragmentLimit)
		}
		return nil, nil, &change.Poison{Reason: change.ReasonFragmentLimit, Detail: detail}
	}
	for a.held+size > a.maxBytes && a.head != nil {
		victim := a.head
		detail := fmt.Sprintf("chunk_id %s: evicted to keep held fragments under %d bytes (%s)", victim.id, a.maxBytes, victim.progress())
		a.fail(victim, nil, change.ReasonFragmentLimit, detail, &a.dead)
		if victim == s {
			return nil, nil, &change.Poison{Reason: change.ReasonFragmentLimit, Detail: detail}
		}
	}

	if s == nil {
		first := now
		if first.Before(a.lastFirst) {
			first = a.lastFirst
		}
		a.lastFirst = first
		s = &set{id: string(in.id), frags: map[int]*piece{}, first: first, prev: a.tail}
		if a.tail != nil {
			a.tail.next = s
		} else {
			a.head = s
		}
		a.tail = s
		a.sets[s.id] = s
	}
	cur = &piece{raw: bytes.Clone(r.Data), pos: r.Position, index: -1}
	a.held += size
	a.count++
	s.bytes += size
	if in.main {
		s.main, s.n, s.field = cur, in.n, in.field
		a.dropOutOfRange(s)
	} else {
		cur.index, cur.esc = in.index, in.esc
		cur.data = cur.raw[in.dataS:in.dataE]
		s.frags[in.index] = cur
	}
	if s.main == nil || len(s.frags) < s.n {
		return nil, nil, skipPending
	}
	a.unlink(s)
	return s, cur, nil
}

// dropOutOfRange dead-letters fragments held before the main record whose
// index is not below its fragment count.
func (a *Assembler) dropOutOfRange(s *set) {
	for _, i := range s.indexes() {
		if i < s.n {
			continue
		}
		p := s.frags[i]
		delete(s.frags, i)
		a.release(s, p)
		a.dead = append(a.dead, deadLetter(p, change.ReasonFragmentInvalid,
			fmt.Sprintf("chunk_id %s: fragment index %d is out of range for %d fragments", s.id, i, s.n)))
	}
}

// completed forgets a set whose event was emitted.
func (a *Assembler) completed(s *set) { a.recent.add(s.id, "") }

// failSet dead-letters the pieces of a set removed from the assembler by add
// because it was complete, except cur, whose poison p is returned.
func (a *Assembler) failSet(s *set, cur *piece, p *change.Poison) error {
	s.each(func(q *piece) {
		if q != cur {
			a.dead = append(a.dead, deadLetter(q, p.Reason, p.Error()))
		}
	})
	a.recent.add(s.id, p.Reason)
	return p
}

// failID handles a poison main record of set id: the set can never
// complete, so its held fragments are dead-lettered and the id remembered as
// failed. Nothing changes when the set already completed or already holds a
// valid main record (the poison one is then a bad duplicate).
func (a *Assembler) failID(id []byte, reason, detail string) {
	if r, ok := a.recent.lookup(id); ok && r == "" {
		return
	}
	if s := a.sets[string(id)]; s != nil {
		if s.main == nil {
			a.fail(s, nil, reason, detail, &a.dead)
		}
		return
	}
	a.recent.add(string(id), reason)
}

// fail removes a held set, appending a dead letter to out for every piece
// but except, and remembers its id as failed.
func (a *Assembler) fail(s *set, except *piece, reason, detail string, out *[]change.DeadLetter) {
	a.unlink(s)
	s.each(func(p *piece) {
		if p != except {
			*out = append(*out, deadLetter(p, reason, detail))
		}
	})
	a.recent.add(s.id, reason)
}

// unlink removes s from the held sets and the byte count.
func (a *Assembler) unlink(s *set) {
	if s.prev != nil {
		s.prev.next = s.next
	} else {
		a.head = s.next
	}
	if s.next != nil {
		s.next.prev = s.prev
	} else {
		a.tail = s.prev
	}
	s.prev, s.next = nil, nil
	delete(a.sets, s.id)
	a.held -= s.bytes
	a.count -= len(s.frags)
	if s.main != nil {
		a.count--
	}
}

func (a *Assembler) release(s *set, p *piece) {
	size := int64(len(p.raw))
	s.bytes -= size
	a.held -= size
	a.count--
}

func deadLetter(p *piece, reason, detail string) change.DeadLetter {
	return change.DeadLetter{Reason: reason, Detail: detail, Format: Format, Position: p.pos, Raw: p.raw}
}

// each calls fn for the main record, then fragments by index.
func (s *set) each(fn func(*piece)) {
	if s.main != nil {
		fn(s.main)
	}
	for _, i := range s.indexes() {
		fn(s.frags[i])
	}
}

func (s *set) indexes() []int {
	idx := make([]int, 0, len(s.frags))
	for i := range s.frags {
		idx = append(idx, i)
	}
	slices.Sort(idx)
	return idx
}

func (s *set) progress() string {
	if s.main == nil {
		return fmt.Sprintf("main record missing, %d fragments held", len(s.frags))
	}
	return fmt.Sprintf("%d of %d fragments held", len(s.frags), s.n)
}

// image returns the reassembled image: the fragments' data strings joined in
// index order, then unescaped once (a surrogate pair may span two pieces).
func (s *set) image() []byte {
	total, esc := 0, false
	for i := 0; i < s.n; i++ {
		total += len(s.frags[i].data)
		esc = esc || s.frags[i].esc
	}
	buf := make([]byte, 0, total)
	for i := 0; i < s.n; i++ {
		buf = append(buf, s.frags[i].data...)
	}
	if !esc {
		return buf
	}
	return appendUnescaped(make([]byte, 0, total), buf)
}

// recentSet remembers chunk ids of finished sets, oldest forgotten first:
// reason "" for completed, else the reason the set was dead-lettered.
type recentSet struct {
	m     map[string]recentEntry
	q     []recentItem
	head  int
	bytes int
	seq   uint64
}

type recentEntry struct {
	seq    uint64
	reason string
}

type recentItem struct {
	id  string
	seq uint64
}

func (r *recentSet) lookup(id []byte) (string, bool) {
	e, ok := r.m[string(id)]
	return e.reason, ok
}

func (r *recentSet) add(id, reason string) {
	if r.m == nil {
		r.m = map[string]recentEntry{}
	}
	r.seq++
	r.m[id] = recentEntry{seq: r.seq, reason: reason}
	r.q = append(r.q, recentItem{id: id, seq: r.seq})
	r.bytes += len(id)
	for len(r.q)-r.head > recentIDs || r.bytes > recentIDsBytes {
		old := r.q[r.head]
		r.q[r.head] = recentItem{}
		r.head++
		r.bytes -= len(old.id)
		if e, ok := r.m[old.id]; ok && e.seq == old.seq {
			delete(r.m, old.id)
		}
	}
	if r.head >= 1024 && r.head*2 >= len(r.q) {
		n := copy(r.q, r.q[r.head:])
		clear(r.q[n:])
		r.q = r.q[:n]
		r.head = 0
	}
}
