package proxy

import (
	"bytes"
	"time"
)

// The SSE heartbeat: on a text/event-stream response silent for
// Config.SSEHeartbeat between events, an SSE comment goes out, so that idle
// timeouts in front of warden do not cut a stream that is only slow (a
// long prefill). copyBody asks; these tell when.

func isEventStream(contentType []byte) bool {
	const sse = "text/event-stream"
	if len(contentType) < len(sse) || !equalFold(contentType[:len(sse)], sse) {
		return false
	}
	rest := contentType[len(sse):]
	return len(rest) == 0 || rest[0] == ';' || rest[0] == ' '
}

var heartbeatComment = []byte(": keep-alive\n\n")

// silentFor waits up to d for the upstream to send something, and reports
// whether it stayed silent. Only a Peek waits with that deadline, so the
// body's parser never sees the timeout; any other failure is the body's.
func (x *exchange) silentFor(d time.Duration) bool {
	c := x.conn
	_ = c.setReadDeadline(time.Now().Add(d))
	err := c.await()
	_ = c.setReadDeadline(time.Time{})
	if err == nil {
		return false
	}
	if isTimeout(err) {
		return true
	}
	x.body.interrupt(err)
	return false
}

// remember keeps the last bytes sent, to tell event boundaries.
func (x *exchange) remember(b []byte) {
	if len(b) >= len(x.tail) {
		copy(x.tail[:], b[len(b)-len(x.tail):])
		x.tailLen = len(x.tail)
		return
	}
	for _, c := range b {
		copy(x.tail[:], x.tail[1:])
		x.tail[len(x.tail)-1] = c
		x.tailLen = min(x.tailLen+1, len(x.tail))
	}
}

// atEventBoundary reports whether the bytes sent so far end an SSE event
// (a blank line, with any of the three line endings), or none were sent.
func (x *exchange) atEventBoundary() bool {
	if x.tailLen == 0 {
		return true
	}
	t := x.tail[len(x.tail)-x.tailLen:]
	return bytes.HasSuffix(t, []byte("\n\n")) || bytes.HasSuffix(t, []byte("\r\r")) || bytes.HasSuffix(t, []byte("\n\r\n"))
}
