package proxy

import (
	"bufio"
	"io"
	"net"
	"os"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// memSample is the Go memory warden holds, split where it matters for a
// connection's cost: heap objects and goroutine stacks.
type memSample struct{ heap, stacks uint64 }

func readMem() memSample {
	runtime.GC()
	runtime.GC()
	s := []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/stacks:bytes"},
	}
	metrics.Read(s)
	return memSample{s[0].Value.Uint64(), s[1].Value.Uint64()}
}

// reportPer reports the memory held per connection between two samples.
func reportPer(b *testing.B, before, after memSample, n int, unit string) {
	per := func(a, z uint64) float64 { return (float64(z) - float64(a)) / float64(n) / 1024 }
	b.ReportMetric(per(before.heap, after.heap), "heap-KiB/"+unit)
	b.ReportMetric(per(before.stacks, after.stacks), "stack-KiB/"+unit)
	b.ReportMetric(per(before.heap+before.stacks, after.heap+after.stacks), "KiB/"+unit)
}

// BenchmarkIdleConnectionMemory is the Go memory warden holds per idle
// keep-alive client connection, after one proxied request on each: what a
// load tester's parked connections cost (the kit's idle case measures the
// process's RSS). The client connections are in this process too; each is a
// socket without a goroutine or buffer, a few hundred bytes of the figure.
func BenchmarkIdleConnectionMemory(b *testing.B) {
	const conns = 2000
	c, stop := benchRig(b, 0)
	defer stop()
	req := "GET /v1/models HTTP/1.1\r\nHost: w\r\nAuthorization: " + goodAuth + "\r\n\r\n"
	for b.Loop() {
		before := readMem()
		held := make([]net.Conn, 0, conns)
		for range conns {
			conn, err := net.Dial("tcp", c.Addr)
			if err != nil {
				b.Fatal(err)
			}
			held = append(held, conn)
			if _, err := io.WriteString(conn, req); err != nil {
				b.Fatal(err)
			}
			var resp fasthttp.Response
			if err := resp.Read(bufio.NewReaderSize(conn, 512)); err != nil || resp.StatusCode() != 200 {
				b.Fatalf("status %d, %v", resp.StatusCode(), err)
			}
		}
		after := readMem()
		if g := runtime.NumGoroutine(); g < conns {
			b.Fatalf("%d goroutines: warden does not hold the connections", g)
		}
		reportPer(b, before, after, conns, "conn")
		for _, conn := range held {
			conn.Close()
		}
	}
}

// BenchmarkStreamMemory is the Go memory warden holds per token stream in
// flight, between events: a client connection, an upstream connection and
// the exchange relaying one, as in the kit's fanout case.
func BenchmarkStreamMemory(b *testing.B) {
	const streams = 1000
	// The upstream holds each stream without a goroutine or buffer (one
	// goroutine serves them one after the other), so that the figure is
	// warden's, not an in-process model server's.
	upLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer upLn.Close()
	upConns := make(chan net.Conn, streams)
	go func() {
		buf := make([]byte, 4096)
		for {
			conn, err := upLn.Accept()
			if err != nil {
				return
			}
			// One read holds the whole small request head.
			if _, err := conn.Read(buf); err != nil {
				conn.Close()
				continue
			}
			io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"+
				"f\r\ndata: {\"n\":0}\n\n\r\n")
			upConns <- conn
		}
	}()
	c, stop := benchRigTo(b, upLn.Addr().String(), 0)
	defer stop()
	req := "GET /v1/stream HTTP/1.1\r\nHost: w\r\nAuthorization: " + goodAuth + "\r\n\r\n"
	for b.Loop() {
		before := readMem()
		held := make([]net.Conn, 0, streams)
		for range streams {
			conn, err := net.Dial("tcp", c.Addr)
			if err != nil {
				b.Fatal(err)
			}
			held = append(held, conn)
			if _, err := io.WriteString(conn, req); err != nil {
				b.Fatal(err)
			}
			// Read up to the first event: the stream is then open end to end.
			br := bufio.NewReaderSize(conn, 512)
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					b.Fatal(err)
				}
				if strings.HasPrefix(line, "data:") {
					break
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
		after := readMem()
		if g := runtime.NumGoroutine(); g < streams {
			b.Fatalf("%d goroutines: the streams are not in flight", g)
		}
		reportPer(b, before, after, streams, "stream")
		if f := os.Getenv("HEAPPROF"); f != "" {
			out, _ := os.Create(f)
			pprof.WriteHeapProfile(out)
			out.Close()
		}
		for range streams {
			conn := <-upConns
			io.WriteString(conn, "0\r\n\r\n")
			conn.Close()
		}
		for _, conn := range held {
			conn.Close()
		}
	}
}
