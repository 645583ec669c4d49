// Package apierror holds the errors the sidecar answers with: a code for
// each kind, its HTTP status, Direktiv's name for it, and Direktiv's two
// JSON error shapes. It imports the store and the engine only for their
// unavailability errors, and framing for its refusals; never the HTTP layer.
package apierror

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"

	gojson "github.com/goccy/go-json"

	"github.com/direktiv/direktiv-authz/engine"
	"github.com/direktiv/direktiv-authz/internal/framing"
	"github.com/direktiv/direktiv-authz/store"
)

// Code classifies every error the HTTP edge answers with; statusOf is the
// one table that turns a code into a status.
type Code int

const (
	Internal Code = iota
	BadRequest
	Unauthenticated
	Forbidden
	NotFound
	MethodNotAllowed
	TooLarge
	UnsupportedMedia
	Unavailable
	BadGateway
	GatewayTimeout
	TooManyRequests
	RequestTimeout
	ExpectationFailed
	HeaderTooLarge
	NotImplemented
	VersionUnsupported
)

// statusOf is the HTTP status of each code.
var statusOf = map[Code]int{
	Internal:           http.StatusInternalServerError,
	BadRequest:         http.StatusBadRequest,
	Unauthenticated:    http.StatusUnauthorized,
	Forbidden:          http.StatusForbidden,
	NotFound:           http.StatusNotFound,
	MethodNotAllowed:   http.StatusMethodNotAllowed,
	TooLarge:           http.StatusRequestEntityTooLarge,
	UnsupportedMedia:   http.StatusUnsupportedMediaType,
	Unavailable:        http.StatusServiceUnavailable,
	BadGateway:         http.StatusBadGateway,
	GatewayTimeout:     http.StatusGatewayTimeout,
	TooManyRequests:    http.StatusTooManyRequests,
	RequestTimeout:     http.StatusRequestTimeout,
	ExpectationFailed:  http.StatusExpectationFailed,
	HeaderTooLarge:     http.StatusRequestHeaderFieldsTooLarge,
	NotImplemented:     http.StatusNotImplemented,
	VersionUnsupported: http.StatusHTTPVersionNotSupported,
}

// direktivCodeOf is each code as Direktiv's v2 API names its errors
// (snake_case, in {"error": {"code", "message"}}). Where Direktiv's own
// table gives a status for such a name (access_* 403, request_* and
// resource_* 400, *not_found 404, *method_not_allowed 405) it is the
// status above; Direktiv's open-source build has no 401, 408, 413, 415, 417, 429, 431,
// 501, 502, 503, 504 or 505 of its own, so those names are the sidecar's, chosen
// outside Direktiv's prefixes. Its web UI shows error.message and treats
// 401 and 403 alike.
var direktivCodeOf = map[Code]string{
	Internal:           "internal",
	BadRequest:         "request_data_invalid",
	Unauthenticated:    "access_token_invalid",
	Forbidden:          "access_denied",
	NotFound:           "resource_not_found",
	MethodNotAllowed:   "request_method_not_allowed",
	TooLarge:           "body_too_large",
	UnsupportedMedia:   "content_type_unsupported",
	Unavailable:        "service_unavailable",
	BadGateway:         "upstream_unreachable",
	GatewayTimeout:     "upstream_timeout",
	TooManyRequests:    "rate_limited",
	RequestTimeout:     "timeout",
	ExpectationFailed:  "expectation_unsupported",
	HeaderTooLarge:     "header_too_large",
	NotImplemented:     "transfer_encoding_unsupported",
	VersionUnsupported: "http_version_unsupported",
}

// Status is the HTTP status of c.
func (c Code) Status() int { return statusOf[c] }

// DirektivName is c as Direktiv's v2 API names its errors.
func (c Code) DirektivName() string { return direktivCodeOf[c] }

// Codes is every code, in order.
func Codes() []Code {
	codes := make([]Code, 0, len(statusOf))
	for c := Internal; c <= VersionUnsupported; c++ {
		codes = append(codes, c)
	}
	return codes
}

// ForStatus is the code answering with status; ok is false for a status
// no code has.
func ForStatus(status int) (c Code, ok bool) {
	for c, s := range statusOf {
		if s == status {
			return c, true
		}
	}
	return Internal, false
}

// Error is an error with a code and a message a person can act on. The
// message is sent to the client as is: it never contains a secret.
type Error struct {
	Code    Code
	Message string
	Err     error  // the cause, for logs; never sent
	V2Code  string // Direktiv's name for it when not Code.DirektivName()
}

// DirektivCode is e's code as Direktiv's v2 API would name it.
func (e *Error) DirektivCode() string {
	if e.V2Code != "" {
		return e.V2Code
	}
	return e.Code.DirektivName()
}

// Status is the HTTP status e is answered with.
func (e *Error) Status() int { return e.Code.Status() }

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf is an Error of code with a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// As turns any error into the Error to answer with. Store and
// engine unavailability become 503 (fail closed); anything unclassified is a
// 500 whose detail stays in the log.
func As(err error) *Error {
	var ae *Error
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.Is(err, store.ErrUnavailable) && timedOut(err):
		// The command may have reached Redis and run after all.
		return &Error{Code: Unavailable, Message: "the token store did not answer in time; a change asked for may have been made, try again later", Err: err}
	case errors.Is(err, store.ErrUnavailable):
		return &Error{Code: Unavailable, Message: "the token store is unavailable; nothing was changed, try again later", Err: err}
	case errors.Is(err, engine.ErrUnavailable):
		return &Error{Code: Unavailable, Message: "the policy engine is unavailable; nothing was changed, try again later", Err: err}
	default:
		return &Error{Code: Internal, Message: "internal error", Err: err}
	}
}

// timedOut reports a timeout in err's chain: a command sent whose answer
// did not come.
func timedOut(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

// FromDecision maps the code a Rego decision answers with to a Code.
func FromDecision(code string) Code {
	switch code {
	case engine.CodeBadRequest:
		return BadRequest
	case engine.CodeForbidden, engine.CodeAdminOnly:
		return Forbidden
	case engine.CodeUnauthenticated:
		return Unauthenticated
	case engine.CodeNotFound:
		return NotFound
	default:
		// An unknown code from edited Rego still refuses: fail closed.
		return Forbidden
	}
}

// JSON is the JSON error answer for a request to path: Direktiv's v2
// shape, {"error":{"code","message"}}, on Direktiv v2 paths and everywhere
// outside /api/ (the web UI, the gateway); Direktiv's v1 shape,
// {"code":<status>,"message"}, on the other /api/ paths (Direktiv <= 0.8
// and the sidecar's own /api/namespaces/{ns}/auth/... endpoints). The bytes
// are encoding/json's, written by goccy/go-json as every JSON answer is
// (answer.Writer.JSON).
func JSON(b, path []byte, ae *Error) []byte {
	var body any
	if V1Path(path) {
		body = errorBodyV1{Code: ae.Status(), Message: ae.Message}
	} else {
		var v2 errorBodyV2
		v2.Error.Code, v2.Error.Message = ae.DirektivCode(), ae.Message
		body = v2
	}
	out, _ := gojson.Marshal(body) // strings and an int: cannot fail
	b = append(b, out...)
	return append(b, '\n')
}

// errorBodyV1 and errorBodyV2 are Direktiv's error answers (JSON).
type errorBodyV1 struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

type errorBodyV2 struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// V1Path reports a path under /api/ that is not under /api/v2 (leading
// slashes skipped, as the route rules skip empty segments).
func V1Path(path []byte) bool {
	path = bytes.TrimLeft(path, "/")
	rest, ok := bytes.CutPrefix(path, []byte("api/"))
	if !ok {
		return false
	}
	return !(bytes.Equal(rest, []byte("v2")) || bytes.HasPrefix(rest, []byte("v2/")))
}

// FromFraming is a framing refusal (internal/framing) as the sidecar
// answers it.
func FromFraming(e *framing.Error) *Error {
	code, ok := ForStatus(e.Status)
	if !ok {
		code = BadRequest
	}
	return &Error{Code: code, Message: "malformed request: " + e.Reason}
}
