package registry

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// GCStats is what a garbage collection deleted.
type GCStats struct {
	Manifests int   // manifests deleted, with their tags
	Blobs     int   // blobs taken out of a repository
	Files     int   // blob contents removed from disk (held by no repository any more)
	Bytes     int64 // the size of those contents
}

// CollectGarbage deletes what nothing keeps, repository by repository,
// outside library/ (the base images are never collected):
//
//   - a manifest is kept when keep(repository, digest) says so or when it
//     was written after before; a kept manifest keeps the manifests it lists
//     (an index's images) and those whose subject it is (signatures,
//     attestations). Every other manifest is deleted with its tags.
//   - a blob stays in a repository while a kept manifest of it references
//     it, or when it was put there after before; otherwise it is taken
//     out, and its content is removed once no repository holds it.
//
// A repository for which keep(repository, "") is true is skipped
// altogether: one being pushed to, or one the caller does not own.
//
// before protects pushes in progress, which send their blobs first and
// their manifest last. Each repository is collected under the store's
// lock, so a push that completes meanwhile sees either the content before
// or after, never half of it.
func (r *Registry) CollectGarbage(keep func(repo, digest string) bool, before time.Time) (GCStats, error) {
	var total GCStats
	var errs []error
	for _, repo := range r.store.repositories() {
		if publicRepo(repo) || keep(repo, "") {
			continue
		}
		st, err := r.store.collect(repo, keep, before)
		total.Manifests += st.Manifests
		total.Blobs += st.Blobs
		total.Files += st.Files
		total.Bytes += st.Bytes
		if err != nil {
			errs = append(errs, fmt.Errorf("collecting %s: %w", repo, err))
		}
	}
	return total, errors.Join(errs...)
}

// collect collects one repository (see Registry.CollectGarbage).
func (s *store) collect(repo string, keep func(repo, digest string) bool, before time.Time) (GCStats, error) {
	var st GCStats
	s.mu.Lock()
	defer s.mu.Unlock()
	ri := s.repos[repo]
	if ri == nil {
		return st, nil
	}
	young := func(path string) bool {
		fi, err := os.Stat(path)
		if errors.Is(err, fs.ErrNotExist) {
			return false
		}
		return err != nil || !fi.ModTime().Before(before) // unreadable: kept
	}

	// Mark: the manifests kept, with what they list and what refers to them.
	kept := map[string]bool{}
	var work []string
	mark := func(d string) {
		if !kept[d] && ri.manifests[d] != nil {
			kept[d] = true
			work = append(work, d)
		}
	}
	for d := range ri.manifests {
		if keep(repo, d) || young(s.refPath(repo, d)) {
			mark(d)
		}
	}
	blobs := map[string]bool{}
	for len(work) > 0 {
		d := work[len(work)-1]
		work = work[:len(work)-1]
		m := ri.manifests[d]
		body, err := s.readManifest(repo, m)
		if err != nil {
			return st, err // nothing is deleted from a repository not fully read
		}
		doc, err := parseManifest(body, m.mediaType)
		if err != nil {
			return st, fmt.Errorf("reading manifest %s: %w", d, err)
		}
		for _, b := range doc.blobs {
			blobs[b] = true
		}
		for _, c := range doc.children {
			mark(c)
		}
		for r := range ri.referrers[d] {
			mark(r)
		}
	}

	// Sweep: manifests, then blobs.
	for d := range ri.manifests {
		if kept[d] {
			continue
		}
		if err := s.deleteManifestLocked(repo, d); err != nil {
			return st, err
		}
		st.Manifests++
	}
	for b := range ri.blobs {
		d, err := parseDigest(b)
		if err != nil || blobs[b] || young(s.linkPath(repo, d)) {
			continue
		}
		if err := os.Remove(s.linkPath(repo, d)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return st, fmt.Errorf("unlinking blob %s: %w", b, err)
		}
		delete(ri.blobs, b)
		st.Blobs++
		if s.heldLocked(b) {
			continue
		}
		path := s.blobPath(d)
		fi, err := os.Stat(path)
		if err := os.Remove(path); err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				s.log.Warn("registry: removing unreferenced blob", "digest", b, "err", err)
			}
			continue
		}
		st.Files++
		if err == nil {
			st.Bytes += fi.Size()
		}
	}
	if len(ri.manifests) == 0 && len(ri.blobs) == 0 && len(ri.tags) == 0 {
		delete(s.repos, repo)
		dir := filepath.Join(s.manifestDir, filepath.FromSlash(repo))
		os.RemoveAll(filepath.Join(dir, refsDir))
		os.RemoveAll(filepath.Join(dir, linksDir))
		os.Remove(dir) // only if empty: a nested repository may live below
	}
	return st, nil
}

// heldLocked reports whether any repository holds blob d. s.mu is held.
func (s *store) heldLocked(d string) bool {
	if s.public[d] > 0 {
		return true
	}
	for _, ri := range s.repos {
		if _, ok := ri.blobs[d]; ok {
			return true
		}
	}
	return false
}
