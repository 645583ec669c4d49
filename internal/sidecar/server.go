package sidecar

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/direktiv/direktiv-authz/internal/apierror"
	"github.com/direktiv/direktiv-authz/internal/classify"
	"github.com/direktiv/direktiv-authz/internal/framing"
	"github.com/direktiv/direktiv-authz/internal/tokens"
)

func (a *app) newServer() *fasthttp.Server {
	return &fasthttp.Server{
		Handler:     a.handle,
		Name:        "direktiv-authz",
		Logger:      fasthttpLogger{a.log},
		ReadTimeout: 5 * time.Minute,
		IdleTimeout: 2 * time.Minute,
		// Requests are routed and forwarded on the target as received
		// (Header.RequestURI(), see classify); fasthttp's URI, which
		// normalizes and reads //x/... as a host, is never read.
		// Bodies above the mint limit are streamed, never buffered whole.
		StreamRequestBody:            true,
		MaxRequestBodySize:           tokens.BodyLimit,
		DisablePreParseMultipartForm: true,
		NoDefaultServerHeader:        true,
		NoDefaultContentType:         true,
		CloseOnShutdown:              true,
		// fasthttp's own error lines never quote a request: its headers
		// may carry a secret.
		SecureErrorLogMessage: true,
		ErrorHandler:          a.readError,
	}
}

// framingOptions put the framing check (internal/framing) on every
// connection the server reads: requests Go's net/http would refuse or read
// differently never reach the handler.
func (a *app) framingOptions() framing.Options {
	return framing.Options{Answer: a.framingAnswer}
}

// framingAnswer is the whole response to a request refused before the
// server read it. Its path is not known to be well formed: the answer has
// the v2 shape.
func (a *app) framingAnswer(e *framing.Error) []byte {
	var r fasthttp.Response
	r.SetStatusCode(e.Status)
	r.Header.SetServer(a.server.Name)
	r.Header.SetContentType("application/json")
	r.Header.Set("Cache-Control", "no-store")
	r.SetConnectionClose()
	r.SetBody(apierror.JSON(nil, nil, apierror.FromFraming(e)))
	var b bytes.Buffer
	r.WriteTo(&b)
	return b.Bytes()
}

// readError answers a request the server could not read: refused by the
// framing check, a head larger than the read buffer, or too slow.
func (a *app) readError(ctx *fasthttp.RequestCtx, err error) {
	var small *fasthttp.ErrSmallBuffer
	var ne net.Error
	switch fe := framing.Failed(ctx.Conn()); {
	case fe != nil:
		a.answers.Error(ctx, apierror.FromFraming(fe))
	case errors.As(err, &small):
		a.answers.Error(ctx, apierror.Errorf(apierror.HeaderTooLarge, "malformed request: request header fields too large"))
	case errors.As(err, &ne) && ne.Timeout():
		a.answers.Error(ctx, apierror.Errorf(apierror.RequestTimeout, "the request did not arrive in time"))
	default:
		a.answers.Error(ctx, apierror.Errorf(apierror.BadRequest, "malformed request"))
	}
}

// handle serves a request as classify reads it: the token endpoints under
// /api/namespaces/{ns}/auth/ are the sidecar's own; everything else is
// authorized and forwarded. The answer is counted under the family
// classify read.
func (a *app) handle(ctx *fasthttp.RequestCtx) {
	r, err := classify.Read(ctx.Method(), ctx.Request.Header.RequestURI())
	switch {
	case err != nil:
		a.answers.Error(ctx, err)
	case r.Own:
		a.tokens.Serve(ctx, r)
	default:
		a.forward.Forward(ctx, r)
	}
	a.metrics.Request(r.Family, ctx.Response.StatusCode())
}

// fasthttpLogger sends fasthttp's own messages to slog.
type fasthttpLogger struct {
	log interface{ Warn(string, ...any) }
}

func (l fasthttpLogger) Printf(format string, args ...any) {
	l.log.Warn(fmt.Sprintf(format, args...), "component", "fasthttp")
}
