package dns

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// forward asks the upstreams, in order, the question q under the client's
// ID, with recursion desired; over UDP, and again over TCP when the UDP
// answer is truncated. It returns the first answer that is NOERROR or
// NXDOMAIN to this question, or every upstream's error.
func (s *Server) forward(ctx context.Context, q dns.Question, id uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.Id = id
	m.RecursionDesired = true
	m.Question = []dns.Question{q}
	m.SetEdns0(udpSize, false)
	var errs []error
	for _, up := range s.upstreams {
		resp, err := s.exchange(ctx, "udp", m, up)
		if err == nil && resp.Truncated {
			resp, err = s.exchange(ctx, "tcp", m, up)
		}
		if err == nil {
			err = check(m, resp)
		}
		if err == nil {
			return resp, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", up, err))
		if ctx.Err() != nil {
			break // closing
		}
	}
	return nil, errors.Join(errs...)
}

// exchange sends m to upstream over network and reads the answer, giving
// up after the upstream timeout or when ctx ends.
func (s *Server) exchange(ctx context.Context, network string, m *dns.Msg, upstream string) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.timeout)
	defer cancel()
	c := &dns.Client{Net: network, Timeout: s.opts.timeout}
	conn, err := c.DialContext(ctx, upstream)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	// Deadlines bound the read; closing on ctx also ends it when the
	// server closes.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	resp, _, err := c.ExchangeWithConnContext(ctx, m, conn)
	if err != nil {
		return nil, fmt.Errorf("over %s: %w", network, err)
	}
	return resp, nil
}

// check accepts an upstream's answer to query: a response to the same
// question, NOERROR or NXDOMAIN. Any other code (SERVFAIL, REFUSED, …)
// sends the query on to the next upstream.
func check(query, resp *dns.Msg) error {
	if !resp.Response {
		return errors.New("answer is not a response")
	}
	if resp.Rcode != dns.RcodeSuccess && resp.Rcode != dns.RcodeNameError {
		return fmt.Errorf("answered %s", dns.RcodeToString[resp.Rcode])
	}
	q := query.Question[0]
	if len(resp.Question) != 1 {
		return fmt.Errorf("answer has %d questions", len(resp.Question))
	}
	if a := resp.Question[0]; !strings.EqualFold(a.Name, q.Name) || a.Qtype != q.Qtype || a.Qclass != q.Qclass {
		return fmt.Errorf("answer is to another question (%s)", a.String())
	}
	return nil
}

// clean drops from an upstream's answer what belongs to that exchange
// (OPT, signatures of the transaction) and the flags that are not ours to
// pass on: we are not authoritative and validate nothing.
func clean(m *dns.Msg) *dns.Msg {
	extra := m.Extra[:0]
	for _, rr := range m.Extra {
		switch rr.Header().Rrtype {
		case dns.TypeOPT, dns.TypeTSIG, dns.TypeSIG:
			continue
		}
		extra = append(extra, rr)
	}
	m.Extra = extra
	m.Authoritative = false
	m.AuthenticatedData = false
	m.Truncated = false
	return m
}

// lifetime is how long an upstream's answer may stay cached: its smallest
// TTL, at most maxTTL; for a negative answer (NXDOMAIN, or NOERROR without
// an answer), its SOA's negative TTL (RFC 2308: the smaller of the SOA's
// TTL and MINIMUM), at most maxNegTTL, and zero without a SOA. Zero means
// not to cache.
func lifetime(m *dns.Msg) time.Duration {
	if m.Rcode == dns.RcodeNameError || (m.Rcode == dns.RcodeSuccess && len(m.Answer) == 0) {
		for _, rr := range m.Ns {
			if soa, ok := rr.(*dns.SOA); ok {
				return min(time.Duration(min(soa.Hdr.Ttl, soa.Minttl))*time.Second, maxNegTTL)
			}
		}
		return 0
	}
	if m.Rcode != dns.RcodeSuccess {
		return 0
	}
	ttl := uint32(maxTTL / time.Second)
	for _, section := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range section {
			ttl = min(ttl, rr.Header().Ttl)
		}
	}
	return time.Duration(ttl) * time.Second
}

// setTTLs sets every record's TTL in m to ttl seconds.
func setTTLs(m *dns.Msg, ttl uint32) {
	for _, section := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range section {
			rr.Header().Ttl = ttl
		}
	}
}
