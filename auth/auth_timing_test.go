package auth

import (
	"testing"
)

func BenchmarkCheck(b *testing.B) {
	c := mustNew(b, "paperspace", "a-reasonably-long-random-secret-0123456789")
	for _, bc := range []struct {
		name   string
		header []byte
	}{
		{"ok", basic("paperspace:a-reasonably-long-random-secret-0123456789")},
		{"wrong_password", basic("paperspace:guess")},
		{"missing", nil},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c.Check(bc.header, now)
			}
		})
		b.Run(bc.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					c.Check(bc.header, now)
				}
			})
		})
	}
}
