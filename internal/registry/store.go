package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

// store keeps the registry's content on disk and an index of it in memory.
// Layout under the registry directory:
//
//	blobs/<alg>/<hex>                                   blob content, stored once
//	uploads/<id>                                        upload sessions (cleared at start)
//	manifests/<repo>/_manifests/<tag or digest>.json    a manifest and its content type
//	manifests/<repo>/_blobs/<alg>/<hex>                 empty: the blob is in the repository
//
// Blobs are stored once but belong to repositories: a blob is in a
// repository once uploaded, mounted or imported into it, and a manifest may
// reference only blobs of its own repository, so knowing a digest never
// lets a client read another repository's content. Repository path
// components cannot start with "_", so neither directory collides with a
// nested repository. The blobs of public (library/) repositories, which
// anyone may pull anyway, are in every repository: a build's push finds
// its base image's layers in its own repository and does not send them
// again. Manifest bodies stay on disk; the index holds what routing, tag
// lists and the referrers API need.
type store struct {
	blobDir, uploadDir, manifestDir string
	log                             *slog.Logger

	mu     sync.RWMutex
	repos  map[string]*repoIndex
	public map[string]int // digest → how many public repositories hold it
}

type repoIndex struct {
	tags      map[string]string              // tag → manifest digest
	manifests map[string]*manifestInfo       // digest → manifest
	blobs     map[string]struct{}            // the blobs in the repository
	referrers map[string]map[string]struct{} // subject digest → digests of manifests naming it
}

// manifestInfo is what the index knows of a stored manifest.
type manifestInfo struct {
	digest       string
	mediaType    string
	size         int64
	subject      string            // the subject's digest, if any
	artifactType string            // for the referrers API
	annotations  map[string]string // kept only for manifests with a subject
}

// storedManifest is the file of one tag or digest of a repository.
type storedManifest struct {
	ContentType string `json:"contentType"`
	Digest      string `json:"digest"`
	Manifest    []byte `json:"manifest"`
}

const (
	refsDir  = "_manifests"
	linksDir = "_blobs"
)

var (
	errBlobUnknown     = errors.New("blob unknown to registry")
	errManifestUnknown = errors.New("manifest unknown to registry")
	errNameUnknown     = errors.New("repository name not known to registry")
)

// openStore opens the store in dir, creating it if needed, and indexes
// what it holds. Upload sessions do not survive a restart: their files
// are removed.
func openStore(dir string, log *slog.Logger) (*store, error) {
	s := &store{
		blobDir:     filepath.Join(dir, "blobs"),
		uploadDir:   filepath.Join(dir, "uploads"),
		manifestDir: filepath.Join(dir, "manifests"),
		log:         log,
		repos:       map[string]*repoIndex{},
		public:      map[string]int{},
	}
	if err := os.RemoveAll(s.uploadDir); err != nil {
		return nil, fmt.Errorf("clearing registry uploads: %w", err)
	}
	for _, d := range []string{s.blobDir, s.uploadDir, s.manifestDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("creating registry directory: %w", err)
		}
	}
	if err := s.restore(); err != nil {
		return nil, err
	}
	return s, nil
}

// repo returns name's index, creating it. s.mu must be held for writing.
func (s *store) repo(name string) *repoIndex {
	ri := s.repos[name]
	if ri == nil {
		ri = &repoIndex{
			tags:      map[string]string{},
			manifests: map[string]*manifestInfo{},
			blobs:     map[string]struct{}{},
			referrers: map[string]map[string]struct{}{},
		}
		s.repos[name] = ri
	}
	return ri
}

func (s *store) blobPath(d digest) string { return filepath.Join(s.blobDir, d.alg, d.hex) }

func (s *store) linkPath(repo string, d digest) string {
	return filepath.Join(s.manifestDir, filepath.FromSlash(repo), linksDir, d.alg, d.hex)
}

func (s *store) refPath(repo, ref string) string {
	return filepath.Join(s.manifestDir, filepath.FromSlash(repo), refsDir, ref+".json")
}

// hasBlob reports whether d is in repo.
func (s *store) hasBlob(repo string, d digest) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.hasBlobLocked(repo, d.String())
}

// hasBlobLocked reports whether d is in repo: put there, or public. s.mu
// is held.
func (s *store) hasBlobLocked(repo, d string) bool {
	if s.public[d] > 0 {
		return true
	}
	ri := s.repos[repo]
	if ri == nil {
		return false
	}
	_, ok := ri.blobs[d]
	return ok
}

// addLink records d in repo's index. s.mu is held for writing.
func (s *store) addLink(repo, d string) {
	ri := s.repo(repo)
	if _, ok := ri.blobs[d]; ok {
		return
	}
	ri.blobs[d] = struct{}{}
	if publicRepo(repo) {
		s.public[d]++
	}
}

// holders returns the repositories d was put in.
func (s *store) holders(d digest) []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []string
	for name, ri := range s.repos {
		if _, ok := ri.blobs[d.String()]; ok {
			out = append(out, name)
		}
	}
	return out
}

// openBlob opens d's content if d is in repo.
func (s *store) openBlob(repo string, d digest) (*os.File, error) {
	if !s.hasBlob(repo, d) {
		return nil, errBlobUnknown
	}
	f, err := os.Open(s.blobPath(d))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errBlobUnknown
	}
	return f, err
}

// commitBlob stores the file tmp, whose content has been verified to be d,
// as d's content (dropping it when d is stored already), and puts d in
// repo.
func (s *store) commitBlob(repo string, d digest, tmp string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	dst := s.blobPath(d)
	if _, err := os.Stat(dst); err == nil {
		os.Remove(tmp)
	} else {
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("storing blob %s: %w", d, err)
		}
		if err := os.Rename(tmp, dst); err != nil {
			return fmt.Errorf("storing blob %s: %w", d, err)
		}
	}
	return s.linkLocked(repo, d)
}

// mountBlob puts d, stored already, in repo.
func (s *store) mountBlob(repo string, d digest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := os.Stat(s.blobPath(d)); err != nil {
		return errBlobUnknown
	}
	return s.linkLocked(repo, d)
}

// blobStored reports whether d's content is stored, in any repository.
func (s *store) blobStored(d digest) bool {
	_, err := os.Stat(s.blobPath(d))
	return err == nil
}

func (s *store) linkLocked(repo string, d digest) error {
	ri := s.repo(repo)
	if _, ok := ri.blobs[d.String()]; ok {
		return nil
	}
	p := s.linkPath(repo, d)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("linking blob %s into %s: %w", d, repo, err)
	}
	f, err := os.Create(p)
	if err != nil {
		return fmt.Errorf("linking blob %s into %s: %w", d, repo, err)
	}
	f.Close()
	s.addLink(repo, d.String())
	return nil
}

// deleteBlob removes d from repo, and its content once no repository
// holds it.
func (s *store) deleteBlob(repo string, d digest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ri := s.repos[repo]
	if ri == nil {
		return errBlobUnknown
	}
	if _, ok := ri.blobs[d.String()]; !ok {
		return errBlobUnknown
	}
	if err := os.Remove(s.linkPath(repo, d)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("unlinking blob %s: %w", d, err)
	}
	delete(ri.blobs, d.String())
	if publicRepo(repo) {
		if s.public[d.String()]--; s.public[d.String()] <= 0 {
			delete(s.public, d.String())
		}
	}
	for _, other := range s.repos {
		if _, ok := other.blobs[d.String()]; ok {
			return nil
		}
	}
	if err := os.Remove(s.blobPath(d)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Warn("registry: removing unreferenced blob", "digest", d.String(), "err", err)
	}
	return nil
}

// manifest returns the manifest ref (a tag or a digest) names in repo.
func (s *store) manifest(repo, ref string) (*manifestInfo, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ri := s.repos[repo]
	if ri == nil {
		return nil, errManifestUnknown
	}
	if d, ok := ri.tags[ref]; ok {
		ref = d
	}
	m := ri.manifests[ref]
	if m == nil {
		return nil, errManifestUnknown
	}
	return m, nil
}

// readManifest returns m's body.
func (s *store) readManifest(repo string, m *manifestInfo) ([]byte, error) {
	b, err := os.ReadFile(s.refPath(repo, m.digest))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errManifestUnknown // deleted meanwhile
	}
	if err != nil {
		return nil, err
	}
	var sm storedManifest
	if err := json.Unmarshal(b, &sm); err != nil {
		return nil, fmt.Errorf("reading stored manifest %s: %w", m.digest, err)
	}
	return sm.Manifest, nil
}

// manifestPut is a manifest to store.
type manifestPut struct {
	repo     string
	tag      string // empty when pushed by digest
	info     manifestInfo
	body     []byte
	blobs    []string // digests that must be blobs of the repository
	children []string // digests that must be manifests of the repository
}

// putManifest stores p unless some of the blobs or manifests it references
// are not in its repository, which it then returns.
func (s *store) putManifest(p manifestPut) (missing []string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ri := s.repos[p.repo]
	for _, d := range p.blobs {
		if !s.hasBlobLocked(p.repo, d) {
			missing = append(missing, d)
		}
	}
	for _, d := range p.children {
		if ri == nil || ri.manifests[d] == nil {
			missing = append(missing, d)
		}
	}
	if len(missing) > 0 {
		return missing, nil
	}
	sm := storedManifest{ContentType: p.info.mediaType, Digest: p.info.digest, Manifest: p.body}
	if err := s.writeRef(p.repo, p.info.digest, sm); err != nil {
		return nil, err
	}
	if p.tag != "" {
		if err := s.writeRef(p.repo, p.tag, sm); err != nil {
			return nil, err
		}
	}
	s.indexLocked(p.repo, p.tag, p.info)
	return nil, nil
}

// indexLocked records info (and tag, if any) in repo's index.
func (s *store) indexLocked(repo, tag string, info manifestInfo) {
	ri := s.repo(repo)
	m := info
	if old := ri.manifests[m.digest]; old != nil && old.subject != "" && old.subject != m.subject {
		delete(ri.referrers[old.subject], m.digest)
	}
	ri.manifests[m.digest] = &m
	if tag != "" {
		ri.tags[tag] = m.digest
	}
	if m.subject != "" {
		set := ri.referrers[m.subject]
		if set == nil {
			set = map[string]struct{}{}
			ri.referrers[m.subject] = set
		}
		set[m.digest] = struct{}{}
	}
}

// deleteManifest deletes a tag, or a manifest and every tag naming it.
func (s *store) deleteManifest(repo, ref string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.deleteManifestLocked(repo, ref)
}

// deleteManifestLocked is deleteManifest with s.mu held for writing.
func (s *store) deleteManifestLocked(repo, ref string) error {
	ri := s.repos[repo]
	if ri == nil {
		return errNameUnknown
	}
	if !isDigest(ref) {
		if _, ok := ri.tags[ref]; !ok {
			return errManifestUnknown
		}
		if err := removeFile(s.refPath(repo, ref)); err != nil {
			return err
		}
		delete(ri.tags, ref)
		return nil
	}
	m := ri.manifests[ref]
	if m == nil {
		return errManifestUnknown
	}
	for tag, d := range ri.tags {
		if d != ref {
			continue
		}
		if err := removeFile(s.refPath(repo, tag)); err != nil {
			return err
		}
		delete(ri.tags, tag)
	}
	if err := removeFile(s.refPath(repo, ref)); err != nil {
		return err
	}
	delete(ri.manifests, ref)
	if m.subject != "" {
		delete(ri.referrers[m.subject], ref)
		if len(ri.referrers[m.subject]) == 0 {
			delete(ri.referrers, m.subject)
		}
	}
	return nil
}

// tags returns repo's tags in lexical order.
func (s *store) tags(repo string) ([]string, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ri := s.repos[repo]
	if ri == nil {
		return nil, errNameUnknown
	}
	tags := make([]string, 0, len(ri.tags))
	for t := range ri.tags {
		tags = append(tags, t)
	}
	slices.SortFunc(tags, compareLexical)
	return tags, nil
}

// repositories returns the repositories' names in lexical order.
func (s *store) repositories() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	names := make([]string, 0, len(s.repos))
	for n := range s.repos {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// referrers returns the manifests of repo whose subject is subject,
// ordered by digest.
func (s *store) referrers(repo, subject string) []manifestInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ri := s.repos[repo]
	if ri == nil {
		return nil
	}
	var out []manifestInfo
	for d := range ri.referrers[subject] {
		if m := ri.manifests[d]; m != nil {
			out = append(out, *m)
		}
	}
	slices.SortFunc(out, func(a, b manifestInfo) int { return strings.Compare(a.digest, b.digest) })
	return out
}

// compareLexical orders tags case-insensitively, as the spec asks, and
// byte-wise between tags that differ only in case, so the order is total.
func compareLexical(a, b string) int {
	if c := strings.Compare(strings.ToLower(a), strings.ToLower(b)); c != 0 {
		return c
	}
	return strings.Compare(a, b)
}

// writeRef stores m as repo's ref atomically (temporary file, fsync, rename).
func (s *store) writeRef(repo, ref string, m storedManifest) error {
	path := s.refPath(repo, ref)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("creating manifest directory: %w", err)
	}
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encoding manifest: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("writing manifest: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("writing manifest: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("syncing manifest: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing manifest: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("writing manifest: %w", err)
	}
	return nil
}

func removeFile(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing %s: %w", filepath.Base(path), err)
	}
	return nil
}

// restore indexes what the directory holds. Two kinds of data written by
// earlier versions are carried over: a repository without a _blobs
// directory gets the blobs its image manifests reference, and a tag whose
// digest file is missing (the old registry deleted a digest but kept its
// tags) restores that manifest.
func (s *store) restore() error {
	type ref struct {
		repo, target string
		m            storedManifest
		doc          *parsedManifest
	}
	var refs []ref
	hasLinks := map[string]bool{}
	err := filepath.WalkDir(s.manifestDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() || (d.Name() != refsDir && d.Name() != linksDir) {
			return nil
		}
		rel, err := filepath.Rel(s.manifestDir, filepath.Dir(path))
		if err != nil {
			return err
		}
		repo := filepath.ToSlash(rel)
		if !validRepo(repo) {
			s.log.Warn("registry: ignoring stored repository with an invalid name", "path", path)
			return filepath.SkipDir
		}
		if d.Name() == linksDir {
			hasLinks[repo] = true
			s.restoreLinks(repo, path)
			return filepath.SkipDir
		}
		entries, err := os.ReadDir(path)
		if err != nil {
			return err
		}
		for _, e := range entries {
			target, ok := strings.CutSuffix(e.Name(), ".json")
			if !ok || e.IsDir() {
				continue
			}
			p := filepath.Join(path, e.Name())
			if !validReference(target) {
				s.log.Warn("registry: ignoring stored manifest with an invalid name", "path", p)
				continue
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return fmt.Errorf("reading stored manifest: %w", err)
			}
			var m storedManifest
			if err := json.Unmarshal(b, &m); err != nil {
				s.log.Warn("registry: ignoring corrupt stored manifest", "path", p, "err", err)
				continue
			}
			doc, err := parseManifest(m.Manifest, m.ContentType)
			d, derr := parseDigest(m.Digest)
			if err != nil || derr != nil || digestOf(d.alg, m.Manifest) != d || (isDigest(target) && target != m.Digest) {
				s.log.Warn("registry: ignoring stored manifest that does not match its digest", "path", p)
				continue
			}
			refs = append(refs, ref{repo, target, m, doc})
		}
		return filepath.SkipDir
	})
	if err != nil {
		return fmt.Errorf("restoring manifests: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Digests first, so that tags find their manifests.
	slices.SortStableFunc(refs, func(a, b ref) int {
		ad, bd := isDigest(a.target), isDigest(b.target)
		switch {
		case ad && !bd:
			return -1
		case bd && !ad:
			return 1
		}
		return 0
	})
	for _, r := range refs {
		info := r.doc.info(r.m.Digest, r.m.ContentType, int64(len(r.m.Manifest)))
		if !isDigest(r.target) {
			if ri := s.repos[r.repo]; ri == nil || ri.manifests[r.m.Digest] == nil {
				if err := s.writeRef(r.repo, r.m.Digest, r.m); err != nil {
					return err
				}
				s.indexLocked(r.repo, "", info)
			}
			s.indexLocked(r.repo, r.target, info)
		} else {
			s.indexLocked(r.repo, "", info)
		}
		if !hasLinks[r.repo] {
			for _, b := range r.doc.blobs {
				if d, err := parseDigest(b); err == nil && s.blobStored(d) {
					if err := s.linkLocked(r.repo, d); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}

// restoreLinks indexes the blobs listed under dir (a repository's _blobs).
func (s *store) restoreLinks(repo, dir string) {
	s.repo(repo)
	algs, _ := os.ReadDir(dir)
	for _, a := range algs {
		entries, _ := os.ReadDir(filepath.Join(dir, a.Name()))
		for _, e := range entries {
			if d, err := parseDigest(a.Name() + ":" + e.Name()); err == nil {
				s.addLink(repo, d.String())
			}
		}
	}
}
