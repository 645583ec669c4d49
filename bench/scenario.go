//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
)

// The scenarios the generator knows. mixed blends mint, forward and pass.
var scenarios = []string{"mint", "forward", "pass", "direct", "mixed"}

// mintBody is a realistic mint request: what a CI job asks for.
const mintBody = `{"description":"bench","policies":["workflowView","instancesView"],"expires":"PT1H"}`

// callerBody mints the bench's caller: a token that may mint (it holds
// permissionsManage) and read what the forward scenario reads.
const callerBody = `{"description":"bench caller","policies":["permissionsManage","workflowView","instancesView"],"expires":"P1D"}`

// scenarioConfig is what the scenarios need to build their requests.
type scenarioConfig struct {
	ns          string
	token       string // a minted token: forward's caller, and mint's when mintAs is "token"
	adminToken  string
	mintAs      string // "token" or "admin"
	upstreamKey string // Direktiv-Api-Key sent straight to the upstream (direct); "" for none
	forwardPath string // "" means /api/v2/namespaces/{ns}/instances
	passPath    string
	mix         map[string]int
}

func (c scenarioConfig) forwardURI() string {
	if c.forwardPath != "" {
		return c.forwardPath
	}
	return "/api/v2/namespaces/" + c.ns + "/instances"
}

// needsToken reports whether a scenario sends a minted token.
func (c scenarioConfig) needsToken(scenario string) bool {
	switch scenario {
	case "forward":
		return true
	case "mint":
		return c.mintAs == "token"
	case "mixed":
		return c.mix["forward"] > 0 || (c.mix["mint"] > 0 && c.mintAs == "token")
	}
	return false
}

// kinds builds the requests of a scenario.
func (c scenarioConfig) kinds(scenario string) ([]kind, error) {
	switch scenario {
	case "mint":
		tok := c.token
		if c.mintAs == "admin" {
			tok = c.adminToken
		}
		if tok == "" {
			return nil, fmt.Errorf("scenario mint as %s: no %s token (set -token or -admin-token)", c.mintAs, c.mintAs)
		}
		return []kind{{name: "mint", weight: 1, method: "POST", uri: "/api/namespaces/" + c.ns + "/auth/token", token: tok,
			body: []byte(mintBody), expect: 201, want: []byte(`"token":"`)}}, nil
	case "forward":
		if c.token == "" {
			return nil, fmt.Errorf("scenario forward: no minted token (set -token, or -admin-token to mint one)")
		}
		return []kind{{name: "forward", weight: 1, method: "GET", uri: c.forwardURI(), token: c.token, expect: 200}}, nil
	case "pass":
		return []kind{{name: "pass", weight: 1, method: "GET", uri: c.passPath, expect: 200}}, nil
	case "direct":
		return []kind{{name: "direct", weight: 1, method: "GET", uri: c.forwardURI(), token: c.upstreamKey, expect: 200}}, nil
	case "mixed":
		names := make([]string, 0, len(c.mix))
		for name := range c.mix {
			names = append(names, name)
		}
		sort.Strings(names)
		var out []kind
		for _, name := range names {
			if c.mix[name] == 0 {
				continue
			}
			ks, err := c.kinds(name)
			if err != nil {
				return nil, err
			}
			ks[0].weight = c.mix[name]
			out = append(out, ks[0])
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("-mix gives every scenario weight 0")
		}
		return out, nil
	}
	return nil, fmt.Errorf("-scenario %q: want one of %s", scenario, strings.Join(scenarios, ", "))
}

// parseMix reads "mint=1,forward=8,pass=1".
func parseMix(s string) (map[string]int, error) {
	out := map[string]int{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, w, ok := strings.Cut(part, "=")
		n, err := strconv.Atoi(strings.TrimSpace(w))
		name = strings.TrimSpace(name)
		if !ok || err != nil || n < 0 || n > 1000 {
			return nil, fmt.Errorf("-mix %q: want name=weight pairs like mint=1,forward=8,pass=1 (weights 0..1000)", s)
		}
		if name != "mint" && name != "forward" && name != "pass" {
			return nil, fmt.Errorf("-mix %q: %q cannot be mixed; mix mint, forward and pass (all go to -target)", s, name)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("-mix %q: %s is given twice", s, name)
		}
		out[name] = n
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("-mix %q: empty", s)
	}
	return out, nil
}

// mintCaller mints the bench's caller token with the admin token: one that
// holds permissionsManage (so it may mint) and the views forward needs.
func mintCaller(ctx context.Context, target, adminToken, ns string) (string, error) {
	return mintOne(ctx, target, adminToken, ns, callerBody)
}

// mintOne sends one mint request and returns the secret.
func mintOne(ctx context.Context, target, callerToken, ns, body string) (string, error) {
	if _, err := loopbackHostPort(target); err != nil {
		return "", err
	}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(strings.TrimRight(target, "/") + "/api/namespaces/" + ns + "/auth/token")
	req.Header.SetMethod("POST")
	req.Header.Set(headerToken, callerToken)
	req.Header.SetContentType("application/json")
	req.SetBodyString(body)
	deadline := time.Now().Add(10 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := fasthttp.DoDeadline(req, resp, deadline); err != nil {
		return "", fmt.Errorf("mint at %s: %w", target, err)
	}
	if resp.StatusCode() != 201 {
		return "", fmt.Errorf("mint at %s: HTTP %d: %s", target, resp.StatusCode(), strings.TrimSpace(string(resp.Body())))
	}
	var out struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(resp.Body(), &out); err != nil || out.Token == "" {
		return "", fmt.Errorf("mint at %s: the answer has no token: %.200s", target, resp.Body())
	}
	return out.Token, nil
}
