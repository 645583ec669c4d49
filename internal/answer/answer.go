// Package answer writes the sidecar's own answers on a fasthttp request:
// JSON, and errors in the JSON shape Direktiv uses on the request's path
// (internal/apierror). It logs the causes of 5xx answers, which the client
// never sees. It imports nothing of the HTTP layer above it.
package answer

import (
	"bytes"
	"log/slog"

	gojson "github.com/goccy/go-json"

	"github.com/valyala/fasthttp"

	"github.com/direktiv/direktiv-authz/internal/apierror"
)

// Writer writes answers; its Log receives the causes of 5xx answers.
type Writer struct {
	Log *slog.Logger
}

// Error answers with the JSON error shape of the request's path.
// Causes that are not the client's to see (store and engine failures) are
// logged, never sent.
func (w Writer) Error(ctx *fasthttp.RequestCtx, err error) {
	ae := apierror.As(err)
	status := ae.Status()
	path, _ := Target(ctx)
	if status >= 500 {
		w.Log.Error("request failed", "method", string(ctx.Method()), "path", string(path), "status", status, "err", ae.Error())
	}
	ctx.Response.Header.SetContentType("application/json")
	ctx.Response.Header.Set("Cache-Control", "no-store")
	ctx.SetStatusCode(status)
	ctx.SetBody(apierror.JSON(make([]byte, 0, 160), path, ae))
}

// JSON answers with v as JSON, byte for byte as json.Marshal encodes
// it. goccy/go-json writes it: within noise of the hand-written encoders it
// replaced on the mint benchmark, with no encoder of our own to keep
// (bench/RESULTS.md, issue 17).
func (w Writer) JSON(ctx *fasthttp.RequestCtx, status int, v any) {
	b, err := gojson.Marshal(v)
	if err != nil {
		status = fasthttp.StatusInternalServerError
		path, _ := Target(ctx)
		b = apierror.JSON(nil, path, &apierror.Error{Code: apierror.Internal, Message: "internal error"})
		b = b[:len(b)-1] // the newline is added below
		w.Log.Error("encode response", "err", err)
	}
	ctx.Response.Header.SetContentType("application/json")
	ctx.Response.Header.Set("Cache-Control", "no-store")
	ctx.SetStatusCode(status)
	ctx.SetBody(append(b, '\n'))
}

// Target is the path and query of the request line, as received:
// what classify.Read reads (fasthttp's URI would read a target such as
// //host/path?x=a://b as a host and a path).
func Target(ctx *fasthttp.RequestCtx) (path, query []byte) {
	path, query, _ = bytes.Cut(ctx.Request.Header.RequestURI(), []byte{'?'})
	return path, query
}
