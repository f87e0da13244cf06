package proxy

import (
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// A connection waiting for the upstream holds no read buffer: fillSocket
// takes one only for the read that finds data, and gives it back when
// nothing had come.
func TestConnectionWaitsWithoutBuffer(t *testing.T) {
	t.Parallel()
	c, peer := socketPair(t)
	fill := func() bool {
		var more bool
		if err := c.raw.Control(func(fd uintptr) { more = c.fillSocket(fd) }); err != nil {
			t.Fatal(err)
		}
		return more
	}
	if fill() || c.br != nil {
		t.Fatalf("nothing sent: fillSocket %v with a buffer %v; want false and none", true, c.br != nil)
	}
	if _, err := peer.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !fill() {
		if time.Now().After(deadline) {
			t.Fatal("the bytes sent never arrived")
		}
		time.Sleep(time.Millisecond)
	}
	if c.fillErr != nil || c.buffered() != 3 {
		t.Fatalf("after a send: error %v, %d bytes buffered; want none and 3", c.fillErr, c.buffered())
	}
	if _, err := c.br.Discard(3); err != nil {
		t.Fatal(err)
	}
	c.dropReader()
	if c.br != nil {
		t.Fatal("an empty buffer was kept")
	}

	// await waits for the next bytes, and returns them buffered.
	go func() {
		time.Sleep(20 * time.Millisecond)
		_, _ = peer.Write([]byte("de"))
	}()
	if err := c.await(); err != nil || c.buffered() != 2 {
		t.Fatalf("await: %v with %d bytes; want 2", err, c.buffered())
	}
	_, _ = c.br.Discard(2)

	// Within a deadline: a timeout that isTimeout recognises, and no buffer.
	_ = c.setReadDeadline(time.Now().Add(20 * time.Millisecond))
	if err := c.await(); !isTimeout(err) {
		t.Fatalf("await past the deadline: %v, want a timeout", err)
	}
	if c.br != nil {
		t.Fatal("a buffer is held after the timeout")
	}
	_ = c.setReadDeadline(time.Time{})

	// A clean close is io.EOF.
	_ = peer.Close()
	if err := c.await(); !errors.Is(err, io.EOF) {
		t.Fatalf("await after a close: %v, want io.EOF", err)
	}
}

// A reset is an error that says so, as a read on the connection would.
func TestConnectionWaitSeesReset(t *testing.T) {
	t.Parallel()
	c, peer := socketPair(t)
	_ = peer.(*net.TCPConn).SetLinger(0)
	_ = peer.Close()
	if err := c.await(); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("await after a reset: %v, want ECONNRESET", err)
	}
}

// A connection goes back to the pool without buffers.
func TestReusedConnectionHoldsNoBuffers(t *testing.T) {
	t.Parallel()
	c, _ := socketPair(t)
	u := &upstream{pools: c.pools, slots: make(chan struct{}, 1), idle: make([]*conn, 0, 1)}
	u.slots <- struct{}{}
	_ = c.writer()
	_ = c.reader()
	u.release(c, true, time.Now())
	if c.br != nil || c.bw != nil {
		t.Fatalf("a pooled connection holds a reader (%v) or a writer (%v)", c.br != nil, c.bw != nil)
	}
}
