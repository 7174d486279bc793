package registry

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"regexp"
	"strings"
)

// digest is a content digest ("sha256:<hex>" or "sha512:<hex>").
type digest struct {
	alg string // "sha256" or "sha512"
	hex string // lowercase, 64 or 128 characters
}

var (
	errDigestInvalid     = errors.New("invalid digest")
	errDigestUnsupported = errors.New("unsupported digest algorithm")

	// digestGrammar is the image spec's digest grammar; algorithms other
	// than sha256 and sha512 match it but are not supported.
	digestGrammar = regexp.MustCompile(`^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$`)
	hexLens       = map[string]int{"sha256": 64, "sha512": 128}
)

// parseDigest parses s, returning errDigestInvalid when it is not a digest
// and errDigestUnsupported when it is one of an algorithm other than
// sha256 and sha512.
func parseDigest(s string) (digest, error) {
	if !digestGrammar.MatchString(s) {
		return digest{}, errDigestInvalid
	}
	i := strings.IndexByte(s, ':')
	alg, enc := s[:i], s[i+1:]
	n, ok := hexLens[alg]
	if !ok {
		return digest{}, errDigestUnsupported
	}
	if len(enc) != n || !isLowerHex(enc) {
		return digest{}, errDigestInvalid
	}
	return digest{alg: alg, hex: enc}, nil
}

func isDigest(s string) bool {
	_, err := parseDigest(s)
	return err == nil
}

func (d digest) String() string { return d.alg + ":" + d.hex }

func (d digest) newHash() hash.Hash {
	if d.alg == "sha512" {
		return sha512.New()
	}
	return sha256.New()
}

// matches reports whether h, fed the content, yields d.
func (d digest) matches(h hash.Hash) bool { return hex.EncodeToString(h.Sum(nil)) == d.hex }

// digestOf returns the digest of b with the algorithm alg.
func digestOf(alg string, b []byte) digest {
	d := digest{alg: alg}
	h := d.newHash()
	h.Write(b)
	d.hex = hex.EncodeToString(h.Sum(nil))
	return d
}

// verifyingReader fails at EOF when the content does not match the digest,
// so that a partly written blob is never committed.
type verifyingReader struct {
	r    io.Reader
	h    hash.Hash
	want digest
}

func newVerifyingReader(r io.Reader, want digest) *verifyingReader {
	return &verifyingReader{r: r, h: want.newHash(), want: want}
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	if err == io.EOF && !v.want.matches(v.h) {
		return n, fmt.Errorf("blob digest mismatch: want %s", v.want)
	}
	return n, err
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
