package sidecar

import (
	"github.com/valyala/fasthttp"

	"github.com/direktiv/direktiv-authz/internal/credential"
	"github.com/direktiv/direktiv-authz/internal/relay"
)

// serverCredential reads the credential of a request the server parsed.
func (a *app) serverCredential(h *fasthttp.RequestHeader) (credential.Credential, error) {
	r := credential.Reader{Admin: a.cfg.AdminToken}
	for name, value := range h.All() {
		if !r.Field(name, value) {
			break
		}
	}
	return r.Result()
}

// loopCredential reads the credential of a request on the event loops.
func (a *app) loopCredential(req *relay.Request) (credential.Credential, error) {
	r := credential.Reader{Admin: a.cfg.AdminToken}
	for name, value := range req.Fields {
		if !r.Field(name, value) {
			break
		}
	}
	return r.Result()
}
