package main

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
)

var statusOf = map[errorCode]int{
	codeInternal:         http.StatusInternalServerError,
	codeBadRequest:       http.StatusBadRequest,
	codeUnauthenticated:  http.StatusUnauthorized,
	codeForbidden:        http.StatusForbidden,
	codeNotFound:         http.StatusNotFound,
	codeMethodNotAllowed: http.StatusMethodNotAllowed,
	codeTooLarge:         http.StatusRequestEntityTooLarge,
	codeUnsupportedMedia: http.StatusUnsupportedMediaType,
	codeUnavailable:      http.StatusServiceUnavailable,
	codeBadGateway:       http.StatusBadGateway,
	codeGatewayTimeout:   http.StatusGatewayTimeout,
	codeTooManyRequests:  http.StatusTooManyRequests,
}

// apiError is an error with a code and a message a person can act on. The
// message is sent to the client as is: it never contains a secret.
type apiError struct {
	code    errorCode
	message string
	err     error // the cause, for logs; never sent
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
	default:
		// An unknown code from edited Rego still refuses: fail closed.
		return codeForbidden
	}
}
