package sidecar

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/direktiv/direktiv-authz/engine"
	"github.com/direktiv/direktiv-authz/store"
)

// errorCode classifies every error the HTTP edge answers with; statusOf is
// the one table that turns a code into a status.
type errorCode int

const (
	codeInternal errorCode = iota
	codeBadRequest
	codeUnauthenticated
	codeForbidden
	codeNotFound
	codeMethodNotAllowed
	codeTooLarge
	codeUnsupportedMedia
	codeUnavailable
	codeBadGateway
	codeGatewayTimeout
	codeTooManyRequests
	codeRequestTimeout
	codeExpectationFailed
	codeHeaderTooLarge
	codeNotImplemented
	codeVersionUnsupported
)

// statusOf is the HTTP status of each code.
var statusOf = map[errorCode]int{
	codeInternal:           http.StatusInternalServerError,
	codeBadRequest:         http.StatusBadRequest,
	codeUnauthenticated:    http.StatusUnauthorized,
	codeForbidden:          http.StatusForbidden,
	codeNotFound:           http.StatusNotFound,
	codeMethodNotAllowed:   http.StatusMethodNotAllowed,
	codeTooLarge:           http.StatusRequestEntityTooLarge,
	codeUnsupportedMedia:   http.StatusUnsupportedMediaType,
	codeUnavailable:        http.StatusServiceUnavailable,
	codeBadGateway:         http.StatusBadGateway,
	codeGatewayTimeout:     http.StatusGatewayTimeout,
	codeTooManyRequests:    http.StatusTooManyRequests,
	codeRequestTimeout:     http.StatusRequestTimeout,
	codeExpectationFailed:  http.StatusExpectationFailed,
	codeHeaderTooLarge:     http.StatusRequestHeaderFieldsTooLarge,
	codeNotImplemented:     http.StatusNotImplemented,
	codeVersionUnsupported: http.StatusHTTPVersionNotSupported,
}

// direktivCodeOf is each code as Direktiv's v2 API names its errors
// (snake_case, in {"error": {"code", "message"}}). Where Direktiv's own
// table gives a status for such a name (access_* 403, request_* and
// resource_* 400, *not_found 404, *method_not_allowed 405) it is the
// status above; Direktiv's open-source build has no 401, 408, 413, 415, 417, 429, 431,
// 501, 502, 503, 504 or 505 of its own, so those names are the sidecar's, chosen
// outside Direktiv's prefixes. Its web UI shows error.message and treats
// 401 and 403 alike.
var direktivCodeOf = map[errorCode]string{
	codeInternal:           "internal",
	codeBadRequest:         "request_data_invalid",
	codeUnauthenticated:    "access_token_invalid",
	codeForbidden:          "access_denied",
	codeNotFound:           "resource_not_found",
	codeMethodNotAllowed:   "request_method_not_allowed",
	codeTooLarge:           "body_too_large",
	codeUnsupportedMedia:   "content_type_unsupported",
	codeUnavailable:        "service_unavailable",
	codeBadGateway:         "upstream_unreachable",
	codeGatewayTimeout:     "upstream_timeout",
	codeTooManyRequests:    "rate_limited",
	codeRequestTimeout:     "timeout",
	codeExpectationFailed:  "expectation_unsupported",
	codeHeaderTooLarge:     "header_too_large",
	codeNotImplemented:     "transfer_encoding_unsupported",
	codeVersionUnsupported: "http_version_unsupported",
}

// apiError is an error with a code and a message a person can act on. The
// message is sent to the client as is: it never contains a secret.
type apiError struct {
	code    errorCode
	message string
	err     error  // the cause, for logs; never sent
	v2code  string // Direktiv's name for it when not direktivCodeOf[code]
}

// direktivCode is e's code as Direktiv's v2 API would name it.
func (e *apiError) direktivCode() string {
	if e.v2code != "" {
		return e.v2code
	}
	return direktivCodeOf[e.code]
}

func (e *apiError) Error() string {
	if e.err != nil {
		return e.message + ": " + e.err.Error()
	}
	return e.message
}

func (e *apiError) Unwrap() error { return e.err }

func errorf(code errorCode, format string, args ...any) *apiError {
	return &apiError{code: code, message: fmt.Sprintf(format, args...)}
}

// asAPIError turns any error into the apiError to answer with. Store and
// engine unavailability become 503 (fail closed); anything unclassified is a
// 500 whose detail stays in the log.
func asAPIError(err error) *apiError {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.Is(err, store.ErrUnavailable):
		return &apiError{code: codeUnavailable, message: "the token store is unavailable; nothing was changed, try again later", err: err}
	case errors.Is(err, engine.ErrUnavailable):
		return &apiError{code: codeUnavailable, message: "the policy engine is unavailable; nothing was changed, try again later", err: err}
	default:
		return &apiError{code: codeInternal, message: "internal error", err: err}
	}
}

// decisionCode maps the code a Rego decision answers with to an errorCode.
func decisionCode(code string) errorCode {
	switch code {
	case engine.CodeBadRequest:
		return codeBadRequest
	case engine.CodeForbidden, engine.CodeAdminOnly:
		return codeForbidden
	case engine.CodeUnauthenticated:
		return codeUnauthenticated
	case engine.CodeNotFound:
		return codeNotFound
	default:
		// An unknown code from edited Rego still refuses: fail closed.
		return codeForbidden
	}
}
