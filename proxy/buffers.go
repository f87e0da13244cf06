package proxy

import (
	"bufio"
	"errors"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// An upstream connection holds a read buffer only while it has something to
// read, and a write buffer only while a request is being sent: both come
// from the upstream's pools. A token stream spends nearly all its life
// waiting for the model's next event, and a pooled connection all of it
// waiting for a request, so without this every stream and every idle
// connection would keep a read buffer of MaxHeaderBytes (32 KiB by default)
// and a write buffer (README, Performance: memory sizing).
//
// The wait itself holds no buffer: await asks the runtime's poller to call
// fillSocket each time the socket may be readable, and fillSocket takes a
// buffer, reads with the one system call that a plain read would make, and
// gives the buffer back if nothing came.

// errWouldBlock is a read on the socket, in fillSocket, that found nothing.
var errWouldBlock = errors.New("would block")

// bufferPools are the upstream's buffers.
type bufferPools struct {
	readers sync.Pool // *bufio.Reader, readBuf bytes
	writers sync.Pool // *bufio.Writer, writeBuf bytes
}

func newBufferPools(readBuf, writeBuf int) *bufferPools {
	return &bufferPools{
		readers: sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBuf) }},
		writers: sync.Pool{New: func() any { return bufio.NewWriterSize(nil, writeBuf) }},
	}
}

// socketSource is what a connection's read buffer reads from: the
// connection, or, inside fillSocket, the socket itself without waiting.
type socketSource struct {
	c  *conn
	fd int // >= 0 only inside fillSocket
}

func (s *socketSource) Read(p []byte) (int, error) {
	if s.fd < 0 {
		c := s.c
		if c.waiter == nil {
			return c.Read(p)
		}
		c.startWait()
		n, err := c.Read(p)
		if c.endWait() {
			return n, errClientGone
		}
		return n, err
	}
	for {
		n, err := unix.Read(s.fd, p)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return 0, errWouldBlock
		case err != nil:
			return 0, os.NewSyscallError("read", err)
		case n == 0 && len(p) > 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

// reader returns the connection's read buffer, taking one if it holds none.
func (c *conn) reader() *bufio.Reader {
	if c.br == nil {
		c.br = c.pools.readers.Get().(*bufio.Reader) //nolint:forcetypeassert // the pool holds only *bufio.Reader
		c.br.Reset(&c.src)
	}
	return c.br
}

// buffered is how many bytes the connection has read and not yet consumed.
func (c *conn) buffered() int {
	if c.br == nil {
		return 0
	}
	return c.br.Buffered()
}

// dropReader gives an empty read buffer back to the pool. Only the
// connection's one user may call it, and never with bytes in the buffer.
func (c *conn) dropReader() {
	if c.br != nil && c.br.Buffered() == 0 {
		c.br.Reset(nil)
		c.pools.readers.Put(c.br)
		c.br = nil
	}
}

// writer returns the connection's write buffer, taking one if it holds none.
func (c *conn) writer() *bufio.Writer {
	if c.bw == nil {
		c.bw = c.pools.writers.Get().(*bufio.Writer) //nolint:forcetypeassert // the pool holds only *bufio.Writer
		c.bw.Reset(c.Conn)
	}
	return c.bw
}

// dropWriter gives the write buffer back to the pool, unflushed bytes and
// all: only after a flush, or when the connection is being given up.
func (c *conn) dropWriter() {
	if c.bw != nil {
		c.bw.Reset(nil)
		c.pools.writers.Put(c.bw)
		c.bw = nil
	}
}

// await waits until the upstream has sent something, within the read
// deadline, and returns with at least one byte in the read buffer, or with
// why none will come (io.EOF for a clean close). It holds no buffer while it
// waits.
func (c *conn) await() error {
	if c.buffered() > 0 {
		return nil
	}
	if c.raw == nil {
		// Not a socket (an in-memory connection in tests): wait in a read.
		_, err := c.reader().Peek(1)
		return err
	}
	c.dropReader()
	c.fillErr = nil
	c.startWait()
	err := c.raw.Read(c.fill)
	if c.endWait() {
		return errClientGone
	}
	if err != nil {
		return err // the deadline, or the connection closed under it
	}
	return c.fillErr
}

// startWait puts the connection's exchange on the watch list for a read
// that may wait; endWait takes it off and reports whether its client went
// away meanwhile (the watcher has then closed the connection).
func (c *conn) startWait() {
	if c.waiter != nil {
		c.watch.add(c.waiter, c)
	}
}

func (c *conn) endWait() bool {
	return c.waiter != nil && c.watch.remove(c.waiter)
}

// fillSocket is await's read, run by the runtime's poller with the socket:
// true when it read something or failed, false (wait for the socket to be
// readable, then call again) when nothing had come.
func (c *conn) fillSocket(fd uintptr) bool {
	br := c.reader()
	c.src.fd = int(fd)
	_, err := br.Peek(1)
	c.src.fd = -1
	if errors.Is(err, errWouldBlock) {
		c.dropReader()
		return false
	}
	c.fillErr = err
	return true
}
