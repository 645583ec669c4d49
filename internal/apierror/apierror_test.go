package apierror

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/direktiv/direktiv-authz/internal/testutil"
	"github.com/direktiv/direktiv-authz/store"
)

// The error answers the server and the event loops send (errorJSON) are
// byte for byte encoding/json's output of Direktiv's shapes: v1
// {"code","message"} on /api/ paths outside /api/v2, v2
// {"error":{"code","message"}} everywhere else.
func TestErrorJSONMatchesEncodingJSON(t *testing.T) {
	type v1 struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	type v2 struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	for _, ae := range []*Error{
		{Code: BadGateway, Message: "the Direktiv API cannot be reached; try again later"},
		{Code: BadRequest, Message: `the path segment "%2F" holds <an> encoded '/' & "quotes" ` + "\u2028\t"},
		{Code: Unauthenticated, V2Code: "access_token_missing", Message: "no credential"},
		{},
	} {
		for _, tt := range []struct {
			path string
			want any
		}{
			{"/api/namespaces/ns1/auth/token", v1{Code: ae.Status(), Message: ae.Message}},
			{"//api/namespaces/ns1/tree/x", v1{Code: ae.Status(), Message: ae.Message}},
			{"/api/v2/namespaces/ns1/variables", func() v2 {
				var e v2
				e.Error.Code, e.Error.Message = ae.DirektivCode(), ae.Message
				return e
			}()},
			{"/api/v2", nil},
			{"/assets/x.js", nil},
			{"/ns/ns1/x", nil},
			{"/api/v2x", nil}, // not under /api/v2: v1
		} {
			want := tt.want
			if want == nil {
				var e v2
				e.Error.Code, e.Error.Message = ae.DirektivCode(), ae.Message
				want = e
				if tt.path == "/api/v2x" {
					want = v1{Code: ae.Status(), Message: ae.Message}
				}
			}
			b, err := json.Marshal(want)
			if err != nil {
				t.Fatal(err)
			}
			if got := JSON(nil, []byte(tt.path), ae); !bytes.Equal(got, append(b, '\n')) {
				t.Errorf("%s: error answer\n got %s\nwant %s", tt.path, got, b)
			}
		}
	}
}

// Every error code has a status and a Direktiv name, and the name leads
// Direktiv's own table (access_* 403, request_* and resource_* 400,
// *not_found 404) to the same status, or to none of its prefixes.
func TestDirektivCodesMatchStatuses(t *testing.T) {
	for code, status := range statusOf {
		name := direktivCodeOf[code]
		if name == "" {
			t.Fatalf("code %d has no Direktiv name", code)
		}
		want := 0
		switch {
		case strings.Contains(name, "not_found"):
			want = 404
		case strings.Contains(name, "method_not_allowed"):
			want = 405
		case strings.HasPrefix(name, "access"), strings.HasPrefix(name, "request"), strings.HasPrefix(name, "resource"):
			want = map[string]int{"access": 403, "request": 400, "resource": 400}[strings.SplitN(name, "_", 2)[0]]
		}
		if want != 0 && want != status && !(code == Unauthenticated && status == 401) {
			t.Errorf("%s answers %d, Direktiv's table says %d", name, status, want)
		}
	}
}

// An error answer as a refused mint writes it.
var benchAPIError = &Error{Code: Forbidden, Message: `policy "permissionsManage" is not held by the caller; ask for policies you hold`}

// wantBodyV2 is Direktiv's v2 error shape, as encoding/json encodes it.
type wantBodyV2 struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func newWantBodyV2(ae *Error) wantBodyV2 {
	var e wantBodyV2
	e.Error.Code, e.Error.Message = ae.DirektivCode(), ae.Message
	return e
}

func BenchmarkEncodeErrorBody(b *testing.B) {
	path := []byte("/api/v2/namespaces/ns1/variables")
	want, _ := json.Marshal(newWantBodyV2(benchAPIError))
	want = append(want, '\n')
	testutil.BenchEncoders(b, want, map[string]func(w *bytes.Buffer){
		"goccy": func(w *bytes.Buffer) { w.Write(JSON(make([]byte, 0, 160), path, benchAPIError)) },
		"encoding_json": func(w *bytes.Buffer) {
			out, _ := json.Marshal(newWantBodyV2(benchAPIError))
			w.Write(append(out, '\n'))
		},
	})
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// An unavailable store is a 503 either way; only a timeout, where the
// command may have run, leaves out "nothing was changed".
func TestUnavailableStoreSaysWhetherAChangeMayHaveBeenMade(t *testing.T) {
	refused := As(fmt.Errorf("%w: creating token: %w", store.ErrUnavailable, errors.New("connection refused")))
	timedOut := As(fmt.Errorf("%w: creating token: %w", store.ErrUnavailable, timeoutErr{}))
	if refused.Status() != 503 || !strings.Contains(refused.Message, "nothing was changed") {
		t.Errorf("refused: %d %q", refused.Status(), refused.Message)
	}
	if timedOut.Status() != 503 || strings.Contains(timedOut.Message, "nothing was changed") || !strings.Contains(timedOut.Message, "may have been made") {
		t.Errorf("timed out: %d %q", timedOut.Status(), timedOut.Message)
	}
}
