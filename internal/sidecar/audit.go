package sidecar

import (
	"time"

	"github.com/valyala/fasthttp"

	"github.com/direktiv/direktiv-authz/internal/audit"
)

// audit writes one audit line.
func (a *app) audit(ctx *fasthttp.RequestCtx, e audit.Event) {
	if a.audits == nil {
		return
	}
	a.audits.Write(time.Now(), e, ctx.RemoteAddr().String(), a.engine.Revision())
}
