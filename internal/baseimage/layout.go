package baseimage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/match"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Annotations on the descriptors of the OCI layout's index.json.
const (
	// AnnotationRefName is the registry reference ("library/golang:1.23")
	// an image is seeded under.
	AnnotationRefName = "org.opencontainers.image.ref.name"
	// AnnotationImage names the image of Build ("golang") a descriptor is.
	AnnotationImage  = "dev.slipway.base-image"
	annotationRecipe = "dev.slipway.base-image.recipe"
)

// outLayout is the OCI image layout Build writes.
type outLayout struct {
	path layout.Path
	dir  string
}

func openLayout(dir string) (*outLayout, error) {
	p, err := layout.FromPath(dir)
	if err != nil {
		if p, err = layout.Write(dir, empty.Index); err != nil {
			return nil, fmt.Errorf("creating OCI layout %s: %w", dir, err)
		}
	}
	return &outLayout{path: p, dir: dir}, nil
}

// has reports whether the layout holds image name built from recipe key.
func (l *outLayout) has(name, key string) bool {
	ii, err := l.path.ImageIndex()
	if err != nil {
		return false
	}
	im, err := ii.IndexManifest()
	if err != nil {
		return false
	}
	found := false
	for _, d := range im.Manifests {
		if d.Annotations[AnnotationImage] != name {
			continue
		}
		if d.Annotations[annotationRecipe] != key {
			return false
		}
		if _, err := os.Stat(filepath.Join(l.dir, "blobs", d.Digest.Algorithm, d.Digest.Hex)); err != nil {
			return false
		}
		found = true
	}
	return found
}

// write replaces every tag of p's image in the layout.
func (l *outLayout) write(p *prepared) error {
	img, err := p.image()
	if err != nil {
		return fmt.Errorf("assembling %s: %w", p.spec.name, err)
	}
	// Link the cached layers into the layout instead of copying them; the
	// layout then finds them present and skips writing.
	for _, fl := range p.layers {
		dst := filepath.Join(l.dir, "blobs", "sha256", fl.meta.Digest[len("sha256:"):])
		if _, err := os.Stat(dst); err == nil {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := os.Link(fl.path, dst); err != nil {
			_ = os.Remove(dst) // cross-device: the layout copies it
		}
	}
	if err := l.path.RemoveDescriptors(match.Annotation(AnnotationImage, p.spec.name)); err != nil {
		return fmt.Errorf("updating OCI layout: %w", err)
	}
	for _, ref := range p.refs() {
		err := l.path.AppendImage(img, layout.WithAnnotations(map[string]string{
			AnnotationRefName: ref,
			AnnotationImage:   p.spec.name,
			annotationRecipe:  p.key,
		}))
		if err != nil {
			return fmt.Errorf("writing %s to the OCI layout: %w", ref, err)
		}
	}
	return nil
}

// gc removes blobs no image of the layout references any more (images
// replaced by a rebuild).
func (l *outLayout) gc() error {
	keep := map[string]bool{}
	ii, err := l.path.ImageIndex()
	if err != nil {
		return fmt.Errorf("collecting unused blobs: %w", err)
	}
	im, err := ii.IndexManifest()
	if err != nil {
		return fmt.Errorf("collecting unused blobs: %w", err)
	}
	for _, d := range im.Manifests {
		keep[d.Digest.Hex] = true
		img, err := ii.Image(d.Digest)
		if err != nil {
			return fmt.Errorf("collecting unused blobs: %w", err)
		}
		m, err := img.Manifest()
		if err != nil {
			return fmt.Errorf("collecting unused blobs: %w", err)
		}
		keep[m.Config.Digest.Hex] = true
		for _, ld := range m.Layers {
			keep[ld.Digest.Hex] = true
		}
	}
	dir := filepath.Join(l.dir, "blobs", "sha256")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("collecting unused blobs: %w", err)
	}
	for _, e := range entries {
		if !keep[e.Name()] {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return fmt.Errorf("collecting unused blobs: %w", err)
			}
		}
	}
	return nil
}

// image assembles p's OCI image: its layers, and a config like the
// official image's.
func (p *prepared) image() (v1.Image, error) {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	var created v1.Time
	for i, fl := range p.layers {
		created = v1.Time{Time: fl.meta.Created}
		mt, err := fl.MediaType()
		if err != nil {
			return nil, err
		}
		img, err = mutate.Append(img, mutate.Addendum{
			Layer:     fl,
			MediaType: mt,
			History:   v1.History{Created: created, CreatedBy: p.steps[i]},
		})
		if err != nil {
			return nil, err
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Created = created
	cf.Config.Env = append(append([]string{}, p.spec.env...), p.env...)
	cf.Config.Entrypoint = p.spec.entrypoint
	cf.Config.Cmd = p.spec.cmd
	cf.Config.WorkingDir = p.spec.workingDir
	return mutate.ConfigFile(img, cf)
}

// Image is one image of a base-image layout.
type Image struct {
	// Ref is the reference it is seeded under, e.g. "library/golang:1.23".
	Ref string
	// Name is the image of Build it is ("golang"); empty for images of a
	// layout that Build did not write.
	Name  string
	Image v1.Image
}

// Images lists the images of the OCI layout at dir, by the reference in
// each descriptor's org.opencontainers.image.ref.name annotation (those
// without one are skipped), sorted by reference. A missing dir holds none.
func Images(dir string) ([]Image, error) {
	p, err := layout.FromPath(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("opening base images %s: %w", dir, err)
	}
	ii, err := p.ImageIndex()
	if err != nil {
		return nil, fmt.Errorf("opening base images %s: %w", dir, err)
	}
	im, err := ii.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("opening base images %s: %w", dir, err)
	}
	var out []Image
	for _, d := range im.Manifests {
		ref := d.Annotations[AnnotationRefName]
		if ref == "" || !d.MediaType.IsImage() {
			continue
		}
		img, err := ii.Image(d.Digest)
		if err != nil {
			return nil, fmt.Errorf("opening base image %s: %w", ref, err)
		}
		out = append(out, Image{Ref: ref, Name: d.Annotations[AnnotationImage], Image: img})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Ref < out[j].Ref })
	return out, nil
}

// Seed pushes every image of the OCI layout at dir (see Images) with push,
// e.g. (*registry.Registry).Import, and returns the references pushed. A
// missing dir seeds nothing.
func Seed(ctx context.Context, dir string, push func(ctx context.Context, ref string, img v1.Image) error) ([]string, error) {
	imgs, err := Images(dir)
	if err != nil {
		return nil, err
	}
	var refs []string
	for _, im := range imgs {
		if err := ctx.Err(); err != nil {
			return refs, err
		}
		if err := push(ctx, im.Ref, im.Image); err != nil {
			return refs, fmt.Errorf("seeding %s: %w", im.Ref, err)
		}
		refs = append(refs, im.Ref)
	}
	return refs, nil
}
