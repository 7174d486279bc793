package gitserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/slipwayhq/slipway/internal/source"
)

var objectName = regexp.MustCompile(`^([0-9a-f]{40}|[0-9a-f]{64})$`)

// Archive writes the tree of commit sha (a full object name) in repository
// repoDir to w as a gzip-compressed tar in the source package's format: the
// same bytes source.Pack writes for a clean checkout of that commit, so a
// pushed commit and an uploaded checkout of it build the same.
//
// It runs `git archive --format=tar` (which honours export-ignore and
// export-subst attributes), unpacks that with source.Extract into a
// temporary directory beside repoDir (falling back to the system's), and
// packs it with source.Pack, which applies .gitignore and .slipwayignore:
// a file committed despite a .gitignore rule is left out, as an upload
// would leave it out. Submodules are not included. A tree that Extract
// refuses (a symbolic link pointing outside the tree, say) fails with its
// *source.Error, whose message is meant for the user.
func Archive(ctx context.Context, repoDir, sha string, w io.Writer) error {
	if !objectName.MatchString(sha) {
		return fmt.Errorf("archiving %q: not a full commit id", sha)
	}
	bin, err := exec.LookPath("git")
	if err != nil {
		return fmt.Errorf("archiving %s: %w", source.ShortSHA(sha), err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(repoDir), ".archive-")
	if err != nil {
		if tmp, err = os.MkdirTemp("", "slipway-archive-"); err != nil {
			return fmt.Errorf("archiving %s: %w", source.ShortSHA(sha), err)
		}
	}
	defer os.RemoveAll(tmp)
	tree := filepath.Join(tmp, "tree")

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := gitCommand(ctx, bin, repoDir, "archive", "--format=tar.gz", "-1", sha+"^{commit}")
	var stderr bytes.Buffer
	cmd.Stderr = &limitedBuffer{buf: &stderr, max: 4 << 10}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("archiving %s: %w", source.ShortSHA(sha), err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("archiving %s: %w", source.ShortSHA(sha), err)
	}
	_, xerr := source.Extract(out, tree, source.Limits{})
	if xerr != nil {
		cancel() // git may still be writing
	}
	io.Copy(io.Discard, out)
	werr := cmd.Wait()
	var rej *source.Error
	switch {
	case errors.As(xerr, &rej) && rej.Kind != source.KindInvalid:
		// The tree's fault (e.g. a link out of it), not git's.
		return fmt.Errorf("archiving %s: %w", source.ShortSHA(sha), rej)
	case werr != nil:
		// git's failure (an unknown commit) explains more than the
		// truncated archive it caused.
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = werr.Error()
		}
		return fmt.Errorf("archiving %s: git archive: %s", source.ShortSHA(sha), msg)
	case xerr != nil:
		return fmt.Errorf("archiving %s: %w", source.ShortSHA(sha), xerr)
	}
	if err := source.Pack(tree, w); err != nil {
		return fmt.Errorf("archiving %s: %w", source.ShortSHA(sha), err)
	}
	return nil
}
