package forward

import (
	"encoding/json"
	"io"
	"net/url"

	"github.com/valyala/fasthttp"

	"github.com/direktiv/direktiv-authz/engine"
	"github.com/direktiv/direktiv-authz/internal/apierror"
	"github.com/direktiv/direktiv-authz/internal/authz"
)

// What the sidecar does beyond forwarding, where the rules mark a route
// (engine.RouteDecision.Lookups and Transform), so that Direktiv's own web
// UI works with a namespace token and a namespace token stays in its
// namespace where Direktiv does not keep it there.

// maxLookupAnswer bounds an upstream answer the sidecar reads whole (a
// lookup, GET /api/v2/status, the namespace list).
const maxLookupAnswer = 4 << 20

// fetch sends GET path (already escaped) to the upstream with the upstream
// API key and returns the status and the whole body. Errors are the
// proxy's (apierror.BadGateway, apierror.GatewayTimeout, apierror.Unavailable).
func (p *Proxy) fetch(path string) (int, []byte, error) {
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	req.Header.SetMethod(fasthttp.MethodGet)
	req.SetRequestURI(p.base + path)
	req.Header.Set(fasthttp.HeaderAccept, "application/json")
	if p.key != "" {
		req.Header.Set(p.keyHeader, p.key)
	}
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	if err := p.client.Do(req, resp); err != nil {
		return 0, nil, p.upstreamError(err)
	}
	body, err := readWhole(resp)
	return resp.StatusCode(), body, err
}

// readWhole reads resp's body, streamed or not, up to maxLookupAnswer.
func readWhole(resp *fasthttp.Response) ([]byte, error) {
	stream := resp.BodyStream()
	if stream == nil {
		return append([]byte(nil), resp.Body()...), nil
	}
	defer resp.CloseBodyStream()
	body, err := io.ReadAll(io.LimitReader(stream, maxLookupAnswer+1))
	switch {
	case err != nil:
		return nil, &apierror.Error{Code: apierror.BadGateway, Message: "the Direktiv API broke off its answer; try again later", Err: err}
	case len(body) > maxLookupAnswer:
		return nil, apierror.Errorf(apierror.BadGateway, "the Direktiv API's answer exceeds %d bytes, more than the sidecar reads to check it", maxLookupAnswer)
	}
	return body, nil
}

// checkLookups checks that every object the rules named (d.Route.Lookups)
// belongs to the namespace of the route, asking the upstream with the
// upstream API key. Direktiv v0.10 looks variables (and events and event
// listeners) up by id alone: without this a token of ns1 reads ns2's
// variable through /api/v2/namespaces/ns1/variables/{id}. It returns
// apierror.NotFound for an object that is not the namespace's (or does not
// exist: either way the token cannot see it), the proxy's errors when the
// upstream cannot answer, and apierror.BadGateway for an answer it cannot read.
func (f *Forwarder) checkLookups(d authz.Decision) error {
	ns := d.Route.Namespace
	for _, l := range d.Route.Lookups {
		ok, err := f.belongs(ns, l)
		if err != nil {
			return err
		}
		if !ok {
			return apierror.Errorf(apierror.NotFound, "%s %s is not found in namespace %s", l.Kind, l.ID, ns)
		}
	}
	return nil
}

// belongs reports whether the object l is of namespace ns.
func (f *Forwarder) belongs(ns string, l engine.Lookup) (bool, error) {
	base := "/api/v2/namespaces/" + url.PathEscape(ns)
	id := url.PathEscape(l.ID)
	switch l.Kind {
	case engine.LookupVariable:
		var v struct {
			ID        string `json:"id"`
			Type      string `json:"type"`
			Reference string `json:"reference"`
		}
		if found, err := f.lookup(base+"/variables/"+id, l, &v); !found || err != nil {
			return false, err
		}
		switch v.Type {
		case "namespace-variable":
			return v.Reference == ns, nil
		case "instance-variable":
			return f.belongs(ns, engine.Lookup{Kind: engine.LookupInstance, ID: v.Reference})
		case "workflow-variable":
			// The workflow's variables as Direktiv lists them within ns.
			var list []struct {
				ID string `json:"id"`
			}
			if found, err := f.lookup(base+"/variables?workflowPath="+url.QueryEscape(v.Reference), l, &list); !found || err != nil {
				return false, err
			}
			for _, e := range list {
				if e.ID == v.ID {
					return true, nil
				}
			}
			return false, nil
		}
		return false, apierror.Errorf(apierror.BadGateway, "the Direktiv API answered a variable of type %q, which the sidecar does not know; it cannot check which namespace the variable belongs to", v.Type)
	case engine.LookupInstance:
		// Direktiv looks instances up within the path's namespace.
		var v struct {
			ID string `json:"id"`
		}
		return f.lookup(base+"/instances/"+id, l, &v)
	case engine.LookupEvent, engine.LookupListener:
		path := base + "/events/history/" + id
		if l.Kind == engine.LookupListener {
			path = base + "/events/listeners/" + id
		}
		var v struct {
			Namespace string `json:"namespace"`
		}
		if found, err := f.lookup(path, l, &v); !found || err != nil {
			return false, err
		}
		return v.Namespace == ns, nil
	}
	// A kind edited into the rules that the sidecar does not know.
	return false, apierror.Errorf(apierror.Forbidden, "the route rules ask to check a %s, which the sidecar cannot; the request is refused", l.Kind)
}

// lookup GETs path from the upstream and decodes the data of its
// {"data": ...} answer into v. found is false when Direktiv answers 404.
func (f *Forwarder) lookup(path string, l engine.Lookup, v any) (found bool, err error) {
	status, body, err := f.Proxy.fetch(path)
	switch {
	case err != nil:
		return false, err
	case status == fasthttp.StatusNotFound:
		return false, nil
	case status != fasthttp.StatusOK:
		return false, apierror.Errorf(apierror.BadGateway, "the Direktiv API answered %d when the sidecar checked the namespace of %s %s; nothing was done", status, l.Kind, l.ID)
	}
	var answer struct {
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &answer); err != nil || len(answer.Data) == 0 {
		return false, apierror.Errorf(apierror.BadGateway, "the Direktiv API's answer to the sidecar's check of %s %s is not {\"data\": ...}; nothing was done", l.Kind, l.ID)
	}
	if err := json.Unmarshal(answer.Data, v); err != nil {
		return false, apierror.Errorf(apierror.BadGateway, "the Direktiv API's answer to the sidecar's check of %s %s has an unexpected shape; nothing was done", l.Kind, l.ID)
	}
	return true, nil
}

// forwardTransformed forwards a request whose answer the sidecar reads and
// rewrites (d.Route.Transform):
//
//   - TransformStatus (GET /api/v2/status): requiresAuth is true, so that
//     Direktiv's web UI asks for a key;
//   - TransformNamespaceList (GET /api/v2/namespaces) for a namespace
//     token: the list holds only the token's namespace (the admin sees
//     Direktiv's list as it is).
//
// An answer that is not a 200 of the expected shape is passed on as it is.
func (f *Forwarder) forwardTransformed(ctx *fasthttp.RequestCtx, d authz.Decision) error {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	f.Proxy.prepare(ctx, req, d)
	// An answer the sidecar reads and rewrites must not come compressed.
	req.Header.Del(fasthttp.HeaderAcceptEncoding)
	if err := f.Proxy.client.Do(req, resp); err != nil {
		return f.Proxy.upstreamError(err)
	}
	body, err := readWhole(resp)
	if err != nil {
		return err
	}
	if resp.StatusCode() == fasthttp.StatusOK {
		switch {
		case d.Route.Transform == engine.TransformStatus:
			if b, ok := rewriteData(body, func(data json.RawMessage) (json.RawMessage, bool) {
				var status map[string]json.RawMessage
				if json.Unmarshal(data, &status) != nil || status == nil {
					return nil, false
				}
				status["requiresAuth"] = json.RawMessage("true")
				b, err := json.Marshal(status)
				return b, err == nil
			}); ok {
				body = b
			}
		case d.Route.Transform == engine.TransformNamespaceList && !d.Who.Admin && d.Who.Token.Namespace != "":
			ns := d.Who.Token.Namespace
			b, ok := rewriteData(body, func(data json.RawMessage) (json.RawMessage, bool) {
				var list []json.RawMessage
				if json.Unmarshal(data, &list) != nil {
					return nil, false
				}
				kept := make([]json.RawMessage, 0, 1)
				for _, e := range list {
					var item struct {
						Name string `json:"name"`
					}
					if json.Unmarshal(e, &item) == nil && item.Name == ns {
						kept = append(kept, e)
					}
				}
				b, err := json.Marshal(kept)
				return b, err == nil
			})
			if !ok {
				// Never Direktiv's whole list to a namespace token.
				return apierror.Errorf(apierror.BadGateway, "the Direktiv API's namespace list could not be read to keep only this token's namespace; nothing is shown")
			}
			body = b
		}
	}
	f.Proxy.copyResponseHeader(ctx, resp)
	ctx.Response.Header.Del(fasthttp.HeaderContentLength)
	ctx.SetBody(body)
	return nil
}

// rewriteData replaces the "data" member of a {"data": ...} answer by what
// edit makes of it, keeping the other members ("meta"). ok is false when
// body is not such an answer or edit declines.
func rewriteData(body []byte, edit func(json.RawMessage) (json.RawMessage, bool)) ([]byte, bool) {
	var answer map[string]json.RawMessage
	if err := json.Unmarshal(body, &answer); err != nil || answer["data"] == nil {
		return nil, false
	}
	data, ok := edit(answer["data"])
	if !ok {
		return nil, false
	}
	answer["data"] = data
	out, err := json.Marshal(answer)
	if err != nil {
		return nil, false
	}
	return append(out, '\n'), true
}
