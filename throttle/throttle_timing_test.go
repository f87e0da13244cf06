package throttle

import (
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

func BenchmarkBlockedNoneBlocked(b *testing.B) {
	tbl := New(Config{Limit: 20, Window: time.Minute})
	benchBlocked(b, tbl)
}

func BenchmarkBlockedSomeBlocked(b *testing.B) {
	tbl := New(Config{Limit: 20, Window: time.Minute})
	// A thousand blocked clients; the benchmark asks about 4096 clients, a
	// quarter of them blocked.
	for i := 0; i < 4096; i += 4 {
		failN(b, tbl, addr(i), t0, 20)
	}
	benchBlocked(b, tbl)
}

func BenchmarkFail(b *testing.B) {
	// Twice as many clients as entries, so half the failures evict.
	const clients = 2 * defaultSize
	keys := make([]netip.Addr, clients)
	for i := range keys {
		keys[i] = addr(i)
	}
	b.Run("sequential", func(b *testing.B) {
		tbl := New(Config{Limit: 20, Window: time.Minute})
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			tbl.Fail(keys[i&(clients-1)], t0.Add(time.Duration(i)*time.Microsecond))
			i++
		}
	})
	b.Run("parallel", func(b *testing.B) {
		tbl := New(Config{Limit: 20, Window: time.Minute})
		b.ReportAllocs()
		var seq atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			i := int(seq.Add(1)) * 7919
			for pb.Next() {
				tbl.Fail(keys[i&(clients-1)], t0.Add(time.Duration(i)*time.Microsecond))
				i++
			}
		})
	})
}
