// Command gorelay is the floor for the peers benchmark's token streams and
// idle connections in Go: a TCP relay with a goroutine per direction and
// nothing else (no HTTP, no auth, no pooling). Each client connection gets
// its own upstream connection, and bytes are copied through a 4 KiB buffer
// with a plain read then write, as any Go proxy built on one goroutine per
// connection must do at the least. What it costs per event and per
// connection is what Go's runtime (netpoller, scheduler, stacks) costs, so
// a Go proxy's figures can be read against it. Standard library only.
//
// Usage:
//
//	gorelay -listen 127.0.0.1:18080 -upstream 127.0.0.1:18000
package main

import (
	"flag"
	"log"
	"net"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18080", "address to serve clients on")
	upstream := flag.String("upstream", "127.0.0.1:18000", "upstream host:port")
	flag.Parse()

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("gorelay: %v", err)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Fatalf("gorelay: accept: %v", err)
		}
		go relay(c, *upstream)
	}
}

func relay(client net.Conn, upstream string) {
	up, err := net.Dial("tcp", upstream)
	if err != nil {
		log.Printf("gorelay: %v", err)
		client.Close()
		return
	}
	go pipe(up, client)
	pipe(client, up)
}

// pipe copies src to dst until either fails, then closes both. A plain
// read-then-write loop: io.Copy would splice between TCP sockets, which is
// not what a proxy that looks at the bytes can do.
func pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 4096)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
