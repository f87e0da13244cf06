package throttle

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// t0 is the injected clock's start; no test sleeps.
var t0 = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

// addr returns a distinct IPv4 address for each i.
func addr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
}

// keysInBucket returns n distinct addresses that t puts in bucket bi.
func keysInBucket(t *Table, bi, n int) []netip.Addr {
	var out []netip.Addr
	for i := 0; len(out) < n; i++ {
		a := addr(i)
		k := normalize(a)
		if t.bucket(&k) == &t.buckets[bi] {
			out = append(out, a)
		}
	}
	return out
}

// bucketIndex returns the index of the bucket t puts a in.
func bucketIndex(t *Table, a netip.Addr) int {
	k := normalize(a)
	b := t.bucket(&k)
	for i := range t.buckets {
		if &t.buckets[i] == b {
			return i
		}
	}
	panic("no bucket")
}

// failN records n failures by key at now and returns the last result.
func failN(tb testing.TB, tbl *Table, key netip.Addr, now time.Time, n int) (failures int, started bool) {
	tb.Helper()
	for range n {
		failures, started = tbl.Fail(key, now)
	}
	return failures, started
}

// checkCounters fails unless every counter the table keeps matches a scan of
// its entries.
func checkCounters(tb testing.TB, tbl *Table) {
	tb.Helper()
	var blocked, pending, used int
	for i := range tbl.buckets {
		b := &tbl.buckets[i]
		inBucket := 0
		for _, e := range b.ways {
			if e.count >= tbl.limit {
				inBucket++
			}
			if e.ended != 0 {
				pending++
			}
			if e.count != 0 {
				used++
			}
		}
		if got := int(b.blocked.Load()); got != inBucket {
			tb.Fatalf("bucket %d: blocked counter = %d, but %d ways are blocked", i, got, inBucket)
		}
		blocked += inBucket
	}
	if got := tbl.Blocking(); got != blocked {
		tb.Fatalf("Blocking() = %d, but %d entries are blocked", got, blocked)
	}
	if got := int(tbl.pending.Load()); got != pending {
		tb.Fatalf("pending counter = %d, but %d entries owe a report", got, pending)
	}
	if got := tbl.Len(); got != used {
		tb.Fatalf("Len() = %d, but %d entries are used", got, used)
	}
}

func TestFailStartsABlockExactlyAtTheLimit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		limit int
	}{
		{"a limit of one blocks on the first failure", 1},
		{"a limit of two blocks on the second failure", 2},
		{"the default limit blocks on the twentieth failure", 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tbl := New(Config{Limit: tt.limit, Window: time.Minute})
			key := addr(1)
			for i := 1; i <= tt.limit+2; i++ {
				now := t0.Add(time.Duration(i) * time.Second)
				failures, started := tbl.Fail(key, now)
				if got, want := failures, i; got != want {
					t.Fatalf("failure %d: failures = %d, want %d", i, got, want)
				}
				if got, want := started, i == tt.limit; got != want {
					t.Fatalf("failure %d: started = %t, want %t", i, got, want)
				}
				_, blocked := tbl.Blocked(key, now)
				if got, want := blocked, i >= tt.limit; got != want {
					t.Fatalf("after failure %d: blocked = %t, want %t", i, got, want)
				}
				if got, want := tbl.Blocking(), btoi(i >= tt.limit); got != want {
					t.Fatalf("after failure %d: Blocking() = %d, want %d", i, got, want)
				}
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestBlockedRetryAfterIsTheTimeLeftInTheWindow(t *testing.T) {
	t.Parallel()
	tbl := New(Config{Limit: 3, Window: time.Minute})
	key := addr(1)
	// The window starts at the first failure, not at the one that blocks.
	tbl.Fail(key, t0)
	tbl.Fail(key, t0.Add(5*time.Second))
	tbl.Fail(key, t0.Add(10*time.Second))

	tests := []struct {
		name        string
		at          time.Duration
		wantBlocked bool
		wantRetry   time.Duration
	}{
		{"at the blocking failure", 10 * time.Second, true, 50 * time.Second},
		{"half a minute in", 30*time.Second + 250*time.Millisecond, true, 29*time.Second + 750*time.Millisecond},
		{"a nanosecond before the window passes", time.Minute - 1, true, 1},
		{"when the window passes", time.Minute, false, 0},
		{"long after the window", time.Hour, false, 0},
		{"at a time before the window started", -time.Second, true, time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			retry, blocked := tbl.Blocked(key, t0.Add(tt.at))
			if blocked != tt.wantBlocked || retry != tt.wantRetry {
				t.Fatalf("Blocked = %v, %t; want %v, %t", retry, blocked, tt.wantRetry, tt.wantBlocked)
			}
		})
	}
}

func TestANewWindowStartsFreshAfterTheOldOnePasses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		limit   int
		before  int // failures at t0
		nextAt  time.Duration
		wantN   int
		wantBlk bool
	}{
		{"a blocked client is unblocked and counts from one", 3, 5, time.Minute, 1, false},
		{"a counting client that was not blocked counts from one", 3, 2, time.Minute + time.Second, 1, false},
		{"a failure just inside the window still counts", 3, 2, time.Minute - 1, 3, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tbl := New(Config{Limit: tt.limit, Window: time.Minute})
			key := addr(7)
			failN(t, tbl, key, t0, tt.before)
			now := t0.Add(tt.nextAt)
			failures, _ := tbl.Fail(key, now)
			if got, want := failures, tt.wantN; got != want {
				t.Fatalf("failures = %d, want %d", got, want)
			}
			_, blocked := tbl.Blocked(key, now)
			if got, want := blocked, tt.wantBlk; got != want {
				t.Fatalf("blocked = %t, want %t", got, want)
			}
		})
	}
}

func TestANewWindowNeedsTheFullLimitToBlockAgain(t *testing.T) {
	t.Parallel()
	tbl := New(Config{Limit: 3, Window: time.Minute})
	key := addr(7)
	failN(t, tbl, key, t0, 3)
	now := t0.Add(2 * time.Minute)
	tbl.Sweep(now, nil)
	for i := 1; i <= 3; i++ {
		failures, started := tbl.Fail(key, now)
		if failures != i || started != (i == 3) {
			t.Fatalf("failure %d in the new window = %d, %t; want %d, %t", i, failures, started, i, i == 3)
		}
	}
	if retry, blocked := tbl.Blocked(key, now); !blocked || retry != time.Minute {
		t.Fatalf("Blocked = %v, %t; want %v, true", retry, blocked, time.Minute)
	}
}

func TestZeroLimitDisablesThrottling(t *testing.T) {
	t.Parallel()
	for _, limit := range []int{0, -1} {
		tbl := New(Config{Limit: limit, Window: 0, Size: 8})
		key := addr(1)
		for range 100 {
			if failures, started := tbl.Fail(key, t0); failures != 0 || started {
				t.Fatalf("limit %d: Fail = %d, %t; want 0, false", limit, failures, started)
			}
		}
		if retry, blocked := tbl.Blocked(key, t0); blocked || retry != 0 {
			t.Fatalf("limit %d: Blocked = %v, %t; want 0, false", limit, retry, blocked)
		}
		tbl.Sweep(t0.Add(time.Hour), func(netip.Addr, int) {
			t.Fatalf("limit %d: Sweep reported an end", limit)
		})
		if got := tbl.Len(); got != 0 {
			t.Fatalf("limit %d: Len() = %d, want 0", limit, got)
		}
		if got := tbl.Blocking(); got != 0 {
			t.Fatalf("limit %d: Blocking() = %d, want 0", limit, got)
		}
	}
}

func TestNewPanicsOnANonPositiveWindow(t *testing.T) {
	t.Parallel()
	defer func() {
		if recover() == nil {
			t.Fatal("New with Window 0 did not panic")
		}
	}()
	New(Config{Limit: 1})
}

func TestIPv4MappedAddressesAreTheSameClient(t *testing.T) {
	t.Parallel()
	v4 := netip.MustParseAddr("192.0.2.10")
	mapped := netip.MustParseAddr("::ffff:192.0.2.10")
	tests := []struct {
		name        string
		fail, check netip.Addr
	}{
		{"failures as mapped block the plain address", mapped, v4},
		{"failures as plain block the mapped address", v4, mapped},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tbl := New(Config{Limit: 2, Window: time.Minute})
			tbl.Fail(tt.fail, t0)
			if failures, started := tbl.Fail(tt.check, t0); failures != 2 || !started {
				t.Fatalf("second failure = %d, %t; want 2, true", failures, started)
			}
			if _, blocked := tbl.Blocked(tt.check, t0); !blocked {
				t.Fatalf("Blocked(%v) = false, want true", tt.check)
			}
			if got, want := tbl.Len(), 1; got != want {
				t.Fatalf("Len() = %d, want %d", got, want)
			}
			var reported []netip.Addr
			tbl.Sweep(t0.Add(time.Minute), func(key netip.Addr, _ int) { reported = append(reported, key) })
			if len(reported) != 1 || reported[0] != v4 {
				t.Fatalf("Sweep reported %v, want [%v]", reported, v4)
			}
		})
	}
}

func TestKeysAreIndependent(t *testing.T) {
	t.Parallel()
	tbl := New(Config{Limit: 3, Window: time.Minute})
	a, b := addr(1), netip.MustParseAddr("2001:db8::1")
	failN(t, tbl, a, t0, 3)
	if _, blocked := tbl.Blocked(b, t0); blocked {
		t.Fatalf("Blocked(%v) = true after only %v failed, want false", b, a)
	}
	if failures, _ := tbl.Fail(b, t0); failures != 1 {
		t.Fatalf("first failure of %v = %d, want 1", b, failures)
	}
	if _, blocked := tbl.Blocked(a, t0); !blocked {
		t.Fatalf("Blocked(%v) = false, want true", a)
	}
	if got, want := tbl.Blocking(), 1; got != want {
		t.Fatalf("Blocking() = %d, want %d", got, want)
	}
}

func TestMemoryStaysFixedHoweverManyClientsFail(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		size     int
		capacity int
	}{
		{"a multiple of eight", 64, 64},
		{"rounded up to a multiple of eight", 100, 104},
		{"smaller than one bucket", 3, 8},
		{"the default", 0, 65536},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tbl := New(Config{Limit: 5, Window: time.Minute, Size: tt.size})
			if got := len(tbl.buckets) * ways; got != tt.capacity {
				t.Fatalf("capacity = %d, want %d", got, tt.capacity)
			}
			for i := range 10 * tt.capacity {
				tbl.Fail(addr(i), t0.Add(time.Duration(i)*time.Microsecond))
				if got := tbl.Len(); got > tt.capacity {
					t.Fatalf("after %d clients: Len() = %d, want <= %d", i+1, got, tt.capacity)
				}
			}
			if got := tbl.Len(); got < tt.capacity*3/4 {
				t.Fatalf("Len() = %d after %d clients, want most of %d ways used", got, 10*tt.capacity, tt.capacity)
			}
		})
	}
}

func TestEvictionKeepsBlockedClientsThroughChurn(t *testing.T) {
	t.Parallel()
	tbl := New(Config{Limit: 2, Window: time.Minute, Size: 16})
	keys := keysInBucket(tbl, 0, ways-1+1000)
	blockedKeys, churn := keys[:ways-1], keys[ways-1:]
	for _, k := range blockedKeys {
		failN(t, tbl, k, t0, 2)
	}
	// One free way is left; a thousand fresh clients fight over it.
	for i, k := range churn {
		tbl.Fail(k, t0.Add(time.Duration(i)*time.Millisecond))
	}
	now := t0.Add(time.Second)
	for _, k := range blockedKeys {
		if _, blocked := tbl.Blocked(k, now); !blocked {
			t.Fatalf("Blocked(%v) = false after churn, want true", k)
		}
	}
	if got, want := tbl.Blocking(), len(blockedKeys); got != want {
		t.Fatalf("Blocking() = %d, want %d", got, want)
	}
	checkCounters(t, tbl)
	if failures, _ := tbl.Fail(churn[len(churn)-1], now); failures != 2 {
		t.Fatalf("last churn client's second failure = %d, want 2 (it should hold the free way)", failures)
	}
}

func TestEvictionOrder(t *testing.T) {
	t.Parallel()
	const limit = 3
	// Each case fills one bucket, then a fresh client fails; want is the
	// index of the way that must be evicted.
	type way struct {
		failures int
		at       time.Duration // of the failures
	}
	tests := []struct {
		name  string
		ways  [ways]way
		now   time.Duration
		evict int
	}{
		{
			name: "a passed window goes before older counting entries",
			ways: [ways]way{{1, 10 * time.Second}, {1, 20 * time.Second}, {1, 0}, {2, 30 * time.Second}, {1, 40 * time.Second}, {1, 50 * time.Second}, {1, 60 * time.Second}, {1, 70 * time.Second}},
			now:  time.Minute + 5*time.Second,
			// way 2's window (from 0) has passed; way 0's (from 10s) has not.
			evict: 2,
		},
		{
			name:  "the oldest counting entry goes before any block",
			ways:  [ways]way{{limit, 0}, {limit, time.Second}, {1, 9 * time.Second}, {2, 3 * time.Second}, {limit, 2 * time.Second}, {1, 8 * time.Second}, {limit, 4 * time.Second}, {2, 5 * time.Second}},
			now:   10 * time.Second,
			evict: 3,
		},
		{
			name:  "when every way is blocked the block that ends soonest goes",
			ways:  [ways]way{{limit, 5 * time.Second}, {limit, 3 * time.Second}, {limit, 7 * time.Second}, {limit + 4, 1 * time.Second}, {limit, 2 * time.Second}, {limit, 6 * time.Second}, {limit, 4 * time.Second}, {limit, 8 * time.Second}},
			now:   10 * time.Second,
			evict: 3,
		},
		{
			name:  "a passed window goes before an older passed block that Sweep has yet to report",
			ways:  [ways]way{{limit, 0}, {1, time.Second}, {1, 50 * time.Second}, {1, 51 * time.Second}, {1, 52 * time.Second}, {1, 53 * time.Second}, {1, 54 * time.Second}, {1, 55 * time.Second}},
			now:   time.Minute + 2*time.Second,
			evict: 1,
		},
		{
			name:  "a passed block goes before a live counting entry",
			ways:  [ways]way{{1, 50 * time.Second}, {1, 51 * time.Second}, {limit, 0}, {1, 52 * time.Second}, {1, 53 * time.Second}, {1, 54 * time.Second}, {1, 55 * time.Second}, {1, 56 * time.Second}},
			now:   time.Minute + time.Second,
			evict: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tbl := New(Config{Limit: limit, Window: time.Minute, Size: 8})
			keys := keysInBucket(tbl, 0, ways+1)
			wantBlocking := 0
			for i, w := range tt.ways {
				failN(t, tbl, keys[i], t0.Add(w.at), w.failures)
				if w.failures >= limit {
					wantBlocking++
				}
			}
			if got := tbl.Blocking(); got != wantBlocking {
				t.Fatalf("Blocking() before eviction = %d, want %d", got, wantBlocking)
			}
			now := t0.Add(tt.now)
			tbl.Fail(keys[ways], now)
			if tt.ways[tt.evict].failures >= limit {
				wantBlocking--
			}
			if got := tbl.Blocking(); got != wantBlocking {
				t.Fatalf("Blocking() after eviction = %d, want %d", got, wantBlocking)
			}
			if got, want := tbl.Len(), ways; got != want {
				t.Fatalf("Len() = %d, want %d", got, want)
			}
			checkCounters(t, tbl)
			// The evicted client alone has lost its entry: its next failure
			// counts from one. Probe without adding entries: look the keys up.
			for i := range ways {
				k := normalize(keys[i])
				present := false
				for _, e := range tbl.buckets[0].ways {
					if e.count > 0 && e.key == k {
						present = true
					}
				}
				if got, want := present, i != tt.evict; got != want {
					t.Fatalf("way %d present = %t, want %t", i, got, want)
				}
			}
		})
	}
}

func TestAnEvictedClientIsForgottenWholly(t *testing.T) {
	t.Parallel()
	tbl := New(Config{Limit: 3, Window: time.Minute, Size: 8})
	keys := keysInBucket(tbl, 0, ways+1)
	owes := keys[0]
	failN(t, tbl, owes, t0, 3)
	// Its block passes and a new failure replaces it before any Sweep: the
	// entry now owes Sweep the end of the old block.
	tbl.Fail(owes, t0.Add(time.Minute))
	for i, k := range keys[1:ways] {
		tbl.Fail(k, t0.Add(time.Minute+time.Duration(i+1)*time.Second))
	}
	checkCounters(t, tbl)
	// A fresh client evicts the oldest counting entry, the one that owes.
	tbl.Fail(keys[ways], t0.Add(90*time.Second))
	checkCounters(t, tbl)
	var got []netip.Addr
	tbl.Sweep(t0.Add(91*time.Second), func(k netip.Addr, _ int) { got = append(got, k) })
	if len(got) != 0 {
		t.Fatalf("Sweep reported %v, want nothing: the evicted client's end went with it", got)
	}
	if failures, _ := tbl.Fail(owes, t0.Add(92*time.Second)); failures != 1 {
		t.Fatalf("evicted client's next failure = %d, want 1", failures)
	}
}

func TestBlockedForAGoodClientSkipsTheLockOfABucketWithNoBlock(t *testing.T) {
	t.Parallel()
	tbl := New(Config{Limit: 1, Window: time.Minute, Size: 64})
	bad := addr(1)
	tbl.Fail(bad, t0)
	good := addr(2)
	for i := 3; bucketIndex(tbl, good) == bucketIndex(tbl, bad); i++ {
		good = addr(i)
	}
	b := &tbl.buckets[bucketIndex(tbl, good)]
	b.mu.Lock()
	done := make(chan bool)
	go func() {
		_, blocked := tbl.Blocked(good, t0)
		done <- blocked
	}()
	select {
	case blocked := <-done:
		if blocked {
			t.Errorf("Blocked(%v) = true, want false", good)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("Blocked(%v) waited for the lock of a bucket that holds no block", good)
	}
	b.mu.Unlock()
}

func TestSweepReportsEachEndedBlockOnce(t *testing.T) {
	t.Parallel()
	const n = 50
	tbl := New(Config{Limit: 2, Window: time.Minute, Size: 1024})
	for i := range n {
		// Client i blocks at second i, with i+2 failures.
		failN(t, tbl, addr(i), t0.Add(time.Duration(i)*time.Second), i+2)
	}
	tbl.Fail(addr(n), t0) // counting, never blocked: never reported
	if got, want := tbl.Blocking(), n; got != want {
		t.Fatalf("Blocking() = %d, want %d", got, want)
	}
	reported := map[netip.Addr]int{}
	times := 0
	for s := time.Duration(0); s <= 2*time.Minute; s += time.Second {
		tbl.Sweep(t0.Add(s), func(key netip.Addr, failures int) {
			times++
			if _, dup := reported[key]; dup {
				t.Fatalf("Sweep at +%v reported %v again", s, key)
			}
			reported[key] = failures
		})
		// At +s the blocks that started at or before s-1m have ended.
		wantEnded := min(n, max(0, int((s-time.Minute)/time.Second)+1))
		if got := len(reported); got != wantEnded {
			t.Fatalf("after Sweep at +%v: %d ends reported, want %d", s, got, wantEnded)
		}
		if got, want := tbl.Blocking(), n-wantEnded; got != want {
			t.Fatalf("after Sweep at +%v: Blocking() = %d, want %d", s, got, want)
		}
		checkCounters(t, tbl)
	}
	if times != n {
		t.Fatalf("Sweep called ended %d times, want %d", times, n)
	}
	for i := range n {
		if got, want := reported[addr(i)], i+2; got != want {
			t.Fatalf("reported failures for %v = %d, want %d", addr(i), got, want)
		}
	}
	if got, want := tbl.Len(), 1; got != want {
		t.Fatalf("Len() after all blocks ended = %d, want %d", got, want)
	}
}

func TestBlockEndsAreReportedEvenWhenAFailureComesFirst(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		newFailures  int
		wantStarted  int
		wantBlocking int
		wantReports  []int // failures per Sweep report, in order
	}{
		{"a failure after the window ends the block; Sweep reports its old count", 1, 0, 0, []int{4}},
		{"a new block before Sweep continues the old one; one end is reported", 3, 0, 1, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tbl := New(Config{Limit: 3, Window: time.Minute})
			key := addr(1)
			failN(t, tbl, key, t0, 4)
			now := t0.Add(time.Minute)
			started := 0
			for range tt.newFailures {
				if _, s := tbl.Fail(key, now); s {
					started++
				}
			}
			if started != tt.wantStarted {
				t.Fatalf("new window started %d blocks, want %d", started, tt.wantStarted)
			}
			if got := tbl.Blocking(); got != tt.wantBlocking {
				t.Fatalf("Blocking() = %d, want %d", got, tt.wantBlocking)
			}
			checkCounters(t, tbl)
			var got []int
			tbl.Sweep(now, func(k netip.Addr, failures int) { got = append(got, failures) })
			tbl.Sweep(now.Add(time.Second), func(k netip.Addr, failures int) { got = append(got, failures) })
			if !equal(got, tt.wantReports) {
				t.Fatalf("Sweep reports = %v, want %v", got, tt.wantReports)
			}
			if tt.wantBlocking > 0 {
				got = nil
				tbl.Sweep(now.Add(time.Minute), func(k netip.Addr, failures int) { got = append(got, failures) })
				if want := []int{tt.newFailures}; !equal(got, want) {
					t.Fatalf("Sweep after the new window = %v, want %v", got, want)
				}
			}
			if got := tbl.Blocking(); got != 0 {
				t.Fatalf("Blocking() after the last Sweep = %d, want 0", got)
			}
			checkCounters(t, tbl)
		})
	}
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestConcurrentFailuresAreCountedExactly(t *testing.T) {
	t.Parallel()
	const (
		goroutines = 8
		perG       = 2000
		limit      = 100
	)
	tbl := New(Config{Limit: limit, Window: time.Minute, Size: 64})
	hot := netip.MustParseAddr("203.0.113.9")
	// Other clients share keys across goroutines and churn the small table,
	// but none shares the hot client's bucket: before it is blocked, the
	// hot client may be evicted like any counting entry, and then no count
	// would be exact.
	hk := normalize(hot)
	var others []netip.Addr
	for i := 0; len(others) < 300; i++ {
		k := normalize(addr(i))
		if tbl.bucket(&k) != tbl.bucket(&hk) {
			others = append(others, addr(i))
		}
	}
	var started, blockedSeen atomic.Int64
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range perG {
				now := t0.Add(time.Duration(i) * time.Millisecond)
				if _, s := tbl.Fail(hot, now); s {
					started.Add(1)
				}
				tbl.Fail(others[(g*perG+i)%300], now)
				if _, b := tbl.Blocked(hot, now); b {
					blockedSeen.Add(1)
				}
				tbl.Blocked(others[i%300], now)
				if i%500 == 0 {
					tbl.Sweep(now, nil)
				}
				_ = tbl.Len() + tbl.Blocking()
			}
		})
	}
	wg.Wait()
	// Every failure fell inside the hot client's window.
	failures, _ := tbl.Fail(hot, t0.Add(2*time.Second))
	if got, want := failures, goroutines*perG+1; got != want {
		t.Fatalf("hot client's failures = %d, want %d", got, want)
	}
	if got, want := started.Load(), int64(1); got != want {
		t.Fatalf("blocks started for the hot client = %d, want %d", got, want)
	}
	if blockedSeen.Load() == 0 {
		t.Fatal("no goroutine saw the hot client blocked")
	}
	checkCounters(t, tbl)
}

func TestHotPathsDoNotAllocate(t *testing.T) {
	none := New(Config{Limit: 20, Window: time.Minute, Size: 64})
	some := New(Config{Limit: 2, Window: time.Minute, Size: 64})
	failN(t, some, addr(1), t0, 2)
	var neighbour netip.Addr
	for _, a := range keysInBucket(some, bucketIndex(some, addr(1)), 2) {
		if a != addr(1) {
			neighbour = a
		}
	}
	full := New(Config{Limit: 20, Window: time.Minute, Size: 8})
	i, j, swept := 0, 0, 0
	v6 := netip.MustParseAddr("2001:db8::1%eth0")
	tests := []struct {
		name string
		f    func()
	}{
		{"Blocked when no client is blocked", func() { none.Blocked(addr(2), t0) }},
		{"Blocked for a blocked client", func() { some.Blocked(addr(1), t0) }},
		{"Blocked for a good client while another is blocked", func() { some.Blocked(v6, t0) }},
		{"Blocked for a good client in a blocked client's bucket", func() { some.Blocked(neighbour, t0) }},
		{"Fail for a known client", func() { some.Fail(addr(1), t0) }},
		{"Fail for new clients that evict", func() { i++; full.Fail(addr(i), t0) }},
		{"Sweep ending a block", func() {
			// Each run ends the block made by the run before, then blocks
			// the client again an hour later.
			j++
			now := t0.Add(time.Duration(j) * time.Hour)
			some.Sweep(now, func(netip.Addr, int) { swept++ })
			some.Fail(addr(1), now)
			some.Fail(addr(1), now)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := testing.AllocsPerRun(100, tt.f); got != 0 {
				t.Fatalf("allocations = %v, want 0", got)
			}
		})
	}
	if swept == 0 {
		t.Fatal("the Sweep case ended no block, so it measured nothing")
	}
}

func benchBlocked(b *testing.B, tbl *Table) {
	keys := make([]netip.Addr, 4096)
	for i := range keys {
		keys[i] = addr(i)
	}
	now := t0.Add(time.Second)
	b.Run("sequential", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			tbl.Blocked(keys[i&4095], now)
			i++
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		var seq atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			i := int(seq.Add(1)) * 997
			for pb.Next() {
				tbl.Blocked(keys[i&4095], now)
				i++
			}
		})
	})
}
