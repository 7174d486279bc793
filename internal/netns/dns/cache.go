package dns

import (
	"container/list"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// cacheKey is what an answer is cached under: the question, its name
// lowercased (names compare without case).
type cacheKey struct {
	name          string
	qtype, qclass uint16
}

type cacheEntry struct {
	key     cacheKey
	msg     *dns.Msg // the answer as it came, TTLs as stored
	expires time.Time
}

// cache holds answers until they expire, at most size of them; beyond
// that the least recently used goes.
type cache struct {
	mu    sync.Mutex
	size  int
	items map[cacheKey]*list.Element // of *cacheEntry
	lru   list.List                  // most recently used first
}

func newCache(size int) *cache {
	return &cache{size: size, items: make(map[cacheKey]*list.Element)}
}

// get returns a copy of the answer cached under k with every TTL set to the
// seconds it has left, or nil if there is none or it has expired.
func (c *cache) get(k cacheKey, now time.Time) *dns.Msg {
	c.mu.Lock()
	el, ok := c.items[k]
	if !ok {
		c.mu.Unlock()
		return nil
	}
	e := el.Value.(*cacheEntry)
	left := e.expires.Sub(now)
	if left <= 0 {
		c.lru.Remove(el)
		delete(c.items, k)
		c.mu.Unlock()
		return nil
	}
	c.lru.MoveToFront(el)
	m := e.msg.Copy()
	c.mu.Unlock()
	setTTLs(m, uint32(left/time.Second))
	return m
}

// put caches a copy of m under k for life.
func (c *cache) put(k cacheKey, m *dns.Msg, now time.Time, life time.Duration) {
	e := &cacheEntry{key: k, msg: m.Copy(), expires: now.Add(life)}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[k]; ok {
		el.Value = e
		c.lru.MoveToFront(el)
		return
	}
	c.items[k] = c.lru.PushFront(e)
	for c.lru.Len() > c.size {
		old := c.lru.Back()
		c.lru.Remove(old)
		delete(c.items, old.Value.(*cacheEntry).key)
	}
}

// len returns how many answers are cached, expired ones included.
func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}
