package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/slipwayhq/slipway/internal/store"
)

// run sends pending deliveries as they fall due, until Close.
func (s *Service) run() {
	defer s.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next := s.dispatch()
		wait := time.Minute // a safety net: every change pokes
		if !next.IsZero() {
			wait = min(max(time.Until(next), 0), wait)
		}
		timer.Reset(wait)
		select {
		case <-s.ctx.Done():
			return
		case <-s.wake:
		case <-timer.C:
		}
	}
}

// dispatch starts an attempt at each pending delivery that is due, up to
// Concurrency at once, and returns when the next one falls due (zero if
// none waits for a time).
func (s *Service) dispatch() time.Time {
	ds, err := s.store.PendingDeliveries(s.ctx, 64)
	if err != nil {
		if s.ctx.Err() == nil {
			s.log.Error("listing pending webhook deliveries", "err", err)
		}
		return time.Now().Add(5 * time.Second)
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range ds {
		if s.inflight[d.ID] {
			continue
		}
		if d.NextAttemptAt.After(now) {
			return d.NextAttemptAt
		}
		if len(s.inflight) >= s.cfg.Concurrency {
			return time.Time{} // an attempt ending pokes
		}
		s.inflight[d.ID] = true
		s.wg.Add(1)
		go s.attempt(d)
	}
	return time.Time{}
}

// attempt sends d once and records the outcome.
func (s *Service) attempt(d store.Delivery) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.inflight, d.ID)
		s.mu.Unlock()
		s.poke()
	}()
	h, err := s.store.GetHook(s.ctx, d.HookID)
	if errors.Is(err, store.ErrNotFound) {
		return // deleted with its deliveries
	}
	if err != nil {
		if s.ctx.Err() == nil {
			s.log.Error("reading webhook", "hook", d.HookID, "err", err)
		}
		return
	}
	var status int
	var errText string
	permanent := false
	target, err1 := s.box.Unseal(h.URL)
	secret, err2 := s.box.Unseal(h.Secret)
	if err := errors.Join(err1, err2); err != nil {
		errText, permanent = "cannot decrypt the webhook's URL or secret: "+err.Error(), true
	} else {
		status, errText, permanent = s.send(string(target), secret, d)
	}
	if s.ctx.Err() != nil {
		return // shutting down: the delivery stays pending, as it was
	}
	d.Attempts++
	d.LastStatus, d.LastError = status, errText
	switch {
	case status >= 200 && status < 300:
		d.State = store.DeliveryDelivered
	case permanent || d.Attempts >= s.cfg.MaxAttempts:
		d.State = store.DeliveryFailed
	default:
		d.State = store.DeliveryPending
		d.NextAttemptAt = time.Now().Add(s.backoff(d.Attempts))
	}
	if err := s.store.RecordAttempt(context.WithoutCancel(s.ctx), d); err != nil && !errors.Is(err, store.ErrNotFound) {
		s.log.Error("recording a webhook delivery", "delivery", d.ID, "err", err)
	}
	if d.State == store.DeliveryFailed {
		s.log.Warn("webhook delivery failed", "hook", h.ID, "project", h.ProjectID, "delivery", d.ID,
			"event", d.Event, "attempts", d.Attempts, "status", status, "err", errText)
	}
}

// backoff is the wait after attempt number n (from 1) failed.
func (s *Service) backoff(n int) time.Duration {
	wait := s.cfg.FirstRetry
	for i := 1; i < n && wait < s.cfg.MaxRetry; i++ {
		wait *= 2
	}
	return min(wait, s.cfg.MaxRetry)
}

// send makes one attempt. permanent: retrying cannot help (an answer
// other than 2xx, 408, 429 and 5xx).
func (s *Service) send(target string, secret []byte, d store.Delivery) (status int, errText string, permanent bool) {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(d.Body))
	if err != nil {
		return 0, "invalid webhook URL", true
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Slipway-Webhook/1")
	req.Header.Set(EventHeader, d.Event)
	req.Header.Set(DeliveryHeader, d.ID)
	req.Header.Set(SignatureHeader, Sign(secret, d.Body))
	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		// A *url.Error quotes the URL, which may hold credentials.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, err.Error(), false
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	status = resp.StatusCode
	if status >= 200 && status < 300 {
		return status, "", false
	}
	errText = fmt.Sprintf("HTTP %d", status)
	if text := printable(snippet); text != "" {
		errText += ": " + text
	}
	transient := status >= 500 || status == http.StatusRequestTimeout || status == http.StatusTooManyRequests
	return status, errText, !transient
}

// printable is the start of a response body fit for a delivery log.
func printable(b []byte) string {
	for !utf8.Valid(b) && len(b) > 0 {
		b = b[:len(b)-1] // a rune cut at the limit
	}
	return strings.Join(strings.Fields(strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, string(b))), " ")
}
