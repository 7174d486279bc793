// Package nogitsign takes the place of BuildKit's git signature
// verification (github.com/moby/buildkit/util/gitutil/gitsign) in the
// buildkitd that scripts/install-buildkit.sh builds, as package nocache
// does for the cache backends: the script replaces that package's files
// with this one, its package clause renamed. Git sources still work; a
// build that asks BuildKit to verify a commit's or tag's signature is
// refused with errNotBuiltIn. Slipway never asks for it, and leaving it
// out leaves out the OpenPGP, SSH-signature and post-quantum crypto
// modules it needs (46 packages) from the first run's compile.
//
// Its declarations are those BuildKit's git source uses; compiling this
// package (go build ./..., go vet) checks them against go.mod's BuildKit.
package nogitsign

import (
	"errors"

	"github.com/moby/buildkit/util/gitutil/gitobject"
)

var errNotBuiltIn = errors.New("verifying git signatures is not built into Slipway's buildkitd " +
	"(see scripts/install-buildkit.sh)")

// VerifyPolicy is the policy a verification would follow.
type VerifyPolicy struct {
	RejectExpiredKeys bool
}

// VerifySignature refuses every verification.
func VerifySignature(obj *gitobject.GitObject, pubKeyData []byte, policy *VerifyPolicy) error {
	return errNotBuiltIn
}
