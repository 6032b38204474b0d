package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"
)

// maxBufferedBody is the largest upstream response body, by its
// Content-Length, that is read whole before the response is sent on. Any
// larger body, and a body of unknown length, streams.
const maxBufferedBody = 16 << 10

// maxInterimResponses bounds the 1xx responses read before the final one,
// as fasthttp does.
const maxInterimResponses = 100

// exchange sends one request to one upstream over a pooled connection of
// hc and reads the response into resp. It is fasthttp's default
// HostClient transport (v1.77), called directly rather than through
// HostClient.Do (whose per-request work — a fasthttp.Request to fill and
// reset, its URI parsed, a clock read — buys nothing here; retries are
// roundTrip's), except in two ways:
//   - the request is written from what forward prepared (writeRequest);
//   - a response body whose Content-Length is at most maxBufferedBody is
//     read whole and the connection goes back to the pool at once; every
//     other body streams to the client as it arrives, so a large download
//     is never held in memory, and its connection is released when the
//     stream is closed. (The client's StreamResponseBody would stream
//     every body, which on the small responses that are nearly all of an
//     API's costs allocations, a copy and an upstream connection held
//     until the client has its answer.)
//
// The route timeout bounds the whole exchange: write and read share the
// deadline roundTrip records (upDeadline), across retries too. retry
// reports a failure before any response, after which an idempotent
// request may be sent again (a kept-alive connection the upstream had
// closed).
func exchange(hc *fasthttp.HostClient, st *reqState, method, body []byte, resp *fasthttp.Response) (retry bool, err error) {
	deadline, wait := st.upDeadline, st.upWait
	if wait > 0 {
		// roundTrip read the clock for this attempt a moment ago: the
		// whole timeout is left, without another clock read. A retry
		// measures what remains.
		st.upWait = 0
	} else {
		wait = time.Until(deadline)
	}
	if wait <= 0 {
		return false, fasthttp.ErrTimeout
	}
	cc, err := hc.AcquireConn(wait, false)
	if err != nil {
		return false, err
	}
	conn := cc.Conn()

	// One deadline for writing the request and reading the response: a
	// single runtime timer, set once per exchange.
	if err = conn.SetDeadline(deadline); err != nil {
		hc.CloseConn(cc)
		return true, err
	}
	bw := hc.AcquireWriter(conn)
	err = writeRequest(bw, method, st, body)
	if err == nil {
		err = bw.Flush()
	}
	hc.ReleaseWriter(bw)
	if x, ok := err.(interface{ Timeout() bool }); ok && x.Timeout() {
		err = fasthttp.ErrTimeout
	}
	if err != nil {
		hc.CloseConn(cc)
		return true, err
	}

	resp.SkipBody = string(method) == fasthttp.MethodHead
	if hc.DisableHeaderNamesNormalizing {
		resp.Header.DisableNormalizing()
	}
	br := hc.AcquireReader(conn)
	resp.ResetBody()
	err = resp.Header.Read(br)
	for n := 0; err == nil && isInterim(resp.Header.StatusCode()); n++ {
		if n >= maxInterimResponses {
			err = errTooManyInterim
			break
		}
		err = resp.Header.Read(br)
	}
	if err != nil {
		hc.ReleaseReader(br)
		hc.CloseConn(cc)
		// Like fasthttp: no response, so an idempotent request may be
		// retried (a kept-alive connection the upstream had closed).
		return true, err
	}
	stream := false
	if !skipsBody(resp) {
		if cl := resp.Header.ContentLength(); cl >= 0 && cl <= maxBufferedBody {
			resp.StreamBody = false
			if err = resp.ReadBody(br, maxBufferedBody); err != nil {
				// The upstream answered: never send the request twice,
				// as a streamed body failing half way never did.
				hc.ReleaseReader(br)
				hc.CloseConn(cc)
				return false, err
			}
		} else {
			stream = true
		}
	}
	closeConn := resp.ConnectionClose()
	if !stream {
		hc.ReleaseReader(br)
		if closeConn {
			hc.CloseConn(cc)
		} else {
			hc.ReleaseConn(cc)
		}
		return false, nil
	}

	// The body streams from a second Response holding a copy of the head
	// (fasthttp offers no way to wrap resp's own stream without ending
	// it); the copy also keeps the upstream's Connection header, which the
	// proxy strips from resp before the body is read.
	up := fasthttp.AcquireResponse()
	resp.Header.CopyTo(&up.Header)
	up.StreamBody = true
	if err = up.ReadBody(br, 0); err != nil {
		fasthttp.ReleaseResponse(up)
		hc.ReleaseReader(br)
		hc.CloseConn(cc)
		return false, err
	}
	size := resp.Header.ContentLength()
	// A body read until the upstream closes leaves nothing to reuse.
	closeConn = closeConn || size < -1
	sb := &streamedBody{up: up, trailers: &resp.Header}
	sb.release = func(reuse bool) {
		hc.ReleaseReader(br)
		if reuse && !closeConn && !up.Header.ConnectionClose() {
			hc.ReleaseConn(cc)
		} else {
			hc.CloseConn(cc)
		}
	}
	if size < 0 {
		size = -1 // chunked to the client, as fasthttp sends any stream of unknown length
	}
	resp.SetBodyStream(sb, size)
	return false, nil
}

// writeRequest writes the request forward prepared: the request line with
// st.uri, the header block st.head, the body's framing and the body. The
// body was read whole by the server; it goes with a Content-Length, which
// (as fasthttp does) is also sent, as 0, for an empty body on any method
// but GET and HEAD.
func writeRequest(w *bufio.Writer, method []byte, st *reqState, body []byte) error {
	w.Write(method)
	w.WriteByte(' ')
	w.Write(st.uri)
	w.WriteString(" HTTP/1.1\r\n")
	w.Write(st.head)
	if m := string(method); len(body) > 0 || m != fasthttp.MethodGet && m != fasthttp.MethodHead {
		var n [20]byte
		w.WriteString("Content-Length: ")
		w.Write(strconv.AppendInt(n[:0], int64(len(body)), 10))
		w.WriteString("\r\n")
	}
	w.WriteString("\r\n")
	_, err := w.Write(body) // bufio.Writer errors are sticky: this one reports any
	return err
}

var errTooManyInterim = errors.New("proxy: too many interim responses from the upstream")

func isInterim(status int) bool {
	return status >= 100 && status <= 199 && status != fasthttp.StatusSwitchingProtocols
}

// skipsBody reports a response that has no body: to a HEAD request, or
// 1xx, 204 and 304.
func skipsBody(resp *fasthttp.Response) bool {
	s := resp.Header.StatusCode()
	return resp.SkipBody || s >= 100 && s <= 199 || s == fasthttp.StatusNoContent || s == fasthttp.StatusNotModified
}

// streamedBody is a response body streaming from the upstream connection.
// The server reads it to the end and closes it, on the handler's
// goroutine; Close gives the connection back (or closes it when the body
// was not read to its end) and moves any trailers the upstream sent to the
// response being written.
type streamedBody struct {
	up       *fasthttp.Response
	trailers *fasthttp.ResponseHeader
	release  func(reuse bool)
	eof      bool
	closed   bool
}

func (b *streamedBody) Read(p []byte) (int, error) {
	if b.closed {
		return 0, io.ErrClosedPipe
	}
	n, err := b.up.BodyStream().Read(p)
	if err == io.EOF && !b.eof {
		b.eof = true
		if raw := b.up.Header.TrailerHeader(); len(raw) > 2 {
			if terr := b.trailers.ReadTrailer(bufio.NewReader(bytes.NewReader(raw))); terr != nil {
				b.eof = false
				return n, terr
			}
		}
	}
	return n, err
}

func (b *streamedBody) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	err := b.up.CloseBodyStream()
	b.release(b.eof && err == nil)
	fasthttp.ReleaseResponse(b.up)
	return err
}
