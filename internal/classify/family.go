package classify

import (
	"bytes"

	"github.com/valyala/fasthttp"
)

// Family is a route family: the label of direktiv_authz_requests_total.
type Family uint8

const (
	famOther Family = iota
	famMint
	famTokens
	famV1Namespaces
	famV1Functions
	famV1Version
	famV1JQ
	famV1Other
	famV2Namespaces
	famV2Status
	famV2Other
	famV1Tree
	famV1Instances
	famV1Vars
	famV1Secrets
	famV1Events
	famV1Broadcast
	famV1EventFilter
	famV1Logs
	famV1Metrics
	famV1Config
	famV1Lint
	famV2Files
	famV2Instances
	famV2Variables
	famV2Secrets
	famV2Registries
	famV2Services
	famV2Syncs
	famV2Logs
	famV2Events
	famV2Notifications
	famV2Metrics
	NumFamilies // how many families there are
)

var familyNames = [NumFamilies]string{
	famOther: "other", famMint: "mint", famTokens: "tokens",
	famV1Namespaces: "v1/namespaces", famV1Functions: "v1/functions", famV1Version: "v1/version", famV1JQ: "v1/jq", famV1Other: "v1/other",
	famV2Namespaces: "v2/namespaces", famV2Status: "v2/status", famV2Other: "v2/other",
	famV1Tree: "v1/tree", famV1Instances: "v1/instances", famV1Vars: "v1/vars", famV1Secrets: "v1/secrets",
	famV1Events: "v1/events", famV1Broadcast: "v1/broadcast", famV1EventFilter: "v1/eventfilter", famV1Logs: "v1/logs",
	famV1Metrics: "v1/metrics", famV1Config: "v1/config", famV1Lint: "v1/lint",
	famV2Files: "v2/files", famV2Instances: "v2/instances", famV2Variables: "v2/variables", famV2Secrets: "v2/secrets",
	famV2Registries: "v2/registries", famV2Services: "v2/services", famV2Syncs: "v2/syncs", famV2Logs: "v2/logs",
	famV2Events: "v2/events", famV2Notifications: "v2/notifications", famV2Metrics: "v2/metrics",
}

// routeFamily classifies a raw request path (empty segments skipped, as the
// router does) without allocating.
func routeFamily(method, path []byte) Family {
	var segs [6][]byte
	n := 0
	for len(path) > 0 && n < len(segs) {
		if path[0] == '/' {
			path = path[1:]
			continue
		}
		i := bytes.IndexByte(path, '/')
		if i < 0 {
			i = len(path)
		}
		segs[n], path = path[:i], path[i:]
		n++
	}
	if n < 2 || string(segs[0]) != "api" {
		return famOther
	}
	switch string(segs[1]) {
	case "namespaces":
		switch {
		case n <= 3:
			return famV1Namespaces
		case string(segs[3]) == "auth":
			if n == 5 && string(segs[4]) == "token" && string(method) == fasthttp.MethodPost {
				return famMint
			}
			return famTokens
		}
		return v1Family(segs[3])
	case "functions":
		return famV1Functions
	case "version":
		return famV1Version
	case "jq":
		return famV1JQ
	case "v2":
		switch {
		case n >= 3 && string(segs[2]) == "status":
			return famV2Status
		case n >= 3 && string(segs[2]) == "namespaces":
			if n <= 4 {
				return famV2Namespaces
			}
			return v2Family(segs[4])
		}
		return famV2Other
	}
	return famOther
}

// v1Family is the family of /api/namespaces/{ns}/<resource>/...
func v1Family(resource []byte) Family {
	switch string(resource) {
	case "tree":
		return famV1Tree
	case "instances":
		return famV1Instances
	case "vars":
		return famV1Vars
	case "secrets":
		return famV1Secrets
	case "events":
		return famV1Events
	case "broadcast":
		return famV1Broadcast
	case "eventfilter":
		return famV1EventFilter
	case "logs":
		return famV1Logs
	case "metrics":
		return famV1Metrics
	case "config":
		return famV1Config
	case "lint":
		return famV1Lint
	}
	return famV1Other
}

// v2Family is the family of /api/v2/namespaces/{ns}/<resource>/...
func v2Family(resource []byte) Family {
	switch string(resource) {
	case "files":
		return famV2Files
	case "instances":
		return famV2Instances
	case "variables":
		return famV2Variables
	case "secrets":
		return famV2Secrets
	case "registries":
		return famV2Registries
	case "services":
		return famV2Services
	case "syncs":
		return famV2Syncs
	case "logs":
		return famV2Logs
	case "events":
		return famV2Events
	case "notifications":
		return famV2Notifications
	case "metrics":
		return famV2Metrics
	}
	return famV2Other
}

// String is f's label value.
func (f Family) String() string { return familyNames[f] }
