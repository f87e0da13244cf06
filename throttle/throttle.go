// Package throttle counts failed logins per client so that a caller can stop
// HTTP Basic password guessing: after Limit failures from one client within
// Window, further requests from it are refused (429 with Retry-After) without
// checking credentials until the window passes.
//
// The counts live in a fixed-size, set-associative table: the memory is
// allocated once by New and nothing on any path allocates afterwards, however
// many clients try. When no client is blocked, Blocked costs one atomic load,
// so good requests pay next to nothing.
//
// Each key has a fixed window that starts at its first failure (or its first
// failure after the previous window passed). Failures inside
// [start, start+Window) count, including those made while blocked; the failure
// that brings the count to Limit starts a block that lasts until start+Window.
// After that a failure starts a new window with a count of 1.
//
// The table reports both transitions so that the caller can log them: Fail
// says which failure started a block, and Sweep, run about once a second,
// reports each block that ended. Every start is matched by exactly one end,
// with two exceptions: a block the table had to evict (see Table) ends without
// a report, and when a key starts a new block before Sweep has reported the
// end of its previous one, the two are reported as one continuous block (Fail
// returns started=false and Sweep reports a single end).
//
// A Table is safe for concurrent use.
package throttle

import (
	"hash/maphash"
	"math"
	"math/bits"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// ways is the number of entries in a bucket: a key can live in any way of the
// one bucket its hash picks. Eight 32-byte entries keep a bucket to a few cache
// lines and make it unlikely that a burst of addresses fills one bucket.
const ways = 8

// defaultSize is the number of entries kept when Config.Size is not positive.
const defaultSize = 65536

// Config configures a Table.
type Config struct {
	// Limit is the number of failures allowed per window. 0 (or less)
	// disables throttling: New returns a Table whose methods are cheap
	// no-ops.
	Limit int
	// Window is how long failures are counted, and so the longest a block
	// lasts. It must be > 0 when Limit is.
	Window time.Duration
	// Size is the number of client entries kept, rounded up to a multiple of
	// 8; <= 0 means 65536. The memory, 34 bytes an entry (2.2 MB for the
	// default), is allocated by New and never grows.
	Size int
}

// entry is one client's window. It holds no pointers, so the garbage
// collector never scans the table.
type entry struct {
	// key is the client address as As16 of its Unmap form, zone dropped.
	key [16]byte
	// start is when the window began, in nanoseconds since Table.epoch.
	start int64
	// count is the failures in the window: 0 marks a free way, Limit or more
	// a block that Sweep has not ended yet (counted in Table.blocked).
	count int32
	// ended, if not 0, is the failure count of a block that passed and was
	// replaced by a new window in Fail before Sweep could report its end
	// (counted in Table.pending).
	ended int32
}

// bucket is a set of ways under one lock, so that requests from different
// clients rarely contend.
type bucket struct {
	mu sync.Mutex
	// blocked counts the ways with count >= limit. It changes only under mu
	// but is read without it, so that Blocked for a good client whose bucket
	// holds no block takes no lock and writes no shared memory.
	blocked atomic.Int32
	ways    [ways]entry
}

// Table holds the failure counts. Make one with New.
//
// When a client fails and its bucket is full, Fail evicts, in this order: a
// way whose window has passed (preferring one that owes Sweep no report);
// else the non-blocked entry with the oldest window start; and only when
// every way is blocked, the block that ends soonest. Blocked clients are thus
// the last to go: a flood of fresh addresses can push out other clients'
// partial counts, but it cannot cheaply free an attacker who is already
// blocked. To evict a block, an attacker must first get every way of its
// bucket blocked; the hash seed is random per Table, so in practice that
// means filling most of the table with blocks, Limit failures from each of
// tens of thousands of addresses within one Window.
type Table struct {
	limit  int32
	window int64 // nanoseconds
	epoch  time.Time
	seed   maphash.Seed

	// blocked counts entries with count >= limit (the sum of the buckets'
	// counters). While it is 0, Blocked returns at once without hashing.
	blocked atomic.Int64
	// pending counts entries with ended != 0.
	pending atomic.Int64
	// used counts entries with count != 0.
	used atomic.Int64

	buckets []bucket
}

// New returns a Table for cfg. It panics if throttling is enabled and
// cfg.Window is not positive, which is a programming error: the caller
// validates its configuration first.
func New(cfg Config) *Table {
	if cfg.Limit <= 0 {
		return &Table{}
	}
	if cfg.Window <= 0 {
		panic("throttle: Config.Window must be > 0")
	}
	size := cfg.Size
	if size <= 0 {
		size = defaultSize
	}
	return &Table{
		limit:   int32(min(cfg.Limit, math.MaxInt32)),
		window:  int64(cfg.Window),
		epoch:   time.Now(),
		seed:    maphash.MakeSeed(),
		buckets: make([]bucket, (size+ways-1)/ways),
	}
}

// Blocked reports whether key is blocked at now and, if so, how long until
// its window passes; the caller rounds that up to whole seconds for
// Retry-After. It is meant for every request, before credentials are
// checked: it never allocates; while no client is blocked it costs one
// atomic load; otherwise it hashes key and takes a bucket lock only if key's
// bucket holds a block.
//
// A block whose window has passed no longer blocks, even before Sweep has
// ended it.
func (t *Table) Blocked(key netip.Addr, now time.Time) (retryAfter time.Duration, blocked bool) {
	if t.blocked.Load() == 0 {
		return 0, false
	}
	k := normalize(key)
	b := t.bucket(&k)
	if b.blocked.Load() == 0 {
		return 0, false
	}
	at := t.nanos(now)
	b.mu.Lock()
	for i := range b.ways {
		e := &b.ways[i]
		if e.count >= t.limit && e.key == k {
			left := e.start + t.window - at
			b.mu.Unlock()
			if left <= 0 {
				return 0, false
			}
			// A now from before the window started (goroutines race between
			// reading the clock and calling in) must not stretch the wait.
			return time.Duration(min(left, t.window)), true
		}
	}
	b.mu.Unlock()
	return 0, false
}

// Fail records one failed attempt by key at now. It returns the failures
// counted in key's current window, and whether this failure started a block
// (the count reached Limit), which the caller logs. Failures while blocked
// still count and return started=false. Fail never allocates. On a disabled
// Table it returns 0, false.
func (t *Table) Fail(key netip.Addr, now time.Time) (failures int, started bool) {
	if t.limit == 0 {
		return 0, false
	}
	k := normalize(key)
	at := t.nanos(now)
	b := t.bucket(&k)
	b.mu.Lock()
	defer b.mu.Unlock()

	e := t.find(b, &k, at)
	if e.count > 0 && at-e.start >= t.window {
		// The window has passed: start a new one. A block still in it has
		// ended; Sweep reports that later, unless a new block takes its
		// place first.
		if e.count >= t.limit {
			t.block(b, -1)
			e.ended = e.count
			t.pending.Add(1)
		}
		e.count = 0
	}
	if e.count == 0 {
		e.start = at
	}
	if e.count < math.MaxInt32 {
		e.count++
	}
	if e.count == t.limit {
		t.block(b, 1)
		started = true
		if e.ended != 0 {
			// The previous block ended moments ago and Sweep has not said
			// so yet: report the two as one block.
			e.ended = 0
			t.pending.Add(-1)
			started = false
		}
	}
	return int(e.count), started
}

// find returns the way that holds k in b, or else a way made ready for k by
// evicting the entry Table's doc says goes first. The caller holds b.mu.
func (t *Table) find(b *bucket, k *[16]byte, at int64) *entry {
	victim := -1
	var victimRank int
	var victimStart int64
	for i := range b.ways {
		e := &b.ways[i]
		if e.count == 0 {
			if victim < 0 || victimRank > 0 {
				victim, victimRank = i, 0
			}
			continue
		}
		if e.key == *k {
			return e
		}
		r := t.rank(e, at)
		if victim < 0 || r < victimRank || (r == victimRank && e.start < victimStart) {
			victim, victimRank, victimStart = i, r, e.start
		}
	}
	e := &b.ways[victim]
	if e.count == 0 {
		t.used.Add(1)
	} else {
		if e.count >= t.limit {
			t.block(b, -1)
		}
		if e.ended != 0 {
			t.pending.Add(-1)
		}
	}
	*e = entry{key: *k}
	return e
}

// rank orders a used entry for eviction, lowest first: a passed window that
// owes Sweep nothing, a passed window that owes Sweep a report, a counting
// entry, a block. Ties go to the oldest start, which for blocks is also the
// soonest end.
func (t *Table) rank(e *entry, at int64) int {
	switch {
	case at-e.start >= t.window && e.count < t.limit && e.ended == 0:
		return 1
	case at-e.start >= t.window:
		return 2
	case e.count < t.limit:
		return 3
	default:
		return 4
	}
}

// Sweep ends the blocks whose window has passed at now and calls
// ended(key, failures) once for each, outside the table's locks, with the
// failures counted in the block's window. The caller runs it about once a
// second and logs each end; ended may be nil. While nothing is blocked or
// owed it costs two atomic loads; otherwise it locks each bucket in turn. It
// never allocates.
func (t *Table) Sweep(now time.Time, ended func(key netip.Addr, failures int)) {
	if t.blocked.Load() == 0 && t.pending.Load() == 0 {
		return
	}
	at := t.nanos(now)
	type report struct {
		key      [16]byte
		failures int32
	}
	var reports [ways]report
	for bi := range t.buckets {
		b := &t.buckets[bi]
		n := 0
		b.mu.Lock()
		for i := range b.ways {
			e := &b.ways[i]
			switch {
			case e.count >= t.limit && at-e.start >= t.window:
				reports[n] = report{e.key, e.count}
				n++
				*e = entry{}
				t.block(b, -1)
				t.used.Add(-1)
			case e.ended != 0:
				reports[n] = report{e.key, e.ended}
				n++
				e.ended = 0
				t.pending.Add(-1)
			}
		}
		b.mu.Unlock()
		if ended == nil {
			continue
		}
		for _, r := range reports[:n] {
			ended(netip.AddrFrom16(r.key).Unmap(), int(r.failures))
		}
	}
}

// Len returns the number of entries in use, at most Size rounded up to a
// multiple of 8. An entry stays in use after its window passes until Sweep
// ends its block or a new client takes its way.
func (t *Table) Len() int {
	return int(t.used.Load())
}

// Blocking returns the number of clients blocked right now: blocks that have
// started and that neither Sweep nor eviction has ended. A block whose window
// passed less than a sweep ago still counts.
func (t *Table) Blocking() int {
	return int(t.blocked.Load())
}

// block adds d to the count of blocked entries, in b and in all. The caller
// holds b.mu.
func (t *Table) block(b *bucket, d int32) {
	b.blocked.Add(d)
	t.blocked.Add(int64(d))
}

// normalize turns an address into a table key, so that ::ffff:1.2.3.4 and
// 1.2.3.4 are the same client: As16 writes both as ::ffff:1.2.3.4, and Sweep
// hands keys back in their Unmap form, 1.2.3.4. The zone is dropped: a
// link-local client is one client whichever interface it came in on. The
// invalid zero Addr maps to the same key as ::, which is no real peer either.
func normalize(a netip.Addr) [16]byte {
	return a.Unmap().As16() // Unmap is implied by As16; kept to say what is meant
}

// bucket picks the bucket for k. Multiplying the hash by the bucket count and
// keeping the high word maps it evenly onto any count, power of two or not.
func (t *Table) bucket(k *[16]byte) *bucket {
	h := maphash.Bytes(t.seed, k[:])
	i, _ := bits.Mul64(h, uint64(len(t.buckets)))
	return &t.buckets[i]
}

// nanos returns now as nanoseconds since the Table was made. Given times from
// time.Now, this uses the monotonic clock, so a step of the wall clock
// neither lengthens nor cuts short a window.
func (t *Table) nanos(now time.Time) int64 {
	return int64(now.Sub(t.epoch))
}
