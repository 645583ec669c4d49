// Package engine asks OPA for every authorization decision the sidecar makes.
// The rules live in Rego (package policies, or a directory that replaces it);
// Go only prepares the queries, feeds them input and reads the answer.
package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/direktiv/direktiv-authz/policies"
)

// Caller is who presents a request: the admin token, or a minted token.
type Caller struct {
	Admin     bool     `json:"admin"`
	Namespace string   `json:"namespace,omitempty"` // minted tokens only
	Policies  []string `json:"policies,omitempty"`  // as granted at mint, not yet closed under inheritance
}

// MintInput asks whether Caller may mint a token holding Requested in Namespace.
type MintInput struct {
	Caller    Caller   `json:"caller"`
	Namespace string   `json:"namespace"`
	Requested []string `json:"requested"`
}

// Decision codes the Rego rules answer with; the HTTP edge maps them to statuses.
const (
	CodeBadRequest      = "bad_request"     // 400
	CodeForbidden       = "forbidden"       // 403
	CodeAdminOnly       = "admin_only"      // 403 too; the route needs the admin token
	CodeUnauthenticated = "unauthenticated" // 401: an anonymous caller on a route that is not public
	CodeNotFound        = "not_found"       // 404: reserved for rules that want it
)

// MintDecision is the engine's answer to a MintInput.
type MintDecision struct {
	Allow   bool     `json:"allow"`
	Code    string   `json:"code,omitempty"`   // set when !Allow
	Reason  string   `json:"reason,omitempty"` // a message a person can act on, when !Allow
	Granted []string `json:"granted"`          // sorted, deduplicated
	Dropped []string `json:"dropped"`          // requested but not held by the caller, sorted
	Unknown []string `json:"unknown"`          // requested but not in the catalog, sorted
}

// RouteInput asks whether Caller may send Method Path?query upstream. The
// zero Caller is anonymous: a request without a credential, or with one
// that is neither the admin token nor a minted token.
type RouteInput struct {
	Caller Caller `json:"caller"`
	Method string `json:"method"`
	Path   string `json:"path"`  // the request path as received (not decoded), no query
	Query  string `json:"query"` // raw query string, without '?'
	// Header gives the request's header values; nil for a request without
	// headers. The rules read only the headers their header_params name.
	Header Header `json:"-"`
}

// Header is a request's headers: PeekAll returns the values of the header
// name, matched case-insensitively (as fasthttp.RequestHeader's does).
type Header interface {
	PeekAll(name string) [][]byte
}

// RouteDecision is the engine's answer to a RouteInput. A decision may be
// remembered and handed to many callers: treat Lookups as read-only.
type RouteDecision struct {
	Allow      bool     `json:"allow"`
	Code       string   `json:"code,omitempty"`
	Reason     string   `json:"reason,omitempty"`
	Permission string   `json:"permission,omitempty"` // the permission the route needs, "" if none
	Namespace  string   `json:"namespace,omitempty"`  // the route's namespace, "" if not namespaced
	Public     bool     `json:"public,omitempty"`     // the route needs no credential (decided for any caller)
	Lookups    []Lookup `json:"lookups,omitempty"`    // objects the request names, to be checked to belong to Namespace before forwarding; minted callers only; nil when none
	Transform  string   `json:"transform,omitempty"`  // "", TransformStatus or TransformNamespaceList: what to do with the upstream's answer
}

// Lookup is an object a request names by id, which the sidecar checks
// belongs to the decision's Namespace before it forwards the request
// (Direktiv looks some objects up by id alone, whatever namespace the path
// names).
type Lookup struct {
	Kind string `json:"kind"` // LookupVariable, LookupInstance, LookupEvent or LookupListener
	ID   string `json:"id"`
}

// Lookup kinds and transforms a RouteDecision may carry.
const (
	LookupVariable = "variable" // a variable, by its UUID
	LookupInstance = "instance" // an instance, by its UUID
	LookupEvent    = "event"    // an event of the event history, by its cloud event id
	LookupListener = "listener" // an event listener, by its UUID

	TransformStatus        = "status"         // GET /api/v2/status: the answer describes Direktiv, for the web UI
	TransformNamespaceList = "namespace_list" // GET /api/v2/namespaces: the list of every namespace
)

// ErrUnavailable is wrapped by every error Mint and Route return: the rules
// could not be evaluated, or gave no answer. Callers answer 503 and grant
// nothing (fail closed).
var ErrUnavailable = errors.New("policy engine unavailable")

// DefaultDebounce is how long Watch waits after the last change in the
// policy directory before it reloads, when Options.Debounce is zero.
const DefaultDebounce = 250 * time.Millisecond

// Options configure an Engine.
type Options struct {
	// Dir holds the .rego files to run (the files at its top, not below).
	// "" runs the embedded policies.FS.
	Dir string
	// Logger receives reload outcomes; nil discards them.
	Logger *slog.Logger
	// Debounce is how long Watch waits for the directory to settle before
	// reloading; zero means DefaultDebounce.
	Debounce time.Duration
}

// Decider is what the sidecar asks of an Engine: its decisions and the
// revision of the rules they come from.
type Decider interface {
	Mint(ctx context.Context, in MintInput) (MintDecision, error)
	Route(ctx context.Context, in RouteInput) (RouteDecision, error)
	Revision() string
}

var _ Decider = (*Engine)(nil)

// Engine answers mint and route questions from the loaded Rego. It is safe
// for concurrent use; a reload swaps the whole set of prepared queries at
// once, so each decision sees one consistent set of rules.
type Engine struct {
	src      source
	logger   *slog.Logger
	debounce time.Duration

	current atomic.Pointer[policySet]

	reloadMu     sync.Mutex // serializes Reload, guards refused
	refused      refusal    // the last policies Reload refused
	reloadsOK    atomic.Uint64
	reloadsFails atomic.Uint64
}

// refusal remembers refused policies, so that they are not tried again
// until they change.
type refusal struct {
	revision string
	err      error
}

// New loads, compiles and tests the policies (Options.Dir, or the embedded
// ones), and prepares the decision queries. It returns an error, and no
// Engine, when the directory cannot be read or holds no .rego file, and a
// *LoadError when a file does not parse or compile, a Rego test fails, or a
// rule the engine needs is missing.
func New(ctx context.Context, opts Options) (*Engine, error) {
	e := &Engine{
		src:      newSource(opts.Dir),
		logger:   opts.Logger,
		debounce: opts.Debounce,
	}
	if e.logger == nil {
		e.logger = slog.New(slog.DiscardHandler)
	}
	if e.debounce <= 0 {
		e.debounce = DefaultDebounce
	}
	files, err := e.src.read()
	if err != nil {
		return nil, err
	}
	set, err := compile(ctx, e.src, files, e.logger)
	if err != nil {
		return nil, err
	}
	e.current.Store(set)
	e.logger.Info("policies loaded", "source", e.src.String(), "revision", set.revision, "files", set.fileNames())
	return e, nil
}

// Revision identifies the loaded policies: the first 16 hex digits of a
// SHA-256 over the names and contents of their .rego files.
func (e *Engine) Revision() string {
	return e.current.Load().revision
}

// Reloads counts the reloads that replaced the rules (ok) and those that
// were refused (failed) since New.
func (e *Engine) Reloads() (ok, failed uint64) {
	return e.reloadsOK.Load(), e.reloadsFails.Load()
}

// Effective closes policies under inheritance with the loaded rules: the
// sorted, deduplicated set of every policy they grant. Names the catalog
// does not know grant nothing and are left out. It never returns nil.
func (e *Engine) Effective(policies []string) []string {
	closure := e.current.Load().closure
	out := make([]string, 0, len(policies)*2)
	for _, p := range policies {
		out = append(out, closure[p]...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Reload reads the policy source again and, if it changed, compiles and
// tests it and swaps it in. When the new policies are refused, the previous
// ones stay active, each problem is logged with its file, and the error
// (a *LoadError, or the read error) is returned. Unchanged policies are a
// no-op that returns nil, and policies refused before and unchanged since
// return the same error again; neither counts in Reloads or logs anything.
// An error caused by ctx ending is returned as is, uncounted.
func (e *Engine) Reload(ctx context.Context) error {
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()

	files, err := e.src.read()
	var set *policySet
	if err == nil {
		revision := revisionOf(files)
		switch revision {
		case e.Revision():
			return nil
		case e.refused.revision:
			return e.refused.err
		}
		set, err = compile(ctx, e.src, files, e.logger)
		if err != nil && ctx.Err() == nil {
			e.refused = refusal{revision: revision, err: err}
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return err
		}
		e.reloadsFails.Add(1)
		e.logRefused(err)
		return err
	}
	previous := e.current.Swap(set)
	e.refused = refusal{}
	e.reloadsOK.Add(1)
	e.logger.Info("policies reloaded", "source", e.src.String(), "revision", set.revision, "previous", previous.revision)
	return nil
}

// logRefused logs why a reload was refused, one line per problem.
func (e *Engine) logRefused(err error) {
	var le *LoadError
	if !errors.As(err, &le) {
		e.logger.Error("policy reload refused; previous policies stay active", "source", e.src.String(), "revision", e.Revision(), "error", err)
		return
	}
	for _, p := range le.Problems {
		e.logger.Error("policy reload refused; previous policies stay active",
			"source", e.src.String(), "revision", e.Revision(), "file", p.File, "line", p.Row, "error", p.Message)
	}
}

// source is where the .rego files come from: a directory, or the embedded FS.
type source struct {
	dir  string
	fsys fs.FS
}

func newSource(dir string) source {
	if dir == "" {
		return source{fsys: policies.FS}
	}
	return source{dir: dir, fsys: os.DirFS(dir)}
}

func (s source) String() string {
	if s.dir == "" {
		return "embedded policies"
	}
	return s.dir
}

// file is one .rego file of a source.
type file struct {
	name    string
	content []byte
}

// read returns the .rego files at the top of the source, sorted by name,
// following symbolic links (as a Kubernetes ConfigMap mount has them) and
// skipping hidden names. It returns an error when the source cannot be
// read or holds no .rego file.
func (s source) read() ([]file, error) {
	entries, err := fs.ReadDir(s.fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("read policies from %s: %w", s, err)
	}
	var files []file
	for _, entry := range entries {
		name := entry.Name()
		if name[0] == '.' || entry.IsDir() || !isRego(name) {
			continue
		}
		content, err := fs.ReadFile(s.fsys, name)
		if err != nil {
			return nil, fmt.Errorf("read policies from %s: %w", s, err)
		}
		files = append(files, file{name: name, content: content})
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("read policies from %s: no .rego files there", s)
	}
	return files, nil // fs.ReadDir sorts by name
}
