package buildkit

import (
	"context"

	"github.com/moby/buildkit/session/auth"
	"google.golang.org/grpc"
)

// Credential is what BuildKit presents to a registry with HTTP basic auth
// (or exchanges for a bearer token when the registry asks for one).
type Credential struct {
	// Username is the basic-auth user. If empty, "slipway".
	Username string
	// Secret is the password or token.
	Secret string
}

// authProvider answers BuildKit's session auth requests from a fixed map of
// registry hosts. It is a session.Attachable.
type authProvider struct {
	auth.UnimplementedAuthServer
	creds map[string]Credential
}

func (p *authProvider) Register(s *grpc.Server) { auth.RegisterAuthServer(s, p) }

// Credentials returns the credential for req.Host, or empty ones (anonymous
// access) for any other host.
func (p *authProvider) Credentials(_ context.Context, req *auth.CredentialsRequest) (*auth.CredentialsResponse, error) {
	c, ok := p.creds[req.Host]
	if !ok || c.Secret == "" {
		return &auth.CredentialsResponse{}, nil
	}
	user := c.Username
	if user == "" {
		user = "slipway"
	}
	return &auth.CredentialsResponse{Username: user, Secret: c.Secret}, nil
}

// FetchToken, GetTokenAuthority and VerifyTokenAuthority stay unimplemented:
// BuildKit then fetches bearer tokens itself with the basic credentials.

// with returns a provider that answers for the hosts of passwords with
// them (user "slipway") and for the others as p does.
func (p *authProvider) with(passwords map[string]string) *authProvider {
	if len(passwords) == 0 {
		return p
	}
	creds := make(map[string]Credential, len(p.creds)+len(passwords))
	for h, c := range p.creds {
		creds[h] = c
	}
	for h, pw := range passwords {
		creds[h] = Credential{Secret: pw}
	}
	return &authProvider{creds: creds}
}
