package proxy

import (
	"net"
	"testing"
	"time"
)

// socketPair returns a connection warden would hold to an upstream, on a
// real loopback socket, and the upstream's end of it.
func socketPair(tb testing.TB) (*conn, net.Conn) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	u := newUpstream(upstreamConfig{
		addr: ln.Addr().String(), maxConns: 1, dialTimeout: time.Second,
		idleTimeout: time.Minute, readBuf: 4096, writeBuf: 4096,
	})
	tb.Cleanup(u.Close)
	c, err := u.dial(time.Now().Add(time.Second))
	if err != nil {
		tb.Fatal(err)
	}
	peer, err := ln.Accept()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close(); peer.Close() })
	return c, peer
}

// An idle connection is alive until the upstream closes or resets it, or
// sends something unasked.
func TestIdleConnectionCheckSeesWhatTheUpstreamDid(t *testing.T) {
	c, _ := socketPair(t)
	if !c.alive() {
		t.Fatal("a fresh idle connection is not alive")
	}
	if testing.AllocsPerRun(100, func() { c.alive() }) != 0 {
		t.Error("the check allocates")
	}

	c, peer := socketPair(t)
	_, _ = peer.Write([]byte("HTTP/1.1 200 OK\r\n\r\n"))
	waitUntil(t, func() bool { return !c.alive() }, "a connection with stray bytes to be seen as dead")

	c, peer = socketPair(t)
	peer.Close()
	waitUntil(t, func() bool { return !c.alive() }, "a connection the upstream closed to be seen as dead")

	c, peer = socketPair(t)
	_ = peer.(*net.TCPConn).SetLinger(0)
	peer.Close()
	waitUntil(t, func() bool { return !c.alive() }, "a connection the upstream reset to be seen as dead")
}

func waitUntil(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
