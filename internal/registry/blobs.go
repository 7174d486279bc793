package registry

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"

	ggcr "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// statBlobs is the disk blob handler with a cheap Stat. The disk handler's
// own Stat re-hashes the whole blob on every HEAD and GET; blobs only reach
// their final path after the registry verified their digest, so the file's
// size is enough.
type statBlobs struct {
	ggcr.BlobHandler
	dir string
}

func (b statBlobs) Stat(_ context.Context, _ string, h v1.Hash) (int64, error) {
	fi, err := os.Stat(filepath.Join(b.dir, h.Algorithm, h.Hex))
	if errors.Is(err, os.ErrNotExist) {
		return 0, ggcr.ErrNotFound
	}
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

func (b statBlobs) Put(ctx context.Context, repo string, h v1.Hash, rc io.ReadCloser) error {
	return b.BlobHandler.(ggcr.BlobPutHandler).Put(ctx, repo, h, rc)
}

func (b statBlobs) Delete(ctx context.Context, repo string, h v1.Hash) error {
	return b.BlobHandler.(ggcr.BlobDeleteHandler).Delete(ctx, repo, h)
}

var (
	_ ggcr.BlobStatHandler   = statBlobs{}
	_ ggcr.BlobPutHandler    = statBlobs{}
	_ ggcr.BlobDeleteHandler = statBlobs{}
)

// verifyingReader fails at EOF when the content does not match the digest,
// so that a blob handler's Put never commits a corrupt blob.
type verifyingReader struct {
	r    io.Reader
	h    hash.Hash
	want v1.Hash
}

func newVerifyingReader(r io.Reader, want v1.Hash) (*verifyingReader, error) {
	if want.Algorithm != "sha256" {
		return nil, fmt.Errorf("unsupported digest algorithm %q", want.Algorithm)
	}
	return &verifyingReader{r: r, h: sha256.New(), want: want}, nil
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	if err == io.EOF {
		if got := fmt.Sprintf("%x", v.h.Sum(nil)); got != v.want.Hex {
			return n, fmt.Errorf("blob digest mismatch: got sha256:%s, want %s", got, v.want)
		}
	}
	return n, err
}
