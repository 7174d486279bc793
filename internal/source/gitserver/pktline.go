package gitserver

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Git's pkt-line framing (gitprotocol-common(5)): four hex digits giving the
// length of the packet including themselves, then the payload; "0000" is a
// flush packet, "0001" and "0002" are v2 delimiters.

const (
	flushPkt = "0000"
	// maxPkt is the largest packet, header included (LARGE_PACKET_MAX).
	maxPkt = 65520
	// maxCommandBytes bounds the command list of a push (before the pack).
	maxCommandBytes = 8 << 20
)

func pktLine(s string) string {
	return fmt.Sprintf("%04x%s", len(s)+4, s)
}

// readPkt reads one packet's header and returns the payload length, or -1
// for a flush packet and -2 for the other special packets. hdr holds the
// four bytes read.
func readPkt(r io.Reader, hdr []byte) (int, error) {
	if _, err := io.ReadFull(r, hdr[:4]); err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(string(hdr[:4]), 16, 16)
	if err != nil {
		return 0, fmt.Errorf("bad pkt-line length %q", hdr[:4])
	}
	switch {
	case n == 0:
		return -1, nil
	case n < 4:
		return -2, nil
	case n > maxPkt:
		return 0, fmt.Errorf("pkt-line too long (%d bytes)", n)
	}
	return int(n) - 4, nil
}

// command is one ref update a client asked for.
type command struct {
	old, new, ref string
}

// pushRequest is the start of a push request, up to and including the
// flush that ends the command list.
type pushRequest struct {
	commands []command
	// band is the side band's packet payload size (data plus the band
	// byte) the client accepts: 65516 with side-band-64k, 996 with
	// side-band, 0 when it asked for none.
	band int
	raw  []byte // the bytes read, to be replayed to receive-pack
}

var commandLine = regexp.MustCompile(`^([0-9a-f]{40}|[0-9a-f]{64}) ([0-9a-f]{40}|[0-9a-f]{64}) (\S+)$`)

// readCommands reads the command list of a push from r (at most max
// bytes). Lines that are not commands (shallow, the head of a push
// certificate) are kept in raw but otherwise ignored; the commands inside a
// push certificate look like plain ones and are found too.
func readCommands(r io.Reader, max int) (pushRequest, error) {
	var req pushRequest
	var buf bytes.Buffer
	hdr := make([]byte, 4)
	first := true
	for {
		n, err := readPkt(r, hdr)
		if errors.Is(err, io.EOF) && buf.Len() == 0 {
			// An empty body: nothing to do, receive-pack says so.
			req.raw = buf.Bytes()
			return req, nil
		}
		if err != nil {
			return req, fmt.Errorf("reading commands: %w", err)
		}
		buf.Write(hdr)
		if n == -1 {
			break
		}
		if n < 0 {
			continue
		}
		if buf.Len()+n > max {
			return req, errors.New("command list too long")
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(r, payload); err != nil {
			return req, fmt.Errorf("reading commands: %w", err)
		}
		buf.Write(payload)
		line := strings.TrimSuffix(string(payload), "\n")
		line, caps, hasCaps := strings.Cut(line, "\x00")
		if hasCaps && first {
			first = false
			for _, c := range strings.Fields(caps) {
				switch {
				case c == "side-band-64k":
					req.band = maxPkt - 4
				case c == "side-band" && req.band == 0:
					req.band = 1000 - 4
				}
			}
		}
		if m := commandLine.FindStringSubmatch(line); m != nil {
			req.commands = append(req.commands, command{old: m[1], new: m[2], ref: m[3]})
		}
	}
	req.raw = buf.Bytes()
	return req, nil
}

// relay copies receive-pack's side-band stream from src to dst packet by
// packet. When sideband is set it stops at the flush packet that ends the
// stream, without writing it: held is then true and tail holds whatever
// followed it (normally nothing), both for the caller to write later.
func relay(dst io.Writer, src io.Reader, sideband bool) (held bool, tail []byte, err error) {
	if !sideband {
		_, err := io.Copy(dst, src)
		return false, nil, err
	}
	buf := make([]byte, maxPkt)
	for {
		n, err := readPkt(src, buf)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return false, nil, nil // receive-pack ended early
		}
		if err != nil {
			// Not a stream we understand: pass it on untouched.
			if _, werr := dst.Write(buf[:4]); werr != nil {
				return false, nil, werr
			}
			_, err := io.Copy(dst, src)
			return false, nil, err
		}
		if n == -1 {
			rest, err := io.ReadAll(io.LimitReader(src, 1<<20))
			return true, rest, err
		}
		if n > 0 {
			if _, err := io.ReadFull(src, buf[4:4+n]); err != nil {
				dst.Write(buf[:4+n])
				return false, nil, err
			}
		} else {
			n = 0
		}
		if _, err := dst.Write(buf[:4+n]); err != nil {
			return false, nil, err
		}
	}
}

// errClosed is returned by writes to a Pusher's output after Push returned.
var errClosed = errors.New("push output closed: the push has ended")

// bandWriter frames writes as side band 2 packets: progress the client
// prints as "remote: " lines.
type bandWriter struct {
	mu     sync.Mutex
	w      io.Writer
	max    int // data bytes per packet
	wrote  bool
	closed bool
	err    error
}

func newBandWriter(w io.Writer, band int) *bandWriter {
	return &bandWriter{w: w, max: band - 1}
}

func (b *bandWriter) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, errClosed
	}
	if b.err != nil {
		return 0, b.err
	}
	n := 0
	pkt := make([]byte, 0, 5+min(len(p), b.max))
	for len(p) > 0 {
		chunk := p[:min(len(p), b.max)]
		pkt = fmt.Appendf(pkt[:0], "%04x\x02", len(chunk)+5)
		pkt = append(pkt, chunk...)
		if _, err := b.w.Write(pkt); err != nil {
			b.err = fmt.Errorf("writing to the git client: %w", err)
			return n, b.err
		}
		b.wrote = true
		n += len(chunk)
		p = p[len(chunk):]
	}
	return n, nil
}

// keepAlive sends an empty band 1 packet whenever an interval passed
// without output, until the returned function is called.
func (b *bandWriter) keepAlive(every time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			b.mu.Lock()
			if !b.wrote && !b.closed && b.err == nil {
				if _, err := io.WriteString(b.w, "0005\x01"); err != nil {
					b.err = fmt.Errorf("writing to the git client: %w", err)
				}
			}
			b.wrote = false
			b.mu.Unlock()
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			wg.Wait()
		})
	}
}

func (b *bandWriter) close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
}
