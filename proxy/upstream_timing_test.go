package proxy

import (
	"testing"
)

// BenchmarkIdleConnectionCheck is what checking a pooled connection before
// reuse costs each proxied request: one non-blocking recvfrom.
func BenchmarkIdleConnectionCheck(b *testing.B) {
	c, _ := socketPair(b)
	b.ReportAllocs()
	for b.Loop() {
		if !c.alive() {
			b.Fatal("dead")
		}
	}
}
