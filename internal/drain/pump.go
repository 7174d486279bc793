package drain

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/slipwayhq/slipway/internal/store"
)

// entry is a line waiting for a drain.
type entry struct {
	t                                                        time.Time
	project, deployment, environment, instance, stream, text string
}

// entryCost is what an entry counts against BufferBytes.
func entryCost(e *entry) int { return len(e.text) + 128 }

// Lines sent in one write (syslog) or request (HTTP).
const batchLines = 500

// drain is one running drain: a bounded queue filled by offer and
// emptied by run.
type drain struct {
	s      *Service
	row    store.Drain
	target *url.URL // nil if the drain cannot run
	tls    *tls.Config
	client *http.Client // HTTP drains

	signal chan struct{}   // cap 1: lines were queued
	ctx    context.Context // ends when the drain is closed
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	queue   []entry // queue[head:] wait, oldest first
	head    int
	bytes   int
	sent    int64
	dropped int64
	// Drops not yet reported as a line, the last line dropped, and
	// whether the runtime log was told this episode began.
	unreported int64
	lastDrop   entry
	announced  bool
	connected  bool
	lastErr    string
	lastErrAt  time.Time

	conn net.Conn      // syslog, owned by run
	w    *bufio.Writer // syslog, over conn
}

func (d *drain) setTarget(raw, ca string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if _, err := parseTarget(raw); err != nil {
		return err
	}
	if u.Scheme == "https" || u.Scheme == "syslog+tls" {
		d.tls = &tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}
		if ca != "" {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM([]byte(ca)) {
				return errors.New("the CA holds no PEM certificate")
			}
			d.tls.RootCAs = pool
		}
	}
	if u.Scheme == "http" || u.Scheme == "https" {
		d.client = newHTTPClient(d.s.cfg.Timeout, d.tls)
	}
	d.target = u
	return nil
}

func (d *drain) close() {
	d.cancel()
	<-d.done
}

// offer queues lines of dep, dropping those that do not fit.
func (d *drain) offer(dep store.Deployment, lines []store.LogLine) {
	maxLines, maxBytes := d.s.cfg.BufferLines, d.s.cfg.BufferBytes
	d.mu.Lock()
	for i := range lines {
		l := &lines[i]
		e := entry{t: l.Time, project: dep.ProjectName, deployment: l.DeploymentID, environment: dep.EnvironmentName,
			instance: l.InstanceID, stream: l.Stream, text: l.Text}
		cost := entryCost(&e)
		if len(d.queue)-d.head >= maxLines || d.bytes+cost > maxBytes {
			d.dropped++
			d.unreported++
			d.lastDrop = e
			continue
		}
		d.queue = append(d.queue, e)
		d.bytes += cost
	}
	d.mu.Unlock()
	select {
	case d.signal <- struct{}{}:
	default:
	}
}

// take removes up to n waiting lines, preceded by a line reporting the
// drops since the last report, if any (which it also returns).
func (d *drain) take(n int) ([]entry, *entry) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []entry
	var notice *entry
	if d.unreported > 0 {
		e := d.lastDrop
		e.t, e.instance, e.stream = time.Now().UTC(), "", "slipway"
		e.text = fmt.Sprintf("slipway: log drain %s dropped %d lines: its buffer was full (the endpoint was slow or unreachable)", d.row.ID, d.unreported)
		d.unreported, d.announced = 0, false
		out, notice = append(out, e), &e
	}
	k := min(n, len(d.queue)-d.head)
	out = append(out, d.queue[d.head:d.head+k]...)
	for i := d.head; i < d.head+k; i++ {
		d.bytes -= entryCost(&d.queue[i])
		d.queue[i] = entry{}
	}
	d.head += k
	if d.head == len(d.queue) {
		d.queue, d.head = d.queue[:0], 0
	} else if d.head > len(d.queue)/2 && d.head > 1024 {
		d.queue = append(d.queue[:0], d.queue[d.head:]...)
		d.head = 0
	}
	return out, notice
}

// logLine writes a line from Slipway to a deployment's runtime log.
func (d *drain) logLine(deployment, text string) {
	if deployment == "" {
		return
	}
	line := store.LogLine{DeploymentID: deployment, Kind: store.LogRuntime, Stream: "slipway", Time: time.Now().UTC(), Text: text}
	if err := d.s.cfg.Store.AppendLogs(context.Background(), []store.LogLine{line}); err != nil {
		d.s.log.Error("writing a log drain's notice", "drain", d.row.ID, "err", err)
	}
}

// run sends what is queued until close, reconnecting with backoff.
func (d *drain) run() {
	defer close(d.done)
	defer d.disconnect()
	backoff := d.s.cfg.MinBackoff
	var batch []entry
	for {
		if len(batch) == 0 {
			var notice *entry
			batch, notice = d.take(batchLines)
			if notice != nil {
				d.logLine(notice.deployment, notice.text)
			}
		}
		if len(batch) == 0 {
			select {
			case <-d.ctx.Done():
				return
			case <-d.signal:
			}
			continue
		}
		err := d.send(batch)
		if err == nil {
			d.mu.Lock()
			d.sent += int64(len(batch))
			d.connected = true
			d.mu.Unlock()
			batch, backoff = nil, d.s.cfg.MinBackoff
			continue
		}
		d.disconnect()
		d.mu.Lock()
		d.connected, d.lastErr, d.lastErrAt = false, err.Error(), time.Now()
		announce := d.unreported > 0 && !d.announced
		d.announced = d.announced || announce
		dep := d.lastDrop.deployment
		d.mu.Unlock()
		if announce {
			d.logLine(dep, fmt.Sprintf("slipway: log drain %s is dropping lines: its buffer is full and its endpoint fails (%v)", d.row.ID, err))
		}
		select {
		case <-d.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, d.s.cfg.MaxBackoff)
	}
}

func (d *drain) send(batch []entry) error {
	if d.client != nil {
		return d.post(batch)
	}
	return d.write(batch)
}

func (d *drain) disconnect() {
	if d.conn != nil {
		d.conn.Close()
		d.conn, d.w = nil, nil
	}
}

// write sends batch as syslog messages, connecting first if need be.
func (d *drain) write(batch []entry) error {
	timeout := d.s.cfg.Timeout
	if d.conn == nil {
		dialer := &net.Dialer{Timeout: timeout}
		var c net.Conn
		var err error
		if d.tls != nil {
			c, err = (&tls.Dialer{NetDialer: dialer, Config: d.tls}).DialContext(d.ctx, "tcp", d.target.Host)
		} else {
			c, err = dialer.DialContext(d.ctx, "tcp", d.target.Host)
		}
		if err != nil {
			return fmt.Errorf("connecting: %w", err)
		}
		d.conn, d.w = c, bufio.NewWriterSize(c, 64<<10)
	}
	d.conn.SetWriteDeadline(time.Now().Add(timeout))
	var buf []byte
	for i := range batch {
		buf = appendFrame(buf[:0], d.s.cfg.Hostname, &batch[i])
		if _, err := d.w.Write(buf); err != nil {
			return fmt.Errorf("writing: %w", err)
		}
	}
	if err := d.w.Flush(); err != nil {
		return fmt.Errorf("writing: %w", err)
	}
	return nil
}

// Line is one line of an HTTP drain's batch (a JSON array of them).
type Line struct {
	Time        time.Time `json:"time"`
	Project     string    `json:"project"`
	Environment string    `json:"environment,omitempty"`
	Deployment  string    `json:"deployment"`
	Instance    string    `json:"instance,omitempty"`
	// Stream is "stdout", "stderr", or "slipway" for Slipway's own lines.
	Stream string `json:"stream"`
	Text   string `json:"text"`
}

// post sends batch to an HTTP drain.
func (d *drain) post(batch []entry) error {
	lines := make([]Line, len(batch))
	for i, e := range batch {
		lines[i] = Line{Time: e.t, Project: e.project, Environment: e.environment, Deployment: e.deployment,
			Instance: e.instance, Stream: e.stream, Text: e.text}
	}
	body, err := json.Marshal(lines)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(d.ctx, d.s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.target.String(), bytes.NewReader(body))
	if err != nil {
		return errors.New("invalid URL")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Slipway-Drain/1")
	resp, err := d.client.Do(req)
	if err != nil {
		var ue *url.Error // quotes the URL, which may hold credentials
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return nil
}

func (d *drain) status() Status {
	st := statusOf(d.row)
	d.mu.Lock()
	defer d.mu.Unlock()
	st.Sent, st.Dropped, st.Buffered = d.sent, d.dropped, len(d.queue)-d.head
	st.Connected, st.LastError, st.LastErrorAt = d.connected, d.lastErr, d.lastErrAt
	return st
}

// Syslog priorities (RFC 5424 6.2.1): facility user (1), severity info
// (6) for stdout, error (3) for stderr, notice (5) for Slipway's lines.
const (
	priStdout  = 1*8 + 6
	priStderr  = 1*8 + 3
	priSlipway = 1*8 + 5
)

// SDID is the id of the structured data element of Slipway's syslog
// messages, under the enterprise number RFC 5612 reserves for examples
// and documentation.
const SDID = "slipway@32473"

// appendFrame appends e as an RFC 5424 message framed by octet counting
// (RFC 6587 3.4.1): "LEN SP MSG", where MSG is
//
//	<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [slipway@32473 deployment="…" environment="…"] TEXT
//
// APP-NAME is the project, PROCID the instance, MSGID the stream.
func appendFrame(buf []byte, hostname string, e *entry) []byte {
	pri := priStdout
	switch e.stream {
	case "stderr":
		pri = priStderr
	case "slipway":
		pri = priSlipway
	}
	var msg []byte
	msg = append(msg, '<')
	msg = strconv.AppendInt(msg, int64(pri), 10)
	msg = append(msg, ">1 "...)
	msg = e.t.UTC().AppendFormat(msg, "2006-01-02T15:04:05.000000Z")
	msg = append(msg, ' ')
	msg = appendHeaderField(msg, hostname, 255)
	msg = append(msg, ' ')
	msg = appendHeaderField(msg, e.project, 48)
	msg = append(msg, ' ')
	msg = appendHeaderField(msg, e.instance, 128)
	msg = append(msg, ' ')
	msg = appendHeaderField(msg, e.stream, 32)
	msg = append(msg, " ["...)
	msg = append(msg, SDID...)
	msg = appendParam(msg, "deployment", e.deployment)
	if e.environment != "" {
		msg = appendParam(msg, "environment", e.environment)
	}
	msg = append(msg, "] "...)
	msg = append(msg, e.text...)
	buf = strconv.AppendInt(buf, int64(len(msg)), 10)
	buf = append(buf, ' ')
	return append(buf, msg...)
}

// appendHeaderField appends a header field: printable US-ASCII without
// spaces, at most max characters, "-" if empty.
func appendHeaderField(b []byte, s string, max int) []byte {
	n := 0
	for i := 0; i < len(s) && n < max; i++ {
		if c := s[i]; c > 32 && c < 127 {
			b = append(b, c)
			n++
		}
	}
	if n == 0 {
		b = append(b, '-')
	}
	return b
}

// appendParam appends ` name="value"`, escaping '"', '\' and ']'.
func appendParam(b []byte, name, value string) []byte {
	b = append(b, ' ')
	b = append(b, name...)
	b = append(b, '=', '"')
	for i := 0; i < len(value); i++ {
		switch c := value[i]; c {
		case '"', '\\', ']':
			b = append(b, '\\', c)
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}
